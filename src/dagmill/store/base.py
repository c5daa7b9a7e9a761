"""The run record's repository, shared by every database backend.

Only ``store/`` knows SQL. Above it, functions with domain names: ``create_run``,
``task_status``, ``list_runs(status=, limit=)``, ``get_run_tasks`` ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from dagmill.errors import StoreError, StoreUnavailable
from dagmill.io.jsonenc import encoder
from dagmill.model.resources import Resources
from dagmill.model.runs import JobInfo, RunInfo, RunTarget, RunTaskInfo, TaskAttempt
from dagmill.model.schedules import JobPolicy, ScheduleSpec
from dagmill.store.bundles import BundleStore
from dagmill.store.claims import TaskClaims
from dagmill.store.ledger import ProjectLedger
from dagmill.store.migrate import LATEST, upgrade
from dagmill.store.rows import JOB_COLS, RUN_COLS, job_row, run_row
from dagmill.store.schedules import JobSchedules
from dagmill.store.servers import ServerLedger
from dagmill.store.tokens import TokenStore

_dumps = encoder(", ", ": ")  # json.dumps for the rows of a run's tasks, made once

__all__ = ["NewRunTask", "Store"]


@dataclass(frozen=True, slots=True)
class NewRunTask:
    """A task as a run starts: part of the graph it keeps."""

    task_id: str
    family: str
    params: dict[str, str]
    upstream: Sequence[str]
    plan_state: str
    plan_reason: str
    resources: dict[str, Any]
    status: str
    fingerprint: str = ""


T = TypeVar("T")
_NO_POLICY = JobPolicy()  # the defaults: skip overlapping slots, catch up the latest
_log = logging.getLogger("dagmill.store")
_RETRY_ENV = "DAGMILL_STORE_RETRY_SECONDS"
_RETRY_DEFAULT = 60.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0


def retry_seconds() -> float:
    """How long the run record may be away (lost, locked, full) before dagmill gives up:
    ``DAGMILL_STORE_RETRY_SECONDS``, 60 by default."""
    text = os.environ.get(_RETRY_ENV, "").strip()
    if not text:
        return _RETRY_DEFAULT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise StoreError(f"{_RETRY_ENV}={text!r} is not a number of seconds (e.g. 60)")
    return value


@dataclass(slots=True)
class _Outage:
    """The run record is away: since when, why, and when to try again."""

    since: float
    reason: str
    error: str
    delay: float = _BACKOFF_FIRST
    next_try: float = 0.0
    gave_up: bool = False


class Store(TaskClaims, JobSchedules, ServerLedger, ProjectLedger, TokenStore, BundleStore, ABC):
    """The repository: every function the rest of dagmill may call, in portable SQL.

    SQL is written with ``?`` placeholders; a backend translates them if it must, and
    supplies the connection, write transactions and the schema check. Task events are
    buffered and written in one transaction per ``flush()``.
    """

    url: str
    _for_update = ""  # how a SELECT locks the rows it reads (SQLite: its writers queue)

    def __init__(self) -> None:
        self._owner = f"{os.uname().nodename}:{os.getpid()}"
        self._task_status: dict[tuple[str, str], tuple[str, int, str | None]] = {}
        self._attempts: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._heartbeats: set[str] = set()

    # -- what a backend provides ---------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; return a cursor (fetchone, fetchall, iteration, rowcount)."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Any]:
        """A write transaction (serialised against other writers)."""

    @abstractmethod
    def _has_table(self, name: str) -> bool: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _ephemeral(self) -> None:
        """The current transaction writes soft state (leases, which expire by themselves):
        it need not wait for the disk (PostgreSQL: ``synchronous_commit`` off for it)."""

    def _notify(self, channel: str, payload: str = "") -> None:
        """Wake the listeners of ``channel`` when the current transaction commits
        (PostgreSQL's NOTIFY; a backend without it does nothing: SQLite serves one server,
        which wakes itself)."""

    @property
    def owner(self) -> str:
        """This process as the owner of runs and claims (``host:pid``)."""
        return self._owner

    # -- schema ----------------------------------------------------------------------
    def _migrate(self) -> None:
        """Create or upgrade the schema (called by the backend under its migration lock)."""
        if not self._has_table("schema_version"):
            self._execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            self._execute("INSERT INTO schema_version VALUES (0)")
        current = int(self._execute("SELECT version FROM schema_version").fetchone()[0])
        upgrade(self._execute, current, self.url)
        if current != LATEST:
            self._execute("UPDATE schema_version SET version = ?", (LATEST,))

    @property
    def schema_version(self) -> int:
        if not self._has_table("schema_version"):
            return 0
        return int(self._execute("SELECT version FROM schema_version").fetchone()[0])

    # -- writing -----------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        name: str,
        tasks: Iterable[NewRunTask],
        options: dict[str, Any] | None = None,
        job_id: str | None = None,
        target: RunTarget | None = None,
        project: str = "default",
        server_id: str | None = None,
    ) -> None:
        """Record a RUNNING run of ``project`` and the graph it runs, in one transaction
        (a run queued with ``queue_run`` is taken over; ``server_id``: the server whose
        runner runs it)."""
        now = time.time()
        rows = [
            (
                run_id,
                t.task_id,
                pos,
                t.family,
                _dumps(t.params),
                _dumps(list(t.upstream)),
                t.plan_state,
                t.plan_reason,
                _dumps(t.resources) if t.resources else "{}",
                t.status,
                t.fingerprint or None,
            )
            for pos, t in enumerate(tasks)
        ]

        def write() -> None:
            with self._tx():
                self._execute(
                    "INSERT INTO runs (id, job_id, name, status, options, owner, heartbeat_at,"
                    " created_at, started_at, target, project, server_id)"
                    " VALUES (?, ?, ?, 'RUNNING', ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET status = 'RUNNING', owner = excluded.owner,"
                    " project = excluded.project, server_id = excluded.server_id,"
                    " heartbeat_at = excluded.heartbeat_at,"
                    " started_at = COALESCE(runs.started_at, excluded.started_at), ended_at = NULL,"
                    " options = excluded.options, name = excluded.name,"
                    " target = COALESCE(excluded.target, runs.target),"
                    " job_id = COALESCE(excluded.job_id, runs.job_id)",
                    (
                        run_id,
                        job_id,
                        name,
                        json.dumps(options or {}),
                        self._owner,
                        now,
                        now,
                        now,
                        json.dumps(target.to_json()) if target else None,
                        project,
                        server_id,
                    ),
                )
                self._executemany(
                    "INSERT INTO run_tasks (run_id, task_id, pos, family, params, upstream,"
                    " plan_state, plan_reason, resources, status, fingerprint)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    # a resumed run keeps each task's attempts, and what already succeeded
                    " ON CONFLICT (run_id, task_id) DO UPDATE SET"
                    " plan_state = excluded.plan_state, plan_reason = excluded.plan_reason,"
                    " status = CASE WHEN run_tasks.status = 'SUCCESS'"
                    " AND excluded.status = 'SKIPPED' THEN 'SUCCESS' ELSE excluded.status END,"
                    " fingerprint = COALESCE(excluded.fingerprint, run_tasks.fingerprint)",
                    rows,
                )

        # a locked or lost database is waited for (retry_seconds()), saying so
        self._patiently(write)

    def task_status(
        self, run_id: str, task_id: str, status: str, attempts: int, fingerprint: str | None = None
    ) -> None:
        """Buffer a task's status in a run (written at the next flush)."""
        prev = self._task_status.get((run_id, task_id))
        if fingerprint is None and prev is not None:
            fingerprint = prev[2]
        self._task_status[(run_id, task_id)] = (status, attempts, fingerprint)
        self._heartbeats.add(run_id)

    def task_attempt(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        status: str,
        *,
        started_at: float | None = None,
        ended_at: float | None = None,
        waiting_for: str | None = None,
        error: str | None = None,
        error_location: str | None = None,
        traceback: str | None = None,
        log: tuple[str, int, int | None] | None = None,
        waited: float | None = None,
    ) -> None:
        """Buffer one attempt's state (a TaskRun); the latest state per attempt wins.

        ``log`` is (file, start, end) of the attempt's lines; end None while it runs.
        ``waited``: seconds the attempt waited for resources before it started."""
        key = (run_id, task_id, attempt)
        prev = self._attempts.get(key)
        if prev is not None:
            if started_at is None:
                started_at = prev[5]
            if log is None and prev[10] is not None:
                log = (prev[10], prev[11], prev[12])
            if waited is None:
                waited = prev[13]
        self._attempts[key] = (
            run_id,
            task_id,
            attempt,
            status,
            waiting_for,
            started_at,
            ended_at,
            error,
            error_location,
            traceback,
            *(log or (None, None, None)),
            waited,
        )
        self._heartbeats.add(run_id)

    def heartbeat(self, run_id: str) -> None:
        """Note that ``run_id``'s owner is alive (written at the next flush)."""
        self._heartbeats.add(run_id)

    @property
    def beating(self) -> bool:
        return bool(self._heartbeats)

    @property
    def buffered(self) -> int:
        return len(self._task_status) + len(self._attempts)

    def flush(self) -> None:
        """Write everything buffered in one transaction.

        While the database is away (connection lost, locked, disk full) the events stay
        buffered and the next flushes retry with backoff; past ``retry_seconds()`` this
        raises StoreUnavailable (the buffer is still kept)."""
        if not (self._task_status or self._attempts or self._heartbeats):
            return
        outage = self._outage
        if outage is not None and time.monotonic() < outage.next_try:
            if outage.gave_up:
                raise self._unavailable_error(outage)
            return  # backing off: the events wait in the buffer
        statuses, self._task_status = self._task_status, {}
        attempts, self._attempts = self._attempts, {}
        beats, self._heartbeats = self._heartbeats, set()
        try:
            if outage is not None:
                self._recover()
            self._write_events(statuses, attempts, beats)
        except Exception as e:
            self._put_back(statuses, attempts, beats)
            self._flush_failed = True
            self._note_failure(e)
            return
        self._flush_failed = False
        if self._outage is not None:
            self._back()

    def _write_events(
        self,
        statuses: dict[tuple[str, str], tuple[str, int, str | None]],
        attempts: dict[tuple[str, str, int], tuple[Any, ...]],
        beats: set[str],
    ) -> None:
        now = time.time()
        with self._tx():
            if attempts:
                self._executemany(
                    "INSERT INTO task_runs (run_id, task_id, attempt, status, waiting_for,"
                    " started_at, ended_at, error, error_location, traceback, log_path,"
                    " log_start, log_end, waited)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET"
                    " status = excluded.status, waiting_for = excluded.waiting_for,"
                    " started_at = COALESCE(excluded.started_at, task_runs.started_at),"
                    " ended_at = excluded.ended_at, error = excluded.error,"
                    " error_location = excluded.error_location, traceback = excluded.traceback,"
                    " log_path = COALESCE(excluded.log_path, task_runs.log_path),"
                    " log_start = COALESCE(excluded.log_start, task_runs.log_start),"
                    " log_end = COALESCE(excluded.log_end, task_runs.log_end),"
                    " waited = COALESCE(excluded.waited, task_runs.waited)",
                    list(attempts.values()),
                )
            if statuses:
                self._executemany(
                    "UPDATE run_tasks SET status = ?, attempts = ?,"
                    " fingerprint = COALESCE(?, fingerprint) WHERE run_id = ? AND task_id = ?",
                    [(s, a, f, r, t) for (r, t), (s, a, f) in statuses.items()],
                )
            self._executemany(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ?", [(now, r) for r in beats]
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Flush, then record the run's final status and its tasks' counts (from the
        record itself, so a resumed run counts what succeeded before it was resumed).

        Waits (up to ``retry_seconds()``) for a database that is away; then raises
        StoreUnavailable, the run left RUNNING and resumable."""
        self.flush_waiting(run_id)

        def write() -> None:
            now = time.time()
            with self._tx():
                counts = {
                    str(r[0]): int(r[1])
                    for r in self._execute(
                        "SELECT status, COUNT(*) FROM run_tasks WHERE run_id = ? GROUP BY status",
                        (run_id,),
                    )
                }
                self._execute(
                    "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ?, counts = ?,"
                    " error = ? WHERE id = ?",
                    (status, now, now, json.dumps(counts), error, run_id),
                )

        self._patiently(write, run_id)

    # -- when the database is away ---------------------------------------------------------
    _outage: _Outage | None = None
    _flush_failed = False

    def _unavailable_reason(self, error: BaseException) -> str | None:
        """What a driver error means if the database is only away for now (``"connection
        lost"``, ``"locked by another process"``, ``"disk full"``); None if retrying
        cannot help. Backends override."""
        return None

    def _recover(self) -> None:
        """Get ready to try again after a failure (a backend reconnects here)."""

    @property
    def unavailable(self) -> bool:
        """Whether the last write failed because the database is away."""
        return self._outage is not None

    def flush_waiting(self, run_id: str | None = None) -> None:
        """Flush, waiting for a database that is away (up to ``retry_seconds()`` from the
        start of the outage); then StoreUnavailable naming ``run_id``."""
        try:
            if self._outage is not None and self._outage.gave_up:
                self._outage.next_try = 0.0  # one more try now: it may be back
            self.flush()
            outage = self._outage
            while outage is not None and (self._task_status or self._attempts or self._heartbeats):
                time.sleep(max(0.0, outage.next_try - time.monotonic()))
                self.flush()
                outage = self._outage
        except StoreUnavailable as e:
            raise (e.for_run(run_id) if run_id else e) from None

    def _patiently(self, write: Callable[[], T], run_id: str | None = None) -> T:
        """``write()``, retried with backoff while the database is away (costs one try
        block when it is not); past ``retry_seconds()``: StoreUnavailable."""
        try:
            result = write()
        except Exception as e:
            self._note_failure(e, run_id)  # raises unless worth another try
        else:
            if self._outage is not None:
                self._back()
            return result
        while True:
            outage = self._outage
            assert outage is not None
            time.sleep(max(0.0, outage.next_try - time.monotonic()))
            try:
                self._recover()
                result = write()
            except Exception as e:
                self._note_failure(e, run_id)
                continue
            self._back()
            return result

    def _note_failure(self, error: Exception, run_id: str | None = None) -> None:
        """Remember a failed write and when to try again; re-raise ``error`` if retrying
        cannot help, StoreUnavailable once the database was away for too long."""
        if isinstance(error, StoreUnavailable):  # a backend that waited itself gave up
            raise error.for_run(run_id) if run_id else error
        reason = self._unavailable_reason(error)
        if reason is None:
            raise error
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(now, reason, _one_line(error))
            _log.warning(
                "waiting for the run record (%s): %s; retrying for up to %gs (%s)",
                reason,
                self.display_url,
                retry_seconds(),
                outage.error,
            )
        else:
            outage.reason, outage.error = reason, _one_line(error)
            outage.delay = min(outage.delay * 2, _BACKOFF_MAX)
        outage.next_try = now + outage.delay
        if now - outage.since >= retry_seconds():
            outage.gave_up = True
            raise self._unavailable_error(outage, run_id) from error

    def _back(self) -> None:
        outage, self._outage = self._outage, None
        if outage is not None:
            _log.warning(
                "the run record is back after %.1fs (%s)",
                time.monotonic() - outage.since,
                outage.reason,
            )

    def _unavailable_error(self, outage: _Outage, run_id: str | None = None) -> StoreUnavailable:
        e = StoreUnavailable(
            f"the run record at {self.display_url} is unavailable: {outage.reason} for"
            f" {time.monotonic() - outage.since:.1f}s ({outage.error}); dagmill waited"
            f" {retry_seconds():g}s ({_RETRY_ENV}): {_hint(outage.reason)}",
            database=self.display_url,
            reason=outage.reason,
        )
        return e.for_run(run_id) if run_id else e

    @property
    def display_url(self) -> str:
        """The database, for messages (no password)."""
        return self.url

    def _put_back(
        self,
        statuses: dict[tuple[str, str], tuple[str, int, str | None]],
        attempts: dict[tuple[str, str, int], tuple[Any, ...]],
        beats: set[str],
    ) -> None:
        """Return events a failed flush took; events buffered since then are newer and
        win, keeping what they left out (a fingerprint, a start time, a log position)."""
        for key, (status, att, fp) in self._task_status.items():
            old = statuses.get(key)
            statuses[key] = (status, att, fp if fp is not None or old is None else old[2])
        self._task_status = statuses
        for akey, row in self._attempts.items():
            was = attempts.get(akey)
            if was is not None:
                started = row[5] if row[5] is not None else was[5]
                log = row[10:13] if row[10] is not None else was[10:13]
                row = (*row[:5], started, *row[6:10], *log)
            attempts[akey] = row
        self._attempts = attempts
        self._heartbeats |= beats

    def reclaim_space(self) -> int:
        """After many runs were deleted, give their space back (bytes given back; a
        backend that reclaims by itself, like PostgreSQL's autovacuum, returns 0)."""
        return 0

    def delete_run(self, run_id: str) -> bool:
        with self._tx():
            deleted = self._delete_run_rows(run_id)
        return deleted

    def _delete_run_rows(self, run_id: str) -> bool:
        self._execute("DELETE FROM task_runs WHERE run_id = ?", (run_id,))
        self._execute("DELETE FROM run_tasks WHERE run_id = ?", (run_id,))
        deleted: int = self._execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        return deleted > 0

    # -- reading -----------------------------------------------------------------------
    def list_runs(
        self,
        status: str | None = None,
        limit: int = 20,
        since: float | None = None,
        job_id: str | None = None,
        project: str | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunInfo]:
        """Most recent runs first, by (created_at, id) (``project``: only that project's;
        ``before``: only runs after this (created_at, id) in that order, a page's keyset)."""
        where: list[str] = []
        args: list[Any] = []
        if job_id:
            where.append("job_id = ?")
            args.append(job_id)
        if project:
            where.append("project = ?")
            args.append(project)
        if status:
            where.append("status = ?")
            args.append(status.upper())
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if before is not None:
            # the first term bounds the index range (runs_by_project* end in created_at,
            # id); the second drops the ties already given
            where.append("created_at <= ? AND (created_at < ? OR id < ?)")
            args += [before[0], before[0], before[1]]
        sql = f"SELECT {RUN_COLS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [run_row(r) for r in self._execute(sql, args)]

    def get_run(self, run_id: str, project: str | None = None) -> RunInfo | None:
        """A run by id, or by a unique prefix of its id (``project``: only among that
        project's runs, so another project's never resolves nor makes a prefix ambiguous)."""
        scope, args = ("", ()) if project is None else (" AND project = ?", (project,))
        row = self._execute(
            f"SELECT {RUN_COLS} FROM runs WHERE id = ?{scope}", (run_id, *args)
        ).fetchone()
        if row is None:
            prefix = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._execute(
                f"SELECT {RUN_COLS} FROM runs WHERE id LIKE ? ESCAPE '\\'{scope} LIMIT 2",
                (prefix + "%", *args),
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return run_row(row) if row else None

    def get_run_tasks(self, run_id: str) -> list[RunTaskInfo]:
        history: dict[str, list[TaskAttempt]] = {}
        for r in self._execute(
            "SELECT task_id, attempt, status, started_at, ended_at, waiting_for, error,"
            " error_location, traceback, log_path, log_start, log_end, waited FROM task_runs"
            " WHERE run_id = ?"
            " ORDER BY task_id, attempt",
            (run_id,),
        ):
            history.setdefault(r[0], []).append(TaskAttempt(*r[1:]))
        return [
            RunTaskInfo(
                task_id=r[0],
                family=r[1],
                params=json.loads(r[2]),
                upstream=tuple(json.loads(r[3])),
                plan_state=r[4],
                plan_reason=r[5],
                resources=json.loads(r[6]),
                status=r[7],
                attempts=r[8],
                fingerprint=r[9],
                history=tuple(history.get(r[0], ())),
            )
            for r in self._execute(
                "SELECT task_id, family, params, upstream, plan_state, plan_reason, resources,"
                " status, attempts, fingerprint FROM run_tasks WHERE run_id = ?"
                " ORDER BY pos, task_id",
                (run_id,),
            )
        ]

    def queue_run(
        self,
        run_id: str,
        name: str,
        job_id: str | None = None,
        target: RunTarget | None = None,
        scheduled_for: float | None = None,
        project: str = "default",
        options: Mapping[str, Any] | None = None,
        notify: bool = False,
    ) -> None:
        """Record a PENDING run of ``project`` that a process is about to start
        (``create_run`` takes it), made for the slot ``scheduled_for`` if given (one run
        per job and slot); ``options``: how to run it (``forced_all_upstream``: a rerun
        of everything), until its engine records its own. ``notify``: wake the servers
        in the same transaction (one commit, not two: on PostgreSQL each waits for the
        disk)."""
        with self._tx():
            if notify:
                self._bump_jobs()
            self._execute(
                "INSERT INTO runs (id, job_id, project, name, status, created_at, target,"
                " scheduled_for, options) VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?, ?)",
                (
                    run_id,
                    job_id,
                    project,
                    name,
                    time.time(),
                    json.dumps(target.to_json()) if target else None,
                    scheduled_for,
                    json.dumps(dict(options or {})),
                ),
            )

    def open_runs(self) -> list[RunInfo]:
        """Runs recorded as RUNNING: live, or left by an engine that died."""
        sql = f"SELECT {RUN_COLS} FROM runs WHERE status = 'RUNNING' ORDER BY created_at"
        return [run_row(r) for r in self._execute(sql)]

    def take_over(self, run_id: str, previous_owner: str | None, owner: str | None = None) -> bool:
        """Make this process (or ``owner``: a server claims for the runner it starts) the
        owner of a run whose engine died; False if another process was first."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE runs SET owner = ?, heartbeat_at = ?, status = 'RUNNING', ended_at = NULL"
                " WHERE id = ? AND COALESCE(owner, '') = ? AND status IN ('RUNNING', 'PENDING')",
                (owner or self._owner, time.time(), run_id, previous_owner or ""),
            ).rowcount
        return changed == 1

    def abandon_attempts(self, run_id: str, why: str) -> dict[str, int]:
        """Close the attempts a dead engine left open (FAILED, with ``why``); returns every
        task's attempt count so far, so the next attempts are numbered after them. An
        attempt that never started (it waited for resources or another run) was none:
        it goes."""
        now = time.time()
        with self._tx():
            self._execute(
                "DELETE FROM task_runs WHERE run_id = ? AND status IN ('PENDING', 'WAITING')"
                " AND started_at IS NULL",
                (run_id,),
            )
            self._execute(
                "UPDATE task_runs SET status = 'FAILED', ended_at = ?, error = ?"
                " WHERE run_id = ? AND status IN ('RUNNING', 'PENDING')",
                (now, why, run_id),
            )
            self._execute(
                "UPDATE run_tasks SET status = 'WAITING' WHERE run_id = ?"
                " AND status IN ('RUNNING', 'PENDING')",
                (run_id,),
            )
            rows = self._execute(
                "SELECT task_id, MAX(attempt) FROM task_runs WHERE run_id = ? GROUP BY task_id",
                (run_id,),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def run_owner(self, run_id: str) -> str | None:
        """Who owns the run now (host:pid), None if nobody (handed back) or no such run."""
        row = self._execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def forget_run_events(self, run_id: str) -> None:
        """Drop what is buffered for ``run_id``: it is no longer this process's to write."""
        self._task_status = {k: v for k, v in self._task_status.items() if k[0] != run_id}
        self._attempts = {k: v for k, v in self._attempts.items() if k[0] != run_id}
        self._heartbeats.discard(run_id)

    def claim_run(self, run_id: str) -> bool:
        """Take a queued (PENDING) run for this process; False if another took it first."""
        with self._tx():
            changed: int = self._execute(
                "UPDATE runs SET status = 'RUNNING', owner = ?, heartbeat_at = ?"
                " WHERE id = ? AND status = 'PENDING'",
                (self._owner, time.time(), run_id),
            ).rowcount
        return changed == 1

    def set_run_status(
        self, run_id: str, status: str, error: str | None = None, only_if: Sequence[str] = ()
    ) -> bool:
        """Set a run's status (if it is one of ``only_if``); its open tasks follow a cancel."""
        now = time.time()
        with self._tx():
            sql = (
                "UPDATE runs SET status = ?, ended_at = ?, error = COALESCE(?, error) WHERE id = ?"
            )
            args: list[Any] = [status, now, error, run_id]
            if only_if:
                sql += f" AND status IN ({', '.join('?' for _ in only_if)})"
                args += list(only_if)
            changed: int = self._execute(sql, args).rowcount
            if changed and status == "CANCELLED":
                self._execute(
                    "UPDATE run_tasks SET status = 'CANCELLED' WHERE run_id = ?"
                    " AND status IN ('WAITING', 'PENDING', 'RUNNING')",
                    (run_id,),
                )
                self._execute(
                    "UPDATE task_runs SET status = 'CANCELLED', ended_at = ? WHERE run_id = ?"
                    " AND status IN ('PENDING', 'RUNNING')",
                    (now, run_id),
                )
        return changed > 0

    # -- jobs ------------------------------------------------------------------------------
    def create_job(
        self,
        job_id: str,
        name: str,
        kind: str,
        ref: str,
        version: str,
        params: dict[str, str],
        data_dir: str | None,
        definition: str | None = None,
        ttl: dict[str, Any] | None = None,
        schedule: ScheduleSpec | None = None,
        policy: JobPolicy = _NO_POLICY,
        project: str = "default",
        requests: Mapping[str, Resources] | None = None,
        bundle: str | None = None,
    ) -> JobInfo:
        """Record a job and the pipeline version it pins (shared by jobs of one version
        and ref), with what its tasks request (``requests``, by task label) and the bundle
        its ref is relative to; the schedulers sharing the database learn of it
        (``jobs_changed``)."""
        now = time.time()
        with self._tx():
            # by ref too: a job uploaded (ref relative to its bundle) and one built here
            # (an absolute path) of the same version are not the same files to load
            row = self._execute(
                "SELECT id FROM pipelines WHERE project = ? AND name = ? AND version = ?"
                " AND ref = ?",
                (project, name, version, ref),
            ).fetchone()
            pipeline_id = row[0] if row else f"p-{job_id}"
            if row is None:
                self._execute(
                    "INSERT INTO pipelines (id, project, name, kind, ref, version, definition,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (pipeline_id, project, name, kind, ref, version, definition, now),
                )
            self._execute(
                "INSERT INTO jobs (id, project, name, pipeline_id, params, data_dir, schedule,"
                " ttl, created_at, overlap, catchup, slot_param, requests, bundle)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    project,
                    name,
                    pipeline_id,
                    json.dumps(params),
                    data_dir,
                    json.dumps(schedule.to_json()) if schedule else None,
                    json.dumps(ttl or {}),
                    now,
                    policy.overlap,
                    policy.catchup,
                    policy.slot_param,
                    json.dumps({k: r.to_record() for k, r in (requests or {}).items()}),
                    bundle,
                ),
            )
            self._bump_jobs()
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> JobInfo | None:
        """A job by id or unique id prefix."""
        base = f"SELECT {JOB_COLS} FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id"
        row = self._execute(base + " WHERE j.id = ?", (job_id,)).fetchone()
        if row is None:
            rows = self._execute(base + " WHERE j.id LIKE ? LIMIT 2", (job_id + "%",)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return job_row(row) if row else None

    def list_jobs(self, limit: int = 100, project: str | None = None) -> list[JobInfo]:
        """Newest first (``project``: only that project's)."""
        sql = f"SELECT {JOB_COLS} FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id"
        args: list[Any] = []
        if project:
            sql += " WHERE j.project = ?"
            args.append(project)
        sql += " ORDER BY j.created_at DESC LIMIT ?"
        return [job_row(r) for r in self._execute(sql, (*args, limit))]

    def delete_job(self, job_id: str) -> list[str]:
        """Delete a job, its runs and its slots' decisions; returns the ids of the runs
        deleted. The schedulers learn of it (``jobs_changed``)."""
        with self._tx():
            # the job's row first, as decide_slot does: one order of locks, and a slot
            # decided meanwhile waits for this delete, then finds no job
            if self._execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount:
                self._bump_jobs()
            runs = [r[0] for r in self._execute("SELECT id FROM runs WHERE job_id = ?", (job_id,))]
            for run_id in runs:
                self._delete_run_rows(run_id)
            self._execute("DELETE FROM job_slots WHERE job_id = ?", (job_id,))
        return runs

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # set by the pool that lent this store (``store.reuse_connections``): close() offers
    # the store back to it, which keeps it (True) or lets it be closed (False)
    _give_back: Callable[[Store], bool] | None = None

    def close(self) -> None:
        try:
            if not self._flush_failed:
                self.flush_waiting()  # a record that is away: wait, as finish_run does
            else:
                # the caller was told when flushing failed (the run stopped saying so):
                # one last try, and no second error hiding the first
                with contextlib.suppress(Exception):
                    self.flush()
        finally:
            if self._give_back is None or not self._give_back(self):
                self._close()

    def reusable(self) -> bool:
        """Whether another caller may use this store as it is now: nothing buffered, no
        outage, and a connection that is up with no transaction open."""
        return (
            self._outage is None
            and not self._flush_failed
            and not (self._task_status or self._attempts or self._heartbeats)
            and self._idle_connection()
        )

    def _idle_connection(self) -> bool:
        """The connection is up, outside any transaction (backends override)."""
        return True

    def alive(self) -> bool:
        """Whether the connection still answers (one round trip; backends override)."""
        return True


def _hint(reason: str) -> str:
    if "disk" in reason:
        return "free some space on the disk that holds it"
    if "locked" in reason:
        return "another process holds a long write transaction on it: end that process"
    return "check that the database server is up and accepts connections"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
