"""``--json`` output: one key naming scheme for every command.

- snake_case keys; an object's own identifier is ``id`` (a run, a job, a task), a
  reference to another object is ``<kind>_id`` (``job_id``, ``run_id``);
- a time is ``<event>_at``, seconds since the epoch (a float, as stored), with
  ``<event>_at_iso`` beside it: ISO 8601 in UTC (``2026-11-21T10:15:00.123+00:00``);
  both are null when the event has not happened. A run's slot is ``scheduled_for``
  (with ``scheduled_for_iso``), the name the run record and the scheduler give it;
- a job in ``jobs list``/``jobs show`` is its record's keys (``kind`` is its front door:
  python or yaml) with the status users see, ``trigger`` (manual or scheduled) and
  ``next_run_at``/``next_run_at_iso`` (null: manual, paused or ended).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagmill.services.jobs import JobView

__all__ = ["dumps", "iso", "job_view_json", "to_json"]

# fields named otherwise in the Python API, renamed to follow the scheme above
_RENAMED = {"task_id": "id", "last_run": "last_run_id"}
# times not named <event>_at (a run's slot): they get their _iso too
_TIMES = {"scheduled_for"}


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
            if name.endswith("_at") or name in _TIMES:
                out[f"{name}_iso"] = iso(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_json(value), indent=2)


def job_view_json(view: JobView) -> dict[str, Any]:
    """A job as ``jobs list --json`` shows it: its record's keys, the status users see
    (replacing the record's latest-run status), ``trigger``, ``next_run_at`` (+ _iso),
    and how many of its runs are ``running`` and ``queued``."""
    out: dict[str, Any] = to_json(view.job)
    out["status"] = view.status
    out["trigger"] = view.trigger
    out["next_run_at"] = view.next_run_at
    out["next_run_at_iso"] = iso(view.next_run_at)
    out["running"] = view.running
    out["queued"] = view.queued
    return out
