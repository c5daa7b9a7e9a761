"""The run record's repository, shared by every database backend.

Only ``store/`` knows SQL. Above it, functions with domain names: ``create_run``,
``task_status``, ``list_runs(status=, limit=)``, ``get_run_tasks`` ...
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from dagmill.model.runs import RunInfo, RunTaskInfo, TaskAttempt
from dagmill.store.migrate import LATEST, upgrade

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


_RUN_COLS = (
    "id, name, status, created_at, started_at, ended_at, job_id, project, owner, error, "
    "counts, options"
)


class Store(ABC):
    """The repository: every function the rest of dagmill may call, in portable SQL.

    SQL is written with ``?`` placeholders; a backend translates them if it must, and
    supplies the connection, write transactions and the schema check. Task events are
    buffered and written in one transaction per ``flush()``.
    """

    url: str

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
    ) -> None:
        """Record a new RUNNING run and the graph it runs, in one transaction."""
        now = time.time()
        rows = [
            (
                run_id,
                t.task_id,
                pos,
                t.family,
                json.dumps(t.params),
                json.dumps(list(t.upstream)),
                t.plan_state,
                t.plan_reason,
                json.dumps(t.resources) if t.resources else "{}",
                t.status,
                t.fingerprint or None,
            )
            for pos, t in enumerate(tasks)
        ]
        with self._tx():
            self._execute(
                "INSERT INTO runs (id, job_id, name, status, options, owner, heartbeat_at,"
                " created_at, started_at) VALUES (?, ?, ?, 'RUNNING', ?, ?, ?, ?, ?)",
                (run_id, job_id, name, json.dumps(options or {}), self._owner, now, now, now),
            )
            self._executemany(
                "INSERT INTO run_tasks (run_id, task_id, pos, family, params, upstream,"
                " plan_state, plan_reason, resources, status, fingerprint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

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
    ) -> None:
        """Buffer one attempt's state (a TaskRun); the latest state per attempt wins."""
        key = (run_id, task_id, attempt)
        prev = self._attempts.get(key)
        if prev is not None and started_at is None:
            started_at = prev[5]
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
        )
        self._heartbeats.add(run_id)

    @property
    def buffered(self) -> int:
        return len(self._task_status) + len(self._attempts)

    def flush(self) -> None:
        """Write everything buffered in one transaction."""
        if not (self._task_status or self._attempts or self._heartbeats):
            return
        statuses, self._task_status = self._task_status, {}
        attempts, self._attempts = self._attempts, {}
        beats, self._heartbeats = self._heartbeats, set()
        now = time.time()
        with self._tx():
            if attempts:
                self._executemany(
                    "INSERT INTO task_runs (run_id, task_id, attempt, status, waiting_for,"
                    " started_at, ended_at, error, error_location, traceback)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET"
                    " status = excluded.status, waiting_for = excluded.waiting_for,"
                    " started_at = COALESCE(excluded.started_at, task_runs.started_at),"
                    " ended_at = excluded.ended_at, error = excluded.error,"
                    " error_location = excluded.error_location, traceback = excluded.traceback",
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

    def finish_run(
        self, run_id: str, status: str, counts: dict[str, int], error: str | None = None
    ) -> None:
        """Flush, then record the run's final status."""
        self.flush()
        now = time.time()
        with self._tx():
            self._execute(
                "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ?, counts = ?,"
                " error = ? WHERE id = ?",
                (status, now, now, json.dumps(counts), error, run_id),
            )

    def delete_run(self, run_id: str) -> bool:
        with self._tx():
            self._execute("DELETE FROM task_runs WHERE run_id = ?", (run_id,))
            self._execute("DELETE FROM run_tasks WHERE run_id = ?", (run_id,))
            deleted: int = self._execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        return deleted > 0

    # -- reading -----------------------------------------------------------------------
    def list_runs(
        self, status: str | None = None, limit: int = 20, since: float | None = None
    ) -> list[RunInfo]:
        """Most recent runs first."""
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status = ?")
            args.append(status.upper())
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        sql = f"SELECT {_RUN_COLS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return [_run(r) for r in self._execute(sql, args)]

    def get_run(self, run_id: str) -> RunInfo | None:
        """A run by id, or by a unique prefix of its id."""
        row = self._execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            rows = self._execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return _run(row) if row else None

    def get_run_tasks(self, run_id: str) -> list[RunTaskInfo]:
        history: dict[str, list[TaskAttempt]] = {}
        for r in self._execute(
            "SELECT task_id, attempt, status, started_at, ended_at, waiting_for, error,"
            " error_location, traceback FROM task_runs WHERE run_id = ?"
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

    def close(self) -> None:
        self.flush()
        self._close()


def _run(r: Sequence[Any]) -> RunInfo:
    return RunInfo(
        id=r[0],
        name=r[1],
        status=r[2],
        created_at=r[3],
        started_at=r[4],
        ended_at=r[5],
        job_id=r[6],
        project=r[7],
        owner=r[8],
        error=r[9],
        counts=json.loads(r[10] or "{}"),
        options=json.loads(r[11] or "{}"),
    )
