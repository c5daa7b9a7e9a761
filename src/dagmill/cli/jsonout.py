"""``--json`` output: one key naming scheme for every command.

- snake_case keys; an object's own identifier is ``id`` (a run, a job, a task), a
  reference to another object is ``<kind>_id`` (``job_id``, ``run_id``);
- a time is ``<event>_at``, seconds since the epoch (a float, as stored), with
  ``<event>_at_iso`` beside it: ISO 8601 in UTC (``2026-11-21T10:15:00.123+00:00``);
  both are null when the event has not happened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "iso", "to_json"]

# fields named otherwise in the Python API, renamed to follow the scheme above
_RENAMED = {"task_id": "id", "last_run": "last_run_id"}


def iso(ts: float | None) -> str | None:
    """``ts`` (seconds since the epoch) as ISO 8601 in UTC, or None."""
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def to_json(value: Any) -> Any:
    """Plain JSON values for ``value``: dataclasses (the run record's types) become objects
    with their fields renamed to the scheme and ``*_at_iso`` beside their times; mappings
    and sequences are converted item by item (their keys, such as a task's parameters,
    are left as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_json"):
            return to_json(value.to_json())
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            name = _RENAMED.get(f.name, f.name)
            out[name] = to_json(item)
            if name.endswith("_at"):
                out[f"{name}_iso"] = iso(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_json(value), indent=2)
