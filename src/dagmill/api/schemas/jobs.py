"""Jobs: what ``POST /jobs`` takes (``spec``, beside the uploaded bundle) and what the
job routes return, shaped as :func:`dagmill.services.wire.job_view_json` prints a job
(``dagmill jobs list --json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BackfillIn",
    "BackfillOut",
    "JobBuildIn",
    "JobOut",
    "JobRunIn",
    "JobRunOut",
    "PolicyOut",
    "SkippedSlotOut",
    "SlotOut",
    "SlotsOut",
]

JobStatus = Literal["READY", "PENDING", "RUNNING", "SUCCESS", "FAILED", "PAUSED", "ENDED"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyOut(_Out):
    overlap: Literal["skip", "queue", "allow"]
    catchup: Literal["latest", "all", "none"]
    slot_param: str | None


class JobOut(_Out):
    """A job with the status users see (see ``dagmill jobs list --help``)."""

    id: str
    name: str
    project: str
    kind: Literal["python", "yaml"] = Field(description="Its front door")
    ref: str = Field(description="MODULE:Task or a pipeline file (inside `bundle` if set)")
    version: str = Field(description="The definition's version the job pins")
    params: dict[str, str]
    data_dir: str | None
    created_at: float
    created_at_iso: str | None
    status: JobStatus
    last_run_id: str | None
    ttl: dict[str, Any]
    schedule: dict[str, Any] | None = Field(
        description="The pipeline file's schedule keys: schedule_interval (cron) or every, "
        "timezone, start_date, end_date"
    )
    policy: PolicyOut
    paused: bool
    last_slot_at: float | None
    last_slot_at_iso: str | None
    requests: dict[str, dict[str, Any]] = Field(description="Resources by task, as built")
    bundle: str | None = Field(description="The uploaded bundle (sha256) it was built from")
    trigger: Literal["manual", "scheduled"]
    next_run_at: float | None
    next_run_at_iso: str | None
    running: int
    queued: int


class JobBuildIn(BaseModel):
    """How to build a job from the uploaded bundle: the options of ``dagmill jobs
    build``. Without ``data``, the job writes under ``$DAGMILL_HOME/data/<project>/<job
    name>`` on the server; a relative ``data`` is under ``$DAGMILL_HOME/data/<project>``."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        min_length=1,
        description="Inside the bundle: a pipeline file, or MODULE:Task",
        examples=["pipeline.yaml", "flows.py:Train"],
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    params: dict[str, str] = Field(default_factory=dict, description="MODULE:Task only")
    data: str | None = Field(default=None, min_length=1)
    cron: str | None = Field(default=None, examples=["5 10 * * *", "@daily"])
    every: str | None = Field(default=None, examples=["30m", "1h", "1d"])
    timezone: str | None = Field(default=None, examples=["Europe/Paris"])
    start: str | None = Field(default=None, description="First slot at or after (local)")
    end: str | None = Field(default=None, description="No slot after (local, inclusive)")
    overlap: Literal["skip", "queue", "allow"] | None = None
    catchup: Literal["latest", "all", "none"] | None = None
    slot_param: str | None = None
    ttl: dict[str, int | None] | None = Field(
        default=None,
        description="secondsAfterCompletion, secondsAfterSuccess, secondsAfterFailure "
        "(null: keep runs forever)",
    )

    @model_validator(mode="after")
    def _schedule_parts(self) -> JobBuildIn:
        if self.cron is not None and self.every is not None:
            raise ValueError("give cron or every, not both: a schedule is one or the other")
        if self.cron is None and self.every is None:
            parts = ("timezone", "start", "end", "overlap", "catchup")
            given = [k for k in parts if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)} describe a schedule: add cron or every")
        unknown = set(self.ttl or {}) - {
            "secondsAfterCompletion",
            "secondsAfterSuccess",
            "secondsAfterFailure",
        }
        if unknown:
            raise ValueError(f"ttl: unknown keys {', '.join(sorted(unknown))}")
        return self


class JobRunIn(BaseModel):
    """A run of a job; ``params`` override the job's for this run only."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, str] = Field(default_factory=dict)


class JobRunOut(BaseModel):
    """The queued run (every key of ``GET /runs/{id}``'s ``run``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    status: str
    job_id: str | None
    project: str
    created_at: float
    created_at_iso: str | None


class SlotOut(_Out):
    """A slot as ``dagmill jobs next --json`` shows it."""

    fires_at: float = Field(description="Seconds since the epoch")
    fires_at_iso: str | None = Field(description="ISO 8601, UTC")
    local: str = Field(description="ISO 8601 in the job's timezone")


class SlotsOut(_Out):
    """A scheduled job's next slots (whether or not it is paused)."""

    job_id: str
    timezone: str
    paused: bool
    next: list[SlotOut]


class SkippedSlotOut(_Out):
    """A slot the scheduler skipped, and why."""

    job_id: str
    scheduled_for: float
    scheduled_for_iso: str | None
    outcome: Literal["run", "skipped"]
    run_id: str | None
    reason: str | None
    decided_at: float
    decided_at_iso: str | None


class BackfillIn(BaseModel):
    """A range of past slots, local to the job's timezone (``YYYY-MM-DD[ HH:MM[:SS]]``;
    a date alone as ``end``: all of that day)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(min_length=1, examples=["2026-11-01"])
    end: str = Field(min_length=1, examples=["2026-11-03"])


class BackfillOut(_Out):
    """What a backfill queued: one run per slot not decided before (``already``: those
    that were); ``until_at``: the end it used (``clamped``: the range reached past now)."""

    job_id: str
    slots: int
    queued: list[str]
    already: int
    until_at: float
    until_at_iso: str | None
    clamped: bool
