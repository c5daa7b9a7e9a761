"""What the run record holds, as typed values (returned by the store and the query API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagmill.model.resources import Resources
from dagmill.model.schedules import JobPolicy, ScheduleSpec

__all__ = ["JobInfo", "RunInfo", "RunTarget", "RunTaskInfo", "TaskAttempt"]


@dataclass(frozen=True, slots=True)
class RunTarget:
    """What a run ran, so it can be run again: a front door's reference and parameters."""

    kind: str  # "python": ref is MODULE:Task
    ref: str
    params: Mapping[str, str] = field(default_factory=dict)
    data: str | None = None
    # the slot a scheduled run was made for, ISO 8601 in the job's timezone
    # ("2022-03-01T10:05:00+01:00"): tasks get it as DAGMILL_SLOT / processor.slot()
    slot: str | None = None
    # the uploaded bundle (its sha256) ``ref`` is relative to; None: ``ref`` is a local
    # path or an importable module
    bundle: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "ref": self.ref, "params": dict(self.params), "data": self.data}
        if self.slot is not None:
            out["slot"] = self.slot
        if self.bundle is not None:
            out["bundle"] = self.bundle
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunTarget:
        return cls(
            d["kind"], d["ref"], d.get("params", {}), d.get("data"), d.get("slot"), d.get("bundle")
        )


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A built pipeline, ready to run, by hand or on its ``schedule``.

    ``status`` is the store's view, its latest run's (READY if none); the services turn it
    into what users see for a scheduled job (PENDING, PAUSED, ENDED, ...)."""

    id: str
    name: str
    project: str
    kind: str
    ref: str
    version: str
    params: Mapping[str, str]
    data_dir: str | None
    created_at: float
    status: str = "READY"
    last_run: str | None = None
    ttl: Mapping[str, Any] = field(default_factory=dict)
    schedule: ScheduleSpec | None = None
    policy: JobPolicy = field(default_factory=JobPolicy)
    paused: bool = False
    # the latest slot decided for the job (fired, skipped or dropped), epoch seconds
    last_slot_at: float | None = None
    # what its tasks that declare resources request, by task label (as built)
    requests: Mapping[str, Resources] = field(default_factory=dict)
    # the uploaded bundle (sha256) it was built from: ``ref`` is relative to its root
    bundle: str | None = None

    def target(self) -> RunTarget:
        return RunTarget(self.kind, self.ref, self.params, self.data_dir, bundle=self.bundle)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One execution of a graph (or of a job)."""

    id: str
    name: str
    status: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    job_id: str | None = None
    project: str = "default"
    owner: str | None = None
    error: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    target: RunTarget | None = None
    heartbeat_at: float | None = None
    scheduled_for: float | None = None  # the slot a scheduled run was made for
    server_id: str | None = None  # the server whose runner runs it

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    """One attempt of one task inside a run (a TaskRun)."""

    attempt: int
    status: str
    started_at: float | None = None
    ended_at: float | None = None
    waiting_for: str | None = None
    error: str | None = None
    error_location: str | None = None
    traceback: str | None = None
    log_path: str | None = None  # this attempt's lines are bytes [log_start, log_end)
    log_start: int | None = None
    log_end: int | None = None  # None while it runs: up to the end of the file
    waited: float | None = None  # seconds it waited for resources before it started


@dataclass(frozen=True, slots=True)
class RunTaskInfo:
    """A task as it stood in a run: the graph it ran, its plan and its final status."""

    task_id: str
    family: str
    params: Mapping[str, str]
    upstream: tuple[str, ...]
    plan_state: str
    plan_reason: str | None
    status: str
    attempts: int
    resources: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    history: tuple[TaskAttempt, ...] = ()
