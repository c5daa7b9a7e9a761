"""Projects, as :func:`dagmill.services.wire.project_json` prints them (``dagmill projects
show --json``), and the change of a project's quota."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LimitsOut",
    "PendingTaskOut",
    "ProjectIn",
    "ProjectOut",
    "QuotaOut",
    "RunningTaskOut",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotaOut(_Out):
    """Resources as set: a key is present only for a limit set (quantities as the
    quota takes them)."""

    cpu: str | None = Field(default=None, examples=["8", "500m"])
    memory: str | None = Field(default=None, examples=["16Gi"])
    gpu: int | None = None


class LimitsOut(_Out):
    """cpu, memory, gpu; null: unlimited (or, in ``used``, none in use)."""

    cpu: str | None
    memory: str | None
    gpu: int | None


class RunningTaskOut(_Out):
    run_id: str
    run_name: str
    task_id: str
    attempt: int
    request: QuotaOut
    owner: str = Field(description="host:pid of the engine running it")
    server_id: str | None
    admitted_at: float
    admitted_at_iso: str | None
    heartbeat_at: float
    heartbeat_at_iso: str | None


class PendingTaskOut(_Out):
    """A task waiting for room in the quota: ``reason`` says for what."""

    run_id: str
    run_name: str
    task_id: str
    attempt: int
    request: QuotaOut
    reason: str
    owner: str
    server_id: str | None
    since_at: float
    since_at_iso: str | None
    waited: float = Field(description="Seconds it has waited until now")
    heartbeat_at: float
    heartbeat_at_iso: str | None


class ProjectOut(_Out):
    """A project and its use now: ``quota`` as set, ``limits`` as enforced (the default
    project's unset limits are the server's machine's), ``used`` by its running tasks."""

    name: str
    description: str
    quota: QuotaOut
    limits: LimitsOut
    used: LimitsOut
    jobs: int
    open_runs: int = Field(description="Its runs PENDING or RUNNING")
    running: int = Field(description="Tasks holding resources now")
    pending: int = Field(description="Tasks waiting for resources")
    created_at: float | None
    created_at_iso: str | None
    updated_at: float | None
    updated_at_iso: str | None
    running_tasks: list[RunningTaskOut]
    pending_tasks: list[PendingTaskOut]


class ProjectIn(BaseModel):
    """What to change: a limit as a quantity (``"8"``, ``"500m"``; ``"16Gi"``; ``"1"``),
    or ``""`` to remove it (unlimited; in ``default``: the machine's capacity); a field
    left out stays as it is."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    cpu: str | None = Field(default=None, examples=["4"])
    memory: str | None = Field(default=None, examples=["16Gi"])
    gpu: str | None = Field(default=None, examples=["1"])
    description: str | None = Field(default=None, max_length=1000, pattern=r"^[^\x00]*$")
