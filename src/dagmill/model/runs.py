"""What the run record holds, as typed values (returned by the store and the query API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunInfo", "RunTaskInfo", "TaskAttempt"]


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
