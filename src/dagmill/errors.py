"""Every error dagmill raises on purpose, in one tree.

    DagmillError                  base: catch this to catch anything dagmill says
    ├── DefinitionError           the user's definitions are wrong (CLI exit code 2)
    │   ├── ParameterError        a parameter is missing, unknown or of the wrong type
    │   ├── ResourceError         a bad resource string, or a request larger than the pool
    │   ├── CycleError            the task graph has a cycle (the cycle is in the message)
    │   ├── TaskLoadError         `module:Task` cannot be imported or is not a task
    │   └── FlowError             a Workflow or task was asked for what it does not have: no
    │                             default task, not a task class, no such flow or output key
    │                             (also a RuntimeError, as d6tflow raises these)
    ├── StoreError                the run record cannot be opened or written
    │   ├── SchemaVersionError    the database was written by a newer dagmill
    │   └── StoreUnavailable      the database stayed away (lost, locked, disk full) past
    │                             DAGMILL_STORE_RETRY_SECONDS; a run is left resumable (exit 1)
    ├── OutputError               an output cannot be loaded (missing, or in another format)
    └── RunFailed                 a run ended with failed tasks (raised by ``run(abort=True)``)

Messages say what is wrong, where (task, parameter, file:line) and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CycleError",
    "DagmillError",
    "DefinitionError",
    "FlowError",
    "OutputError",
    "ParameterError",
    "ResourceError",
    "RunFailed",
    "SchemaVersionError",
    "StoreError",
    "StoreUnavailable",
    "TaskLoadError",
]


class DagmillError(Exception):
    """Base class of every error dagmill raises on purpose."""


class DefinitionError(DagmillError):
    """The definitions given to dagmill are wrong; nothing was run or written."""


class ParameterError(DefinitionError, ValueError):
    """A task parameter is missing, unknown, or cannot be parsed into its type."""


class ResourceError(DefinitionError, ValueError):
    """A resource string is malformed, or a task asks for more than the pool has."""


class CycleError(DefinitionError):
    """The task graph has a cycle; ``cycle`` lists the task ids around it."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


class TaskLoadError(DefinitionError):
    """A ``module:Task`` reference cannot be resolved to a task class."""


class FlowError(DefinitionError, RuntimeError):
    """A Workflow or task was asked for something it does not have (d6tflow raises
    ``RuntimeError`` for these, so code that catches that keeps working)."""


class StoreError(DagmillError):
    """The run record (database) cannot be opened, migrated or written."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this dagmill understands."""


class StoreUnavailable(StoreError):
    """The run record's database stayed unreachable, locked or full for longer than
    ``DAGMILL_STORE_RETRY_SECONDS``. ``database`` (the URL, without password), ``reason``
    (what happened, in words) and ``run_id`` (the run left resumable, if any) say more."""

    def __init__(self, message: str, *, database: str, reason: str, run_id: str | None = None):
        super().__init__(message)
        self.database = database
        self.reason = reason
        self.run_id = run_id

    def for_run(self, run_id: str) -> StoreUnavailable:
        """The same error, telling how to finish ``run_id`` once the database is back."""
        if self.run_id is not None:
            return self
        return StoreUnavailable(
            f"{self}; run {run_id} stopped after the tasks in hand finished and stays"
            f" RUNNING in the record: once the database is back, finish it with"
            f" `dagmill runs resume {run_id}` (finished tasks are not redone)",
            database=self.database,
            reason=self.reason,
            run_id=run_id,
        )


class RunTakenOver(DagmillError, RuntimeError):
    """Another process took this engine's run over (its server, or it, was thought dead:
    a network partition, a long pause). The engine stopped its tasks and wrote nothing
    more of the run; it goes on in its new owner (exit code 1)."""

    def __init__(self, run_id: str, owner: str | None):
        by = f"by {owner}" if owner else "(handed back, or deleted)"
        super().__init__(
            f"run {run_id} was taken over {by} while this engine ran it (it was thought "
            "dead: its server's or its own heartbeats were late): this engine stopped its "
            f"tasks and wrote nothing more; follow the run with `dagmill runs show {run_id}`"
        )
        self.run_id = run_id
        self.owner = owner


class OutputError(DagmillError, RuntimeError):
    """A task output cannot be loaded: it is missing, or written in another format."""


class RunFailed(DagmillError, RuntimeError):
    """A run finished with failed tasks; ``run_id`` and ``failed`` say which."""

    def __init__(self, message: str, run_id: str, failed: list[str]) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.failed = failed
