"""Target classes (``dagmill.targets.PickleTarget``, like ``d6tflow.targets``)."""

from dagmill.io.targets import (
    CacheTarget,
    CSVPandasTarget,
    DataTarget,
    JsonTarget,
    PdCacheTarget,
    PickleTarget,
    PqPandasTarget,
    Target,
    TextTarget,
)

__all__ = [
    "CSVPandasTarget",
    "CacheTarget",
    "DataTarget",
    "JsonTarget",
    "PdCacheTarget",
    "PickleTarget",
    "PqPandasTarget",
    "Target",
    "TextTarget",
]
