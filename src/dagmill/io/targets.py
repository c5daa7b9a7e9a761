"""Targets: one output of a task at one location, in one format.

>>> import tempfile, pathlib
>>> t = PickleTarget(pathlib.Path(tempfile.mkdtemp()) / "x.pkl")
>>> _ = t.save({"a": 1})
>>> t.exists(), t.load()
(True, {'a': 1})
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar

from dagmill.errors import OutputError
from dagmill.io import memory
from dagmill.io.atomic import atomic_path
from dagmill.io.formats import FORMATS, Format

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

_load_cache: dict[tuple[str, str], Any] = {}


class Target:
    """Base of all targets: ``exists()``, ``load()``, ``save()``, ``invalidate()``, ``path``."""

    kind: ClassVar[str] = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._location = os.fspath(path)
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(self._location)
        return self._path

    @property
    def location(self) -> str:
        return self._location

    def exists(self) -> bool:
        return os.path.exists(self._location)

    def version(self) -> str | None:
        """The data version (size and modification time), or None when missing."""
        try:
            st = os.stat(self._location)
        except FileNotFoundError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}"

    def invalidate(self) -> None:
        """Delete the output (a missing output is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._location)

    remove = invalidate

    def load(self, cached: bool = False, **kwargs: Any) -> Any:
        raise OutputError(f"{type(self).__name__} at {self.path} cannot be loaded")

    def save(self, obj: Any, **kwargs: Any) -> Target:
        """Save ``obj``; returns the target (path-like: ``open(target)`` works)."""
        raise OutputError(f"{type(self).__name__} at {self.path} cannot be saved")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._location!r})"

    def __fspath__(self) -> str:
        return self._location


class DataTarget(Target):
    """A file target in a given format; saved atomically (temporary name, then rename)."""

    format: ClassVar[Format] = FORMATS["pickle"]

    def load(self, cached: bool = False, **kwargs: Any) -> Any:
        key = (self._location, "")
        if cached:
            v = self.version()
            key = (key[0], v or "")
            if key in _load_cache:
                return _load_cache[key]
        try:
            obj = self.format.read(self._location, **kwargs)
        except FileNotFoundError:
            raise OutputError(
                f"output {self.path} does not exist: run the task that writes it first"
            ) from None
        if cached:
            _load_cache[key] = obj
        return obj

    def save(self, obj: Any, **kwargs: Any) -> Target:
        with atomic_path(self._location) as tmp:
            self.format.write(obj, tmp, **kwargs)
        return self


class PickleTarget(DataTarget):
    format = FORMATS["pickle"]


class JsonTarget(DataTarget):
    """JSON, stored as ``{"data": obj}`` like d6tflow, so its data folders stay readable."""

    format = FORMATS["json"]

    def load(self, cached: bool = False, **kwargs: Any) -> Any:
        return super().load(cached, **kwargs)["data"]

    def save(self, obj: Any, **kwargs: Any) -> Target:
        kwargs.setdefault("indent", 4)
        return super().save({"data": obj}, **kwargs)


class CSVPandasTarget(DataTarget):
    format = FORMATS["csv"]


class CSVGZPandasTarget(DataTarget):
    format = FORMATS["csv.gz"]


class ExcelPandasTarget(DataTarget):
    format = FORMATS["excel"]


class PqPandasTarget(DataTarget):
    format = FORMATS["parquet"]


class TextTarget(DataTarget):
    format = FORMATS["text"]


class CacheTarget(Target):
    """An in-memory output: fast, but gone when the process ends (``workers=1`` only)."""

    kind = "memory"

    @property
    def path(self) -> str:  # type: ignore[override]
        # a string, as d6tflow's (luigi's) in-memory targets give it: there is no file
        return self._location

    @property
    def location(self) -> str:
        return f"memory://{self._location}"

    def exists(self) -> bool:
        return memory.exists(self.location)

    def version(self) -> str | None:
        return memory.version(self.location)

    def invalidate(self) -> None:
        memory.delete(self.location)

    remove = invalidate

    def load(self, cached: bool = False, **kwargs: Any) -> Any:
        if not memory.exists(self.location):
            raise OutputError(
                f"in-memory output {self.path} is not there: in-memory outputs live only in the "
                "process that made them (run with workers=1, or use a file output such as "
                "TaskPickle)"
            )
        return memory.load(self.location)

    def save(self, obj: Any, **kwargs: Any) -> Target:
        memory.save(self.location, obj)
        return self


class PdCacheTarget(CacheTarget):
    """An in-memory pandas DataFrame output."""
