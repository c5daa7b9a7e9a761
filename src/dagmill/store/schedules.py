"""Scheduled jobs and the run queue: the store's side of ``dagmill server``.

Every decision that must happen once is a row only one process can write: a slot's
decision is the ``job_slots`` row keyed by (job, slot), written once, with the run made for
it in the same transaction (and ``runs (job_id, scheduled_for)`` is unique besides); a
queued run is taken by a conditional update (PENDING and no owner), so two servers
sharing a PostgreSQL database never start one slot, or one queued run, twice.

Schedulers learn that jobs changed by reading one counter (``jobs_changed``), bumped by
every job mutation in its own transaction; on PostgreSQL the same transaction sends
``NOTIFY dagmill_jobs``, which ``jobs_listener()`` waits for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dagmill.model.runs import JobInfo, RunInfo, RunTarget
from dagmill.model.schedules import JobPolicy, SlotInfo
from dagmill.store.rows import JOB_COLS, RUN_COLS, job_row, run_row

__all__ = ["JOBS_CHANNEL", "JobSchedules", "JobsListener"]

JOBS_CHANNEL = "dagmill_jobs"  # PostgreSQL NOTIFY channel of job changes
_OUTCOMES = ("run", "skipped")


class JobsListener(Protocol):
    """Wakes a scheduler when jobs changed in another process (PostgreSQL LISTEN)."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if a change was notified (the
        notifications already received are consumed with it)."""
        ...

    def close(self) -> None: ...


class _Backend(Protocol):
    _owner: str

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...
    def _notify(self, channel: str, payload: str = "") -> None: ...
    def _bump_jobs(self) -> None: ...
    def _advance(self, job_id: str, slot: float) -> None: ...


class JobSchedules:
    """The store's schedule and queue functions (mixed into ``Store``: they share its
    connection). Each is one short transaction."""

    # -- job changes ------------------------------------------------------------------
    def jobs_changed(self: _Backend) -> int:
        """The jobs' change counter: a scheduler compares it with the value it last saw
        instead of reading every job again (one primary-key read)."""
        row = self._execute("SELECT counter FROM changes WHERE topic = 'jobs'").fetchone()
        return int(row[0]) if row else 0

    def bump_jobs(self: _Backend) -> None:
        """Wake the schedulers and runners for a reason other than a job's change (a run
        queued): bump the counter, and notify on PostgreSQL."""
        with self._tx():
            self._bump_jobs()

    def _bump_jobs(self: _Backend) -> None:
        """Inside the caller's transaction, so the change and its notice commit together
        (a listener woken early would read the old jobs and sleep again)."""
        self._execute("UPDATE changes SET counter = counter + 1 WHERE topic = 'jobs'")
        self._notify(JOBS_CHANNEL)

    def set_job_paused(self: _Backend, job_id: str, paused: bool) -> bool:
        """Pause or resume a job's schedule (its runs by hand are not affected); False if
        there is no such job."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE jobs SET paused = ? WHERE id = ?", (1 if paused else 0, job_id)
            ).rowcount
            if changed:
                self._bump_jobs()
        return changed > 0

    def set_job_policy(self: _Backend, job_id: str, policy: JobPolicy) -> bool:
        """Change how a job's runs meet (overlap, catch-up, slot parameter); False if there
        is no such job."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE jobs SET overlap = ?, catchup = ?, slot_param = ? WHERE id = ?",
                (policy.overlap, policy.catchup, policy.slot_param, job_id),
            ).rowcount
            if changed:
                self._bump_jobs()
        return changed > 0

    # -- the scheduler's input and decisions ---------------------------------------------
    def scheduled_jobs(self: _Backend) -> list[JobInfo]:
        """Every job that has a schedule, paused ones too (the scheduler's input: it reads
        them again only when ``jobs_changed`` moved). Oldest job first."""
        sql = (
            f"SELECT {JOB_COLS} FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id"
            " WHERE j.schedule IS NOT NULL ORDER BY j.created_at, j.id"
        )
        return [job_row(r) for r in self._execute(sql)]

    def decide_slot(
        self: _Backend,
        job_id: str,
        scheduled_for: float,
        outcome: str,
        *,
        run_id: str | None = None,
        name: str | None = None,
        target: RunTarget | None = None,
        reason: str | None = None,
    ) -> bool:
        """Record, once, what became of the slot ``scheduled_for`` of ``job_id``: for
        ``run``, the run ``run_id`` is queued (PENDING, no owner) in the same transaction;
        the job's ``last_slot_at`` moves up to the slot. False, and nothing changed, if the
        slot was decided already (by another scheduler, or before a restart)."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"a slot's outcome is 'run' or 'skipped', got {outcome!r}")
        if outcome == "run" and not run_id:
            raise ValueError(f"slot {scheduled_for} of job {job_id}: a run needs its run_id")
        now = time.time()
        with self._tx():
            # the job's row first: it is locked until commit (PostgreSQL), so a delete_job
            # meanwhile waits, or went first and the job is not found; moving the mark to
            # a slot decided already changes nothing (it is there or later)
            self._advance(job_id, scheduled_for)
            job = self._execute("SELECT name, project FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None:
                raise ValueError(f"no job {job_id!r}: it was deleted, or never recorded")
            won: int = self._execute(
                "INSERT INTO job_slots (job_id, scheduled_for, outcome, run_id, reason,"
                " decided_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id, scheduled_for) DO NOTHING",
                (job_id, scheduled_for, outcome, run_id if outcome == "run" else None, reason, now),
            ).rowcount
            if won != 1:
                return False
            if outcome == "run":
                self._execute(
                    "INSERT INTO runs (id, job_id, project, name, status, created_at, target,"
                    " scheduled_for) VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?)",
                    (
                        run_id,
                        job_id,
                        job[1],
                        name or job[0],
                        now,
                        json.dumps(target.to_json()) if target else None,
                        scheduled_for,
                    ),
                )
        return True

    def drop_slots(self: _Backend, job_id: str, up_to: float) -> None:
        """Note that the slots up to ``up_to`` are over without a run (missed slots that
        catch-up leaves out): only ``last_slot_at`` moves, no row per dropped slot."""
        with self._tx():
            self._advance(job_id, up_to)

    def _advance(self: _Backend, job_id: str, slot: float) -> None:
        # never backwards: a late decision about an older slot keeps the newer mark; the
        # row is written (and locked) either way
        self._execute(
            "UPDATE jobs SET last_slot_at = CASE WHEN last_slot_at IS NULL"
            " OR last_slot_at < ? THEN ? ELSE last_slot_at END WHERE id = ?",
            (slot, slot, job_id),
        )

    def job_slots(
        self: _Backend, job_id: str, limit: int = 20, outcome: str | None = None
    ) -> list[SlotInfo]:
        """The decisions about a job's slots, newest slot first (all, or one outcome's)."""
        sql = (
            "SELECT job_id, scheduled_for, outcome, run_id, reason, decided_at FROM job_slots"
            " WHERE job_id = ?"
        )
        args: list[Any] = [job_id]
        if outcome is not None:
            sql += " AND outcome = ?"
            args.append(outcome)
        sql += " ORDER BY scheduled_for DESC LIMIT ?"
        args.append(limit)
        return [
            SlotInfo(str(r[0]), float(r[1]), str(r[2]), r[3], r[4], float(r[5]))
            for r in self._execute(sql, args)
        ]

    # -- the run queue -------------------------------------------------------------------
    def job_activity(self: _Backend) -> dict[str, tuple[int, int]]:
        """``{job_id: (running, queued)}``: how many RUNNING and PENDING runs each job has,
        for the jobs that have any (one query over the runs in progress, for the jobs'
        statuses: a job whose latest run is queued may still have one running)."""
        sql = (
            "SELECT job_id, SUM(CASE WHEN status = 'RUNNING' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) FROM runs"
            " WHERE status IN ('PENDING', 'RUNNING') AND job_id IS NOT NULL GROUP BY job_id"
        )
        return {str(r[0]): (int(r[1]), int(r[2])) for r in self._execute(sql)}

    def active_runs(self: _Backend, job_id: str) -> list[RunInfo]:
        """The job's PENDING and RUNNING runs, oldest first (what overlap looks at)."""
        sql = (
            f"SELECT {RUN_COLS} FROM runs WHERE job_id = ? AND status IN ('PENDING', 'RUNNING')"
            " ORDER BY created_at, id"
        )
        return [run_row(r) for r in self._execute(sql, (job_id,))]

    def queued_runs(self: _Backend, limit: int = 100) -> list[RunInfo]:
        """PENDING runs nobody has taken, oldest first: by slot for scheduled runs, by
        creation for the others (one order for both: a run's slot, else when it was made)."""
        sql = (
            f"SELECT {RUN_COLS} FROM runs WHERE status = 'PENDING' AND owner IS NULL"
            " ORDER BY COALESCE(scheduled_for, created_at), created_at, id LIMIT ?"
        )
        return [run_row(r) for r in self._execute(sql, (limit,))]

    def claim_queued(self: _Backend, run_id: str, owner: str, server_id: str | None = None) -> bool:
        """Take a queued run (PENDING, no owner) for ``owner``; False if another was first.

        The run becomes RUNNING, owned by ``owner``, heartbeat now, started_at left for
        the engine. Why RUNNING and not PENDING: a RUNNING run with an owner is what the
        crash machinery already watches (``open_runs``, orphans, ``take_over``), so a
        server that dies between claiming and starting leaves a run that is resumed, not
        one that waits forever; and ``claim_run`` (``run_job(run_id=...)`` of a run that
        ``start_job`` queued) takes only PENDING runs, so a background process and a
        server never both run one queued run. The server starts a claimed run as
        ``resume_run`` does (``take_over(run_id, owner)``, then the engine with
        ``run_id``: ``create_run`` takes the row over), not through ``claim_run``.
        ``owner`` should be ``host:pid`` of the process that runs it (``Store.owner``) so
        that a dead one is seen at once on its host; any other name expires by heartbeat.
        ``server_id``, the claiming server's, is written with it: from the claim on, the
        run dies with that server (another resumes it once the server's heartbeat expired).
        """
        with self._tx():
            changed: int = self._execute(
                "UPDATE runs SET status = 'RUNNING', owner = ?, heartbeat_at = ?, server_id = ?"
                " WHERE id = ? AND status = 'PENDING' AND owner IS NULL",
                (owner, time.time(), server_id, run_id),
            ).rowcount
        return changed == 1

    def take_over_orphan(
        self: _Backend, run_id: str, previous_owner: str | None, owner: str, server_id: str
    ) -> bool:
        """Take a job run whose engine or server died (or that was handed back) for the
        server ``server_id``'s ``owner``; False if another process was first.

        Conditional on the owner the caller saw (``previous_owner``, None: handed back),
        so of several servers that saw the same orphan exactly one takes it; the owner and
        the server change in that one statement, so no other server can see the run as
        still its dead server's once it has a new owner."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE runs SET owner = ?, server_id = ?, heartbeat_at = ?, status = 'RUNNING',"
                " ended_at = NULL WHERE id = ? AND COALESCE(owner, '') = ?"
                " AND status IN ('RUNNING', 'PENDING')",
                (owner, server_id, time.time(), run_id, previous_owner or ""),
            ).rowcount
        return changed == 1

    def hand_back(self: _Backend, run_id: str, owner: str) -> bool:
        """Give a RUNNING run back (a draining server that will not finish it): its owner
        is cleared only if it is still ``owner``, so another server, or the next start,
        resumes it (``take_over(run_id, None)``). False if it is not ``owner``'s any more."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE runs SET owner = NULL WHERE id = ? AND owner = ? AND status = 'RUNNING'",
                (run_id, owner),
            ).rowcount
        return changed == 1

    def jobs_listener(self) -> JobsListener | None:
        """A listener woken by job changes made anywhere (PostgreSQL: LISTEN on its own
        connection); None where the database cannot notify (SQLite: one server per file,
        which wakes itself in-process)."""
        return None

    def ledger_listener(self) -> JobsListener | None:
        """A listener woken when resources are released anywhere (PostgreSQL); None on
        SQLite, where the releaser writes to each waiter's wake socket instead."""
        return None
