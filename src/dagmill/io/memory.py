"""In-memory outputs (d6tflow's TaskCache): they live as long as the process."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["delete", "exists", "load", "save", "version"]

_data: dict[str, tuple[Any, str]] = {}
_versions = itertools.count(1)


def save(key: str, obj: Any) -> None:
    _data[key] = (obj, f"mem:{next(_versions)}")


def load(key: str) -> Any:
    return _data[key][0]


def exists(key: str) -> bool:
    return key in _data


def version(key: str) -> str | None:
    item = _data.get(key)
    return item[1] if item else None


def delete(key: str) -> None:
    _data.pop(key, None)
