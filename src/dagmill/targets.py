"""Target classes (``dagmill.targets.PickleTarget``, like ``d6tflow.targets``)."""

from dagmill.io.targets import (
    CacheTarget,
    CSVGZPandasTarget,
    CSVPandasTarget,
    DataTarget,
    ExcelPandasTarget,
    JsonTarget,
    PdCacheTarget,
    PickleTarget,
    PqPandasTarget,
    Target,
    TextTarget,
)

__all__ = [
    "CSVGZPandasTarget",
    "CSVPandasTarget",
    "CacheTarget",
    "DataTarget",
    "ExcelPandasTarget",
    "JsonTarget",
    "PdCacheTarget",
    "PickleTarget",
    "PqPandasTarget",
    "Target",
    "TextTarget",
]
