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
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dagmill.model.projects import Quota
    from dagmill.model.resources import Resources
    from dagmill.services.jobs import BackfillResult, JobView
    from dagmill.services.projects import ProjectView

__all__ = [
    "backfill_json",
    "dumps",
    "from_json",
    "iso",
    "job_view_from_json",
    "job_view_json",
    "project_from_json",
    "project_json",
    "to_json",
]

T = TypeVar("T")

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


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` back from what :func:`to_json` made of it: fields renamed
    back, ``*_iso`` keys ignored, nested dataclasses, tuples, lists, mappings and optional
    values rebuilt by the fields' type hints; a class with its own ``from_json`` (as
    with its own ``to_json``) reads itself. A field missing from ``data`` keeps its
    default."""
    own = getattr(cls, "from_json", None)
    if own is not None and hasattr(cls, "to_json"):
        return typing.cast(T, own(data))
    hints = _hints(typing.cast(type, cls))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = _RENAMED.get(f.name, f.name)
        if key not in data:  # an object that keeps the name, as a log chunk's task_id
            key = f.name
        if key in data:
            values[f.name] = _typed(hints[f.name], data[key])
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, value: Any) -> Any:
    """``value`` (plain JSON) as the type ``hint`` says."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return _typed(kinds[0], value) if len(kinds) == 1 else value
    if origin is tuple:
        return tuple(_typed(args[0], v) for v in value) if args else tuple(value)
    if origin is list:
        return [_typed(args[0], v) for v in value] if args else list(value)
    if origin in (dict, Mapping):
        return {k: _typed(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
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


def job_view_from_json(data: Mapping[str, Any]) -> JobView:
    """The inverse of :func:`job_view_json` (the job's ``status`` is the view's)."""
    from dagmill.model.runs import JobInfo
    from dagmill.services.jobs import JobView

    return JobView(
        job=from_json(JobInfo, data),
        status=data["status"],
        trigger=data["trigger"],
        next_run_at=data.get("next_run_at"),
        last_run_id=data.get("last_run_id"),
        running=data.get("running", 0),
        queued=data.get("queued", 0),
    )


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


def project_from_json(data: Mapping[str, Any]) -> ProjectView:
    """The inverse of :func:`project_json` (quantities as the quota spells them: memory
    to the precision shown, ``1.5Gi``)."""
    from dagmill.model.projects import Lease, LeaseWait, ProjectInfo, ProjectUsage, Quota
    from dagmill.model.resources import Resources
    from dagmill.services.projects import ProjectView

    def used(d: Mapping[str, Any]) -> Resources:
        return Resources.parse({k: v for k, v in d.items() if v is not None})

    name = data["name"]
    info = ProjectInfo(
        name,
        Quota.parse(data.get("quota") or {}),
        data.get("created_at") or 0.0,
        data.get("description") or "",
        data.get("updated_at"),
    )
    leases = [
        Lease(
            name,
            x["run_id"],
            x["task_id"],
            x["attempt"],
            Resources.parse(x.get("request")),
            x["owner"],
            x["admitted_at"],
            x["heartbeat_at"],
            x.get("server_id"),
            x.get("run_name") or "",
        )
        for x in data.get("running_tasks", [])
    ]
    waits = [
        LeaseWait(
            name,
            w["run_id"],
            w["task_id"],
            w["attempt"],
            Resources.parse(w.get("request")),
            w["owner"],
            w["since_at"],
            w["reason"],
            w["heartbeat_at"],
            w.get("server_id"),
            w.get("run_name") or "",
        )
        for w in data.get("pending_tasks", [])
    ]
    usage = ProjectUsage(
        info, Quota.parse(data.get("limits") or {}), used(data.get("used") or {}), leases, waits
    )
    return ProjectView(usage, data.get("jobs", 0), data.get("open_runs", 0))


def backfill_json(result: BackfillResult) -> dict[str, Any]:
    """A backfill as ``jobs backfill --json`` prints it and the API returns it: how many
    slots the range holds, the runs ``queued`` now, how many were ``already`` run, and
    the end it was ``clamped`` to (``until_at``: the job's end or now)."""
    return {
        "job_id": result.job_id,
        "slots": len(result.slots),
        "queued": list(result.queued),
        "already": result.already,
        "until_at": result.until,
        "until_at_iso": iso(result.until),
        "clamped": result.clamped,
    }
