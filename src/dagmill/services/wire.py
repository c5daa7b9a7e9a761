"""JSON of the run record's objects, as `--json` prints them and the REST API returns them:

- snake_case keys; an object's own identifier is ``id`` (a run, a job, a task), a
  reference to another object is ``<kind>_id`` (``job_id``, ``run_id``);
- a time is ``<event>_at``, seconds since the epoch (a float, as stored), with
  ``<event>_at_iso`` beside it: ISO 8601 in UTC (``2026-11-21T10:15:00.123+00:00``);
  both are null when the event has not happened. A run's slot is ``scheduled_for``
  (with ``scheduled_for_iso``), the name the run record and the scheduler give it;
- a job in ``jobs list``/``jobs show`` is its record's keys (``kind`` is its front door:
  python or yaml) with the status users see, ``trigger`` (manual or scheduled) and
  ``next_run_at``/``next_run_at_iso`` (null: manual, paused or ended);
- a project (``projects list/show``) is named by ``name`` (what jobs' and runs'
  ``project`` holds); quantities are strings as the quota takes them (``"500m"``,
  ``"16Gi"``; GPUs a number), an unlimited resource null; its running tasks hold
  ``request`` since ``admitted_at``, its pending ones wait with ``reason`` since
  ``since_at`` (``waited``: seconds until now, as a run's attempt records it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagmill.model.projects import Quota
    from dagmill.model.resources import Resources
    from dagmill.services.jobs import JobView
    from dagmill.services.projects import ProjectView

__all__ = ["dumps", "iso", "job_view_json", "project_json", "to_json"]

# fields named otherwise in the Python API, renamed to follow the scheme above
_RENAMED = {"task_id": "id", "last_run": "last_run_id"}
# times not named <event>_at (a run's slot): they get their _iso too
_TIMES = {"scheduled_for"}


def iso(ts: float | None) -> str | None:
    """``ts`` (seconds since the epoch) as ISO 8601 in UTC, or None."""
    if not ts:
        return None
    return _iso(ts)


# the same times are formatted again and again (a server lists the latest runs to every
# poll of a dashboard): remembered, as formatting one is most of the cost of a run's JSON
@functools.lru_cache(maxsize=16384)
def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def to_json(value: Any) -> Any:
    """Plain JSON values for ``value``: dataclasses (the run record's types) become objects
    with their fields renamed to the scheme and ``*_at_iso`` beside their times; mappings
    and sequences are converted item by item (their keys, such as a task's parameters,
    are left as they are)."""
    kind = type(value)
    if kind in _PLAIN:  # most values: checked first, as a list of runs is many of them
        return value
    if kind is dict:
        return {str(k): to_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_json(v) for v in value]
    plan = _plans.get(kind)
    if plan is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        plan = _plan(kind)
    if plan is not None:
        if plan is _OWN_JSON:
            return to_json(value.to_json())
        out: dict[str, Any] = {}
        for attr, name, timed in plan:
            item = getattr(value, attr)
            out[name] = item if type(item) in _PLAIN else to_json(item)
            if timed:
                out[f"{name}_iso"] = iso(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})
_OWN_JSON: tuple[tuple[str, str, bool], ...] = ()  # a dataclass with its own to_json()
# per dataclass: (attribute, JSON name, whether an _iso follows), worked out once
_plans: dict[type, tuple[tuple[str, str, bool], ...]] = {}


def _plan(kind: type) -> tuple[tuple[str, str, bool], ...]:
    if hasattr(kind, "to_json"):
        plan = _OWN_JSON
    else:
        fields = []
        for f in dataclasses.fields(kind):
            name = _RENAMED.get(f.name, f.name)
            fields.append((f.name, name, name.endswith("_at") or name in _TIMES))
        plan = tuple(fields)
    _plans[kind] = plan
    return plan


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


def _quantities(res: Resources | Quota) -> dict[str, Any]:
    """cpu, memory, gpu as the quota spells them; null for a limit not set."""
    from dagmill.model.resources import format_bytes, format_cpu

    cpu, mem, gpu = res.cpu_milli, res.memory_bytes, res.gpu
    return {
        "cpu": None if cpu is None else format_cpu(cpu),
        "memory": None if mem is None else format_bytes(mem),
        "gpu": gpu,
    }


def project_json(view: ProjectView, now: float | None = None) -> dict[str, Any]:
    """A project with its use now, as ``projects list/show --json`` print it: ``quota``
    as set, ``limits`` as enforced (the default project's unset limits are this
    machine's), ``used``, the counts, and its ``running_tasks`` and ``pending_tasks``."""
    import time

    now = time.time() if now is None else now
    usage, info = view.usage, view.info
    return {
        "name": info.name,
        "description": info.description,
        "quota": info.quota.to_dict(),
        "limits": _quantities(usage.limits),
        "used": _quantities(usage.used),
        "jobs": view.jobs,
        "open_runs": view.open_runs,
        "running": len(usage.leases),
        "pending": len(usage.waits),
        "created_at": info.created_at or None,
        "created_at_iso": iso(info.created_at),
        "updated_at": info.updated_at,
        "updated_at_iso": iso(info.updated_at),
        "running_tasks": [
            {
                "run_id": x.run_id,
                "run_name": x.run_name,
                "task_id": x.task_id,
                "attempt": x.attempt,
                "request": x.request.to_dict(),
                "owner": x.owner,
                "server_id": x.server_id,
                "admitted_at": x.admitted_at,
                "admitted_at_iso": iso(x.admitted_at),
                "heartbeat_at": x.heartbeat_at,
                "heartbeat_at_iso": iso(x.heartbeat_at),
            }
            for x in usage.leases
        ],
        "pending_tasks": [
            {
                "run_id": w.run_id,
                "run_name": w.run_name,
                "task_id": w.task_id,
                "attempt": w.attempt,
                "request": w.request.to_dict(),
                "reason": w.reason,
                "owner": w.owner,
                "server_id": w.server_id,
                "since_at": w.since,
                "since_at_iso": iso(w.since),
                "waited": max(0.0, now - w.since),
                "heartbeat_at": w.heartbeat_at,
                "heartbeat_at_iso": iso(w.heartbeat_at),
            }
            for w in usage.waits
        ],
    }
