"""When a job runs on its own: a schedule (cron, or start date + period) and the job's
policies for overlapping runs, missed slots and handing the slot to its tasks.

A slot is one instant a schedule fires at, in seconds since the epoch (UTC); a run made
for a slot knows it (``scheduled_for``). Dates in a schedule are local to its timezone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CATCHUP", "OVERLAP", "PRESETS", "JobPolicy", "ScheduleSpec", "SlotInfo"]

# skip: a slot due while the job's previous run is PENDING or RUNNING is recorded as
# skipped; queue: its run waits for the previous one; allow: runs start side by side
OVERLAP = ("skip", "queue", "allow")
# after downtime: latest runs the latest missed slot once, all one run per missed slot
# (oldest first), none drops the missed slots
CATCHUP = ("latest", "all", "none")
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A cron expression (5 fields or a preset) or a period counted from ``start_date``
    (``30s``, ``30m``, ``1h``, ``1d``, ``1w``), in ``timezone`` (IANA), between
    ``start_date`` and ``end_date`` (``YYYY-MM-DD[ HH:MM[:SS]]``, local; end inclusive)."""

    cron: str | None = None
    every: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    timezone: str = "UTC"

    def to_json(self) -> dict[str, Any]:
        """The YAML ``schedule:`` keys (``schedule_interval`` for the cron expression)."""
        out: dict[str, Any] = {"timezone": self.timezone}
        if self.cron is not None:
            out["schedule_interval"] = self.cron
        for key in ("every", "start_date", "end_date"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ScheduleSpec:
        return cls(
            cron=d.get("schedule_interval", d.get("cron")),
            every=d.get("every"),
            start_date=d.get("start_date"),
            end_date=d.get("end_date"),
            timezone=d.get("timezone") or "UTC",
        )

    def describe(self) -> str:
        """``5 10 * * * (Europe/Paris) from 2022-01-01 00:00 to 2022-12-31``."""
        rule = f"every {self.every}" if self.every else str(self.cron)
        text = f"{rule} ({self.timezone})"
        if self.start_date:
            text += f" from {self.start_date}"
        if self.end_date:
            text += f" to {self.end_date}"
        return text


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """How a job's runs meet: ``overlap`` (skip, queue, allow), ``catchup`` (latest, all,
    none) and the parameter its slot is bound to (``slot_param``), if any."""

    overlap: str = "skip"
    catchup: str = "latest"
    slot_param: str | None = None

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP)}, got {self.overlap!r}")
        if self.catchup not in CATCHUP:
            raise ValueError(f"catchup must be one of {', '.join(CATCHUP)}, got {self.catchup!r}")


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """The decision about one slot of a job, made once: ``outcome`` is ``run`` (``run_id``
    is the run made for it) or ``skipped`` (``reason`` says why); times are epoch seconds."""

    job_id: str
    scheduled_for: float
    outcome: str
    run_id: str | None
    reason: str | None
    decided_at: float
