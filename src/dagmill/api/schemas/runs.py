"""Runs, their tasks and their logs, as :func:`dagmill.services.wire.to_json` prints them
(``dagmill runs list/show --json``): every key, always present (null when unknown)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttemptOut",
    "LogChunkOut",
    "LogsOut",
    "RunCancelOut",
    "RunDetailOut",
    "RunOut",
    "RunStatus",
    "TargetOut",
    "TaskOut",
]

RunStatus = Literal["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetOut(_Out):
    """What a run ran, so that it can run again: a front door (``python``: ``ref`` is
    MODULE:Task; ``yaml``: a pipeline file) with its parameters and data folder."""

    kind: str
    ref: str
    params: dict[str, str]
    data: str | None
    slot: str | None = Field(
        default=None,
        description="A scheduled run's slot (ISO 8601 in its job's timezone); absent otherwise",
    )


class RunOut(_Out):
    """One execution of a job (or of an ad-hoc graph)."""

    id: str = Field(examples=["20261121-101500-3fa9c2"])
    name: str
    status: RunStatus
    created_at: float
    created_at_iso: str | None
    started_at: float | None
    started_at_iso: str | None
    ended_at: float | None
    ended_at_iso: str | None
    job_id: str | None
    project: str
    owner: str | None = Field(description="host:pid of the process running it")
    error: str | None
    counts: dict[str, int] = Field(description="How many tasks ended in each status")
    options: dict[str, Any]
    target: TargetOut | None = Field(description="null: started from Python (no rerun)")
    heartbeat_at: float | None
    heartbeat_at_iso: str | None
    scheduled_for: float | None = Field(description="The slot a scheduled run was made for")
    scheduled_for_iso: str | None
    server_id: str | None


class AttemptOut(_Out):
    """One attempt of one task (a TaskRun)."""

    attempt: int
    status: str
    started_at: float | None
    started_at_iso: str | None
    ended_at: float | None
    ended_at_iso: str | None
    waiting_for: str | None = Field(description="What a PENDING attempt waits for")
    error: str | None
    error_location: str | None
    traceback: str | None
    log_path: str | None
    log_start: int | None
    log_end: int | None
    waited: float | None = Field(description="Seconds it waited for resources")


class TaskOut(_Out):
    """A task as it stood in the run: its graph, plan, final status and attempts."""

    id: str
    family: str
    params: dict[str, str]
    upstream: list[str]
    plan_state: str
    plan_reason: str | None
    status: str
    attempts: int = Field(description="How many attempts it made (each in history)")
    resources: dict[str, Any]
    fingerprint: str | None
    history: list[AttemptOut]


class RunDetailOut(_Out):
    """A run with its tasks (as ``dagmill runs show --json``), and since when each of its
    PENDING tasks waits for room in the project's quota (by task id, seconds since the
    epoch; its reason is in its last attempt's ``waiting_for``)."""

    run: RunOut
    tasks: list[TaskOut]
    pending_since: dict[str, float]


class RunCancelOut(_Out):
    """The run after the cancel, and what happened (it may have ended already)."""

    run: RunOut
    message: str


class LogChunkOut(_Out):
    """Output of one attempt of one task."""

    task_id: str
    attempt: int
    text: str


class LogsOut(_Out):
    """What the run's tasks printed, attempt by attempt, in the order they started."""

    items: list[LogChunkOut]
