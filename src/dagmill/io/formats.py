"""How objects become files and back: one small class per format.

pandas and pyarrow are imported only when a tabular format is used.
"""

from __future__ import annotations

import json
import pickle
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

PathLike = str | Path

__all__ = ["FORMATS", "Format"]


class Format(ABC):
    """Writes an object to a (temporary) path and reads it back."""

    name: ClassVar[str]
    ext: ClassVar[str]

    @abstractmethod
    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None: ...

    @abstractmethod
    def read(self, path: PathLike, **kwargs: Any) -> Any: ...


class PickleFormat(Format):
    name, ext = "pickle", "pkl"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=kwargs.get("protocol", pickle.HIGHEST_PROTOCOL))

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)


class JsonFormat(Format):
    name, ext = "json", "json"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, **kwargs)

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        with open(path, encoding="utf-8") as f:
            return json.load(f, **kwargs)


class CsvFormat(Format):
    name, ext = "csv", "csv"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        kwargs.setdefault("index", False)
        obj.to_csv(path, **kwargs)

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        import pandas as pd

        return pd.read_csv(path, **kwargs)


class CsvGzFormat(CsvFormat):
    name, ext = "csv.gz", "csv.gz"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        kwargs.setdefault("compression", "gzip")
        super().write(obj, path, **kwargs)

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        kwargs.setdefault("compression", "gzip")
        return super().read(path, **kwargs)


class ExcelFormat(Format):
    """Excel through pandas (needs openpyxl installed)."""

    name, ext = "excel", "xlsx"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        kwargs.setdefault("index", False)
        kwargs.setdefault("engine", "openpyxl")
        obj.to_excel(path, **kwargs)

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        import pandas as pd

        return pd.read_excel(path, **kwargs)


class ParquetFormat(Format):
    name, ext = "parquet", "parquet"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        kwargs.setdefault("engine", "pyarrow")
        kwargs.setdefault("compression", "gzip")
        obj.to_parquet(path, **kwargs)

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        import pandas as pd

        kwargs.setdefault("engine", "pyarrow")
        return pd.read_parquet(path, **kwargs)


class TextFormat(Format):
    name, ext = "text", "txt"

    def write(self, obj: Any, path: PathLike, **kwargs: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(obj))

    def read(self, path: PathLike, **kwargs: Any) -> Any:
        with open(path, encoding="utf-8") as f:
            return f.read()


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        PickleFormat(),
        JsonFormat(),
        CsvFormat(),
        CsvGzFormat(),
        ExcelFormat(),
        ParquetFormat(),
        TextFormat(),
    )
}
