"""Projects and their quota ledger: what the running tasks of a project hold, and wait for.

Admission of a task that declares resources is one short write transaction
(``admit``): lock the project's row (``FOR UPDATE`` on PostgreSQL; SQLite serialises
writers), sum its live leases, and either add the task's lease or note that it waits,
and why. So the sum of admitted requests never exceeds the quota, whichever process or
server admits. A lease is deleted as its task ends (``release_lease``), which wakes the
project's waiters: PostgreSQL's ``NOTIFY dagmill_ledger`` (any host), and a datagram to
each waiter's wake socket (this host; how SQLite wakes at all).

A lease stops counting once its holder is gone: its run ended, its process died (this
host), its server's heartbeat is older than two of its periods, or it missed heartbeats
for the lease time (another host, no server). The next admission deletes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dagmill.io.owners import owner_gone
from dagmill.io.wake import poke
from dagmill.model.projects import (
    Lease,
    LeaseWait,
    ProjectInfo,
    ProjectUsage,
    Quota,
    project_limits,
)
from dagmill.model.resources import Resources
from dagmill.model.servers import server_dead

__all__ = ["KEEP_AFTER_SECONDS", "LEDGER_CHANNEL", "ProjectLedger"]

LEDGER_CHANNEL = "dagmill_ledger"  # PostgreSQL NOTIFY channel: resources were released
LEASE_SECONDS = 60.0  # a lease without a server, silent this long, no longer counts
# a lease of a dead server counts until its engine missed two heartbeats (5 s each)
# a task waiting this long has the room it needs kept for it (no starvation)
KEEP_AFTER_SECONDS = 5.0
_SILENT_SECONDS = 11.0
_LIVE_RUN = ("RUNNING", "PENDING")
_HOLDERS_SHOWN = 3  # runs named in a waiting task's reason (then "+N more")

_SHARED = (
    "x.run_id, x.task_id, x.attempt, x.cpu_milli, x.memory_bytes, x.gpu, x.owner,"
    " x.server_id, x.heartbeat_at, r.name, r.status, s.status, s.heartbeat_at,"
    " s.heartbeat_seconds"
)
_JOIN = " LEFT JOIN runs r ON r.id = x.run_id LEFT JOIN servers s ON s.id = x.server_id"


class _Backend(Protocol):
    _owner: str
    _for_update: str

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def _ephemeral(self) -> None: ...
    def _notify(self, channel: str, payload: str = "") -> None: ...
    def _live_rows(
        self,
        table: str,
        extra: str,
        project: str,
        now: float,
        tail: str = "",
        args: Sequence[Any] = (),
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]]: ...
    def _lease_holders(self, leases: list[tuple[Any, ...]]) -> str: ...
    def _kept_for(
        self,
        project: str,
        run_id: str,
        task_id: str,
        quota: Quota,
        used: Resources,
        now: float,
    ) -> tuple[Resources, str, str, float] | None: ...


def _quota(text: str | None) -> Quota:
    return Quota.parse(json.loads(text or "{}"))


def _project(row: Sequence[Any]) -> ProjectInfo:
    return ProjectInfo(
        str(row[0]), _quota(row[1]), float(row[2]), str(row[3] or ""), _float(row[4])
    )


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _holder(project: str, r: Sequence[Any]) -> dict[str, Any]:
    """The fields a lease and a wait share, from a row of ``_live_rows``."""
    return {
        "project": project,
        "run_id": str(r[0]),
        "task_id": str(r[1]),
        "attempt": int(r[2]),
        "request": Resources(int(r[3]), int(r[4]), int(r[5])),
        "owner": str(r[6]),
        "server_id": r[7],
        "heartbeat_at": float(r[8]),
        "run_name": str(r[9] or ""),
    }


class ProjectLedger:
    """The store's project and ledger functions (mixed into ``Store``)."""

    # -- projects --------------------------------------------------------------------------
    def create_project(
        self: _Backend, name: str, quota: Quota, description: str = ""
    ) -> ProjectInfo | None:
        """A new project; None if one of that name exists."""
        now = time.time()
        with self._tx():
            cur = self._execute(
                "INSERT INTO projects (name, quota, created_at, description, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, json.dumps(quota.to_record()), now, description, now),
            )
            if cur.rowcount != 1:
                return None
        return ProjectInfo(name, quota, now, description, now)

    def get_project(self: _Backend, name: str) -> ProjectInfo | None:
        row = self._execute(
            "SELECT name, quota, created_at, description, updated_at FROM projects WHERE name = ?",
            (name,),
        ).fetchone()
        return _project(row) if row else None

    def list_projects(self: _Backend) -> list[ProjectInfo]:
        rows = self._execute(
            "SELECT name, quota, created_at, description, updated_at FROM projects ORDER BY name"
        ).fetchall()
        return [_project(r) for r in rows]

    def update_project(
        self: _Backend, name: str, quota: Quota | None = None, description: str | None = None
    ) -> bool:
        """Change a project's quota and/or description; False if there is no such project.
        Waiters are woken: a larger quota may make room."""

        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [time.time()]
        if quota is not None:
            sets.append("quota = ?")
            args.append(json.dumps(quota.to_record()))
        if description is not None:
            sets.append("description = ?")
            args.append(description)
        with self._tx():
            changed = self._execute(
                f"UPDATE projects SET {', '.join(sets)} WHERE name = ?", (*args, name)
            ).rowcount
            wakes = self._execute(
                "SELECT wake FROM lease_waits WHERE project = ? AND wake IS NOT NULL", (name,)
            ).fetchall()
            if changed and quota is not None:
                self._notify(LEDGER_CHANNEL, name)
        for (path,) in wakes:
            poke(path)
        return bool(changed == 1)

    def delete_project(self: _Backend, name: str) -> bool:
        """Delete a project that no job and no run in progress belongs to (checked in the
        same statement: a run starting meanwhile keeps it); False if it was not deleted."""
        with self._tx():
            changed = self._execute(
                "DELETE FROM projects WHERE name = ?"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE project = ?)"
                " AND NOT EXISTS (SELECT 1 FROM runs WHERE project = ?"
                " AND status IN ('RUNNING', 'PENDING'))",
                (name, name, name),
            ).rowcount
        return bool(changed == 1)

    def project_use(self: _Backend, name: str) -> tuple[int, int]:
        """(jobs, runs not ended) of a project: what keeps it from being deleted."""
        jobs = self._execute("SELECT COUNT(*) FROM jobs WHERE project = ?", (name,)).fetchone()
        runs = self._execute(
            "SELECT COUNT(*) FROM runs WHERE project = ? AND status IN ('RUNNING', 'PENDING')",
            (name,),
        ).fetchone()
        return int(jobs[0]), int(runs[0])

    # -- the ledger ------------------------------------------------------------------------
    def admit(
        self: _Backend,
        project: str,
        run_id: str,
        task_id: str,
        attempt: int,
        request: Resources,
        *,
        machine: Resources,
        server_id: str | None = None,
        wake: str | None = None,
    ) -> Lease | str:
        """Admit ``request`` against the project's quota, in one transaction: the lease
        (held by this process), or why it waits (``"project ml: cpu 2 of 2 in use by R1
        Train"``), noted with ``wake`` (a wake socket) for ``project_usage`` and the
        releases to come. A project that does not exist limits nothing."""
        now = time.time()
        with self._tx():
            self._ephemeral()
            row = self._execute(
                f"SELECT quota FROM projects WHERE name = ?{self._for_update}", (project,)
            ).fetchone()
            quota = project_limits(project, _quota(row[0]) if row else Quota(), machine)
            used = Resources()
            leases: list[tuple[Any, ...]] = []
            if not quota.unlimited:
                leases, dead = self._live_rows("leases", ", x.admitted_at", project, now)
                for run, task, owner in dead:
                    self._execute(
                        "DELETE FROM leases WHERE run_id = ? AND task_id = ? AND owner = ?",
                        (run, task, owner),
                    )
                used = Resources(
                    sum(int(r[3]) for r in leases),
                    sum(int(r[4]) for r in leases),
                    sum(int(r[5]) for r in leases),
                )
            lacking = quota.lacks(used, request)
            kept = None
            if lacking is None and not quota.unlimited:
                kept = self._kept_for(project, run_id, task_id, quota, used, now)
                if kept is not None:  # room is kept for a task that waited long enough
                    lacking = quota.lacks_kept(used, kept[0], request)
            args = (
                run_id,
                task_id,
                attempt,
                project,
                request.cpu_milli,
                request.memory_bytes,
                request.gpu,
                self._owner,
                server_id,
            )
            if lacking is None:
                self._execute(
                    "INSERT INTO leases (run_id, task_id, attempt, project, cpu_milli,"
                    " memory_bytes, gpu, owner, server_id, admitted_at, heartbeat_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id)"
                    " DO UPDATE SET attempt = excluded.attempt, project = excluded.project,"
                    " cpu_milli = excluded.cpu_milli, memory_bytes = excluded.memory_bytes,"
                    " gpu = excluded.gpu, owner = excluded.owner,"
                    " server_id = excluded.server_id, admitted_at = excluded.admitted_at,"
                    " heartbeat_at = excluded.heartbeat_at",
                    (*args, now, now),
                )
                self._execute(
                    "DELETE FROM lease_waits WHERE run_id = ? AND task_id = ?", (run_id, task_id)
                )
                return Lease(project, run_id, task_id, attempt, request, self._owner, now, now)
            too_big = quota.too_big(request)
            if too_big:  # the quota was lowered since the run was submitted
                reason = (
                    f"project {project}: asks for more than the whole quota "
                    f"({', '.join(too_big)}): raise it with `dagmill projects set {project}`"
                )
            elif kept is not None:
                _, rid, name, since = kept
                reason = (
                    f"project {project}: {lacking} for {rid} {name}".rstrip()
                    + f" (waiting {now - since:.0f}s)"
                )
            else:
                reason = f"project {project}: {lacking} in use"
                holders = self._lease_holders(leases)
                if holders:
                    reason += f" by {holders}"
            self._execute(
                "INSERT INTO lease_waits (run_id, task_id, attempt, project, cpu_milli,"
                " memory_bytes, gpu, owner, server_id, wake, reason, since, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id)"
                " DO UPDATE SET attempt = excluded.attempt, owner = excluded.owner,"
                " server_id = excluded.server_id, wake = excluded.wake,"
                " reason = excluded.reason, heartbeat_at = excluded.heartbeat_at",
                (*args, wake, reason, now, now),
            )
            return reason

    def _kept_for(
        self: _Backend,
        project: str,
        run_id: str,
        task_id: str,
        quota: Quota,
        used: Resources,
        now: float,
    ) -> tuple[Resources, str, str, float] | None:
        """The request, run, run name and start of the oldest wait of the project, if it
        has lasted ``KEEP_AFTER_SECONDS``: the room it needs is kept for it (smaller tasks
        may use what is left), so a stream of small tasks cannot starve a large one. None
        if there is none (or this task is it)."""
        # the oldest few only (by the index), not every wait of a large fan-out
        while True:
            rows, dead = self._live_rows(
                "lease_waits",
                ", x.since",
                project,
                now,
                " AND x.since <= ? ORDER BY x.since LIMIT 8",
                (now - KEEP_AFTER_SECONDS,),
            )
            for run, task, owner in dead:
                self._execute(
                    "DELETE FROM lease_waits WHERE run_id = ? AND task_id = ? AND owner = ?",
                    (run, task, owner),
                )
            for r in rows:
                if (str(r[0]), str(r[1])) == (run_id, task_id):
                    return None  # this task is the oldest: it is being admitted
                want = Resources(int(r[3]), int(r[4]), int(r[5]))
                if not quota.too_big(want):  # fits now or not: it has yet to take it
                    return want, str(r[0]), str(r[9] or ""), float(r[14])
            if not dead:
                return None

    def note_waits(
        self: _Backend,
        project: str,
        run_id: str,
        waits: Sequence[tuple[str, int, Resources, str]],
        *,
        server_id: str | None = None,
        wake: str | None = None,
    ) -> None:
        """Note tasks of ``run_id`` as waiting, (task, attempt, request, reason) each,
        in one transaction, without asking the ledger (it has just refused as much)."""
        now = time.time()
        with self._tx():
            self._ephemeral()
            self._executemany(
                "INSERT INTO lease_waits (run_id, task_id, attempt, project, cpu_milli,"
                " memory_bytes, gpu, owner, server_id, wake, reason, since, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id)"
                " DO UPDATE SET attempt = excluded.attempt, owner = excluded.owner,"
                " server_id = excluded.server_id, wake = excluded.wake,"
                " reason = excluded.reason, heartbeat_at = excluded.heartbeat_at",
                [
                    (
                        run_id,
                        tid,
                        att,
                        project,
                        r.cpu_milli,
                        r.memory_bytes,
                        r.gpu,
                        self._owner,
                        server_id,
                        wake,
                        why,
                        now,
                        now,
                    )
                    for tid, att, r, why in waits
                ],
            )

    def _lease_holders(self: _Backend, leases: list[tuple[Any, ...]]) -> str:
        """The runs holding ``leases``, oldest first: ``R1 Train, R2 Clean (+2 more)``."""
        runs: dict[str, str] = {}
        for r in sorted(leases, key=lambda r: float(r[-1])):
            runs.setdefault(str(r[0]), str(r[9] or ""))
        named = [f"{rid} {name}".strip() for rid, name in list(runs.items())[:_HOLDERS_SHOWN]]
        more = len(runs) - _HOLDERS_SHOWN
        return ", ".join(named) + (f" (+{more} more)" if more > 0 else "")

    def _live_rows(
        self: _Backend,
        table: str,
        extra: str,
        project: str,
        now: float,
        tail: str = "",
        args: Sequence[Any] = (),
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]]:
        """The rows of ``table`` (leases or lease_waits) of ``project`` whose holder
        lives, and (run, task, owner) of those whose holder is gone (``tail``: more of
        the query, conditions on ``x`` and an order, with its ``args``)."""
        rows = self._execute(
            f"SELECT {_SHARED}{extra} FROM {table} x{_JOIN} WHERE x.project = ?{tail}",
            (project, *args),
        ).fetchall()
        live, dead = [], []
        for r in rows:
            owner, server, beat = str(r[6]), r[7], float(r[8])
            run_status, s_status, s_beat, s_period = r[10], r[11], r[12], r[13]
            gone = (
                run_status not in _LIVE_RUN
                or owner_gone(owner)
                or (
                    # its server is dead, and its engine fell silent too (a server whose
                    # loop stalls while its runners work keeps their leases)
                    server is not None
                    and beat < now - _SILENT_SECONDS
                    and (
                        s_status is None
                        or server_dead(s_status, float(s_beat), float(s_period), now)
                    )
                )
                or (server is None and beat < now - LEASE_SECONDS)
            )
            if gone:
                dead.append((str(r[0]), str(r[1]), owner))
            else:
                live.append(tuple(r))
        return live, dead

    def release_lease(self: _Backend, run_id: str, task_id: str) -> None:
        """The task ended: its lease goes, and the project's waiters are woken."""
        with self._tx():
            self._ephemeral()
            row = self._execute(
                "SELECT project FROM leases WHERE run_id = ? AND task_id = ?", (run_id, task_id)
            ).fetchone()
            if row is None:
                return
            # after an admission of the project that is under way (it holds this lock
            # until it commits): its wait row is then there for this release to wake
            self._execute(f"SELECT 1 FROM projects WHERE name = ?{self._for_update}", (row[0],))
            self._execute("DELETE FROM leases WHERE run_id = ? AND task_id = ?", (run_id, task_id))
            wakes = self._execute(
                "SELECT wake FROM lease_waits WHERE project = ? AND wake IS NOT NULL",
                (row[0],),
            ).fetchall()
            if wakes:
                self._notify(LEDGER_CHANNEL, str(row[0]))
        for (path,) in wakes:
            poke(path)

    def release_run_leases(self: _Backend, run_id: str) -> None:
        """Everything ``run_id`` holds or waits for in this process (as the run ends)."""
        with self._tx():
            projects = self._execute(
                "SELECT DISTINCT project FROM leases WHERE run_id = ? AND owner = ?"
                " ORDER BY project",
                (run_id, self._owner),
            ).fetchall()
            for (name,) in projects:  # as release_lease does, in one order (no deadlock)
                self._execute(f"SELECT 1 FROM projects WHERE name = ?{self._for_update}", (name,))
            self._execute(
                "DELETE FROM leases WHERE run_id = ? AND owner = ?", (run_id, self._owner)
            )
            self._execute(
                "DELETE FROM lease_waits WHERE run_id = ? AND owner = ?", (run_id, self._owner)
            )
            names = sorted({str(p[0]) for p in projects})
            wakes: list[Any] = []
            for name in names:
                wakes += self._execute(
                    "SELECT wake FROM lease_waits WHERE project = ? AND wake IS NOT NULL",
                    (name,),
                ).fetchall()
                self._notify(LEDGER_CHANNEL, name)
        for (path,) in wakes:
            poke(path)

    def heartbeat_leases(self: _Backend, run_id: str) -> None:
        """Note that what ``run_id`` holds and waits for in this process is alive."""
        now = time.time()
        with self._tx():
            for table in ("leases", "lease_waits"):
                self._execute(
                    f"UPDATE {table} SET heartbeat_at = ? WHERE run_id = ? AND owner = ?",
                    (now, run_id, self._owner),
                )

    def project_usage(self: _Backend, name: str, machine: Resources) -> ProjectUsage | None:
        """The project now: quota, use, live leases and live waits (oldest first)."""
        info = ProjectLedger.get_project(self, name)
        if info is None:
            return None
        now = time.time()
        limits = project_limits(name, info.quota, machine)
        rows, _ = self._live_rows("leases", ", x.admitted_at", name, now)
        leases = [Lease(**_holder(name, r), admitted_at=float(r[14])) for r in rows]
        leases.sort(key=lambda lease: lease.admitted_at)
        rows, _ = self._live_rows("lease_waits", ", x.since, x.reason", name, now)
        waits = [LeaseWait(**_holder(name, r), since=float(r[14]), reason=str(r[15])) for r in rows]
        waits.sort(key=lambda w: w.since)
        used = Resources(
            sum(x.request.cpu_milli for x in leases),
            sum(x.request.memory_bytes for x in leases),
            sum(x.request.gpu for x in leases),
        )
        return ProjectUsage(info, limits, used, leases, waits)
