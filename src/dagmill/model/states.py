"""The persisted names of run, task-run and plan states (stored as these strings)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TaskRunStatus(StrEnum):
    WAITING = "WAITING"  # on upstream tasks
    PENDING = "PENDING"  # on resources; the task run says which
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    SKIPPED = "SKIPPED"  # already complete
    CANCELLED = "CANCELLED"


class PlanState(StrEnum):
    """What the planner decided about a task before a run."""

    COMPLETE = "COMPLETE"  # outputs exist and the recorded fingerprint matches
    PENDING = "PENDING"  # never ran (no outputs)
    STALE = "STALE"  # ran, but something it depends on changed


FINAL_TASK_STATES = frozenset(
    {
        TaskRunStatus.SUCCESS,
        TaskRunStatus.FAILED,
        TaskRunStatus.UPSTREAM_FAILED,
        TaskRunStatus.SKIPPED,
        TaskRunStatus.CANCELLED,
    }
)
