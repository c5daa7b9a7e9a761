"""The scheduler: decides each due slot of each scheduled job once, then sleeps until the
next one is due.

It holds one entry per scheduled job (its trigger and the next instant it is due) in a
heap; ``tick(now)`` decides what is due at ``now`` and ``next_due()`` says when to call
it again, so the caller (the server) sleeps exactly that long or until woken by a change
to the jobs (``load``). Time is always passed in: tests drive it with any clock.

A decision is a row (``Store.decide_slot``): written once per job and slot whichever of
several schedulers gets there first, with the run it starts (PENDING, for the run queue)
or the reason it was skipped. Overlap: with ``skip``, a slot due while the job's previous
run is PENDING or RUNNING is recorded as skipped ("slot 10:05 skipped: run R still
RUNNING"); with ``queue`` and ``allow`` it gets its run, which the queue starts after the
previous one or at once. Slots of one catch-up (after downtime, ``catchup: all``) queue
behind each other rather than skip each other.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from dagmill.engine import new_run_id
from dagmill.errors import DefinitionError
from dagmill.model.runs import JobInfo, RunTarget
from dagmill.scheduler.triggers import Trigger, due_slots, format_slot, make_trigger
from dagmill.store import Store

__all__ = ["Decision", "Scheduler", "slot_target"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the scheduler decided for one slot of one job."""

    job_id: str
    scheduled_for: float
    outcome: str  # "run" or "skipped"
    run_id: str | None = None
    reason: str | None = None
    late: float = 0.0  # seconds between the slot and the decision


@dataclass(slots=True)
class _Entry:
    job: JobInfo
    trigger: Trigger
    due: float | None


def slot_target(job: JobInfo, slot: float) -> RunTarget:
    """The target of a job's run for ``slot``: the slot handed to its tasks, and bound to
    the job's slot parameter if it has one."""
    tz = job.schedule.timezone if job.schedule else "UTC"
    when = format_slot(slot, tz)
    target = job.target()
    params = dict(target.params)
    if job.policy.slot_param:
        params[job.policy.slot_param] = when
    return replace(target, params=params, slot=when)


def _when(job: JobInfo) -> tuple[object, ...]:
    """What decides a job's slots (its runs' statuses do not)."""
    return (job.schedule, job.policy, job.paused, job.last_slot_at, job.created_at)


def _local_time(slot: float, tz: str) -> str:
    local = datetime.fromtimestamp(slot, ZoneInfo(tz))
    return local.strftime("%Y-%m-%d %H:%M" if local.second == 0 else "%Y-%m-%d %H:%M:%S")


class Scheduler:
    """Decides due slots for the scheduled jobs it was loaded with."""

    def __init__(self, store: Store, log: Callable[..., None] | None = None) -> None:
        self._store = store
        self._log = log or (lambda event, **fields: None)
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []

    def load(self, jobs: list[JobInfo], now: float) -> None:
        """(Re)build the entries from the jobs as the store has them now: built, edited,
        paused and deleted jobs take effect here."""
        entries: dict[str, _Entry] = {}
        for job in jobs:
            if job.schedule is None or job.paused:
                continue
            known = self._entries.get(job.id)
            if known is not None and _when(known.job) == _when(job):
                entries[job.id] = known  # unchanged: its due time stands
                continue
            if known is not None and known.job.schedule == job.schedule:
                trigger = known.trigger
            else:
                try:
                    trigger = make_trigger(job.schedule)
                except DefinitionError as e:  # validated when built: a hand-edited row
                    self._log("schedule_invalid", level="error", job=job.id, error=str(e))
                    continue
            entries[job.id] = _Entry(job, trigger, self._first_due(job, trigger, now))
        self._entries = entries
        self._heap = [(e.due, j) for j, e in entries.items() if e.due is not None]
        heapq.heapify(self._heap)

    def jobs(self) -> int:
        return len(self._entries)

    def next_due(self) -> float | None:
        """When the next slot of any job is due (None: no slot ever again)."""
        while self._heap:
            due, job_id = self._heap[0]
            entry = self._entries.get(job_id)
            if entry is not None and entry.due == due:
                return due
            heapq.heappop(self._heap)  # superseded by a reload or a later due
        return None

    def tick(self, now: float | None = None) -> list[Decision]:
        """Decide every slot due at ``now``."""
        now = time.time() if now is None else now
        out: list[Decision] = []
        while (due := self.next_due()) is not None and due <= now:
            _, job_id = heapq.heappop(self._heap)
            entry = self._entries[job_id]
            out += self._decide(entry, now)
            if entry.due is not None:
                heapq.heappush(self._heap, (entry.due, job_id))
        return out

    def _first_due(self, job: JobInfo, trigger: Trigger, now: float) -> float | None:
        """When the job is next due: its first slot after the last one decided (or after
        its creation), which may be past already (``tick`` then applies the catch-up)."""
        if job.last_slot_at is None and trigger.spec.every is not None:
            # a new `every` job whose start is past fires its latest slot at once
            due = due_slots(trigger, None, job.created_at, now, job.policy.catchup)
            return due.fire[0] if due.fire else trigger.next_after(max(now, job.created_at))
        if job.last_slot_at is not None:
            return trigger.next_after(job.last_slot_at)
        return trigger.next_after(job.created_at - 0.001)  # a slot at creation counts

    def _decide(self, entry: _Entry, now: float) -> list[Decision]:
        job = entry.job
        due = due_slots(entry.trigger, job.last_slot_at, job.created_at, now, job.policy.catchup)
        tz = job.schedule.timezone if job.schedule else "UTC"
        decisions: list[Decision] = []
        last = job.last_slot_at
        if due.dropped:
            if not due.fire:  # a fired slot moves last_slot_at past the dropped ones itself
                latest = entry.trigger.latest_at_or_before(now)
                if latest is not None:
                    self._store.drop_slots(job.id, latest)
                    last = max(last or latest, latest)
            self._log("slots_dropped", job=job.id, count=due.dropped, catchup=job.policy.catchup)
        busy = self._store.active_runs(job.id) if due.fire else []
        for slot in due.fire:
            when = _local_time(slot, tz)
            if job.policy.overlap == "skip" and busy and not decisions:
                run = busy[-1]
                reason = f"slot {when} skipped: run {run.id} still {run.status}"
                decided = self._store.decide_slot(job.id, slot, "skipped", reason=reason)
                decision = Decision(job.id, slot, "skipped", reason=reason, late=now - slot)
            else:
                run_id = new_run_id()
                decided = self._store.decide_slot(
                    job.id,
                    slot,
                    "run",
                    run_id=run_id,
                    name=job.name,
                    target=slot_target(job, slot),
                )
                decision = Decision(job.id, slot, "run", run_id=run_id, late=now - slot)
            if decided:
                decisions.append(decision)
                self._log(
                    "slot_" + ("fired" if decision.outcome == "run" else "skipped"),
                    job=job.id,
                    slot=when,
                    run=decision.run_id,
                    late=f"{decision.late:.3f}",
                    reason=decision.reason,
                )
            else:
                self._log("slot_taken", level="debug", job=job.id, slot=when)
            last = max(last or slot, slot)
        entry.job = replace(job, last_slot_at=last)
        entry.due = entry.trigger.next_after(max(now, last or now))
        return decisions
