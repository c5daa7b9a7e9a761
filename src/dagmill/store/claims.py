"""Claims on tasks: a task is executed by one run at a time, across processes and hosts.

A claim is a row of ``task_claims`` keyed by the task's identity where it writes (its id
and output location, the same in every run and process). A run claims the tasks it is
about to run in one transaction (``claim_tasks``) and heartbeats them. A task's claim is
released by the very status change that ends the task in its run (SUCCESS, FAILED, ...:
the flush that records it), so it costs no write of its own; the rows go when the run
ends. A claim whose task ended, whose run ended, whose process died (on this host) or
that missed heartbeats for ``lease`` seconds (any host) is taken over by the next run
that asks: nothing waits forever on a dead owner.

Keys are written in sorted order, so that concurrent transactions take row locks in one
order (PostgreSQL finds no deadlock among them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from dagmill.io.owners import owner_gone

__all__ = ["ClaimHolder", "TaskClaims"]

_LIVE_RUN = ("RUNNING", "PENDING")
_TASK_ENDED = ("SUCCESS", "FAILED", "UPSTREAM_FAILED", "SKIPPED", "CANCELLED")
_BY_KEY = 500  # up to this many keys, read their claims by key; beyond, read them all


@dataclass(frozen=True, slots=True)
class ClaimHolder:
    """Who holds a claim another run asked for."""

    run_id: str
    owner: str  # host:pid


class _Backend(Protocol):
    _owner: str

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def _tx(self) -> AbstractContextManager[Any]: ...
    def _foreign_claims(
        self, run_id: str, keys: Sequence[str], silent_since: float
    ) -> Iterator[tuple[str, str, str, bool]]: ...


class TaskClaims:
    """The store's claim functions (mixed into ``Store``: they share its connection)."""

    def claim_tasks(
        self: _Backend, run_id: str, tasks: Mapping[str, str], *, lease: float
    ) -> dict[str, ClaimHolder]:
        """Claim, in one transaction, the tasks ``tasks`` names (task key → task id) for
        ``run_id``: those free, already the run's (a resumed run), or whose holder is done
        with them or gone. Returns the keys another live run holds, with who holds them."""
        if not tasks:
            return {}
        now = time.time()
        me = self._owner
        keys = sorted(tasks)
        with self._tx():
            self._executemany(
                "INSERT INTO task_claims (task_key, task_id, run_id, owner, claimed_at,"
                " heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_key) DO NOTHING",
                [(k, tasks[k], run_id, me, now, now) for k in keys],
            )
            held: dict[str, ClaimHolder] = {}
            gone: list[tuple[Any, ...]] = []
            for key, rid, owner, live in self._foreign_claims(run_id, keys, now - lease):
                if key not in tasks:
                    continue
                if rid == run_id or not live or owner_gone(owner):
                    gone.append((run_id, me, tasks[key], now, now, key, rid, owner))
                else:
                    held[key] = ClaimHolder(rid, owner)
            if gone:
                gone.sort(key=lambda row: str(row[5]))
                self._executemany(
                    "UPDATE task_claims SET run_id = ?, owner = ?, task_id = ?, claimed_at = ?,"
                    " heartbeat_at = ? WHERE task_key = ? AND run_id = ? AND owner = ?",
                    gone,
                )
                # another process may have taken some of them first (PostgreSQL)
                taken = [str(row[5]) for row in gone]
                for key, rid, owner, _ in self._foreign_claims(run_id, taken, now - lease):
                    if key in tasks:
                        held[key] = ClaimHolder(rid, owner)
        return held

    def _foreign_claims(
        self: _Backend, run_id: str, keys: Sequence[str], silent_since: float
    ) -> Iterator[tuple[str, str, str, bool]]:
        """(key, run id, owner, live) of the claims not this run's in this process, of
        ``keys`` (or more); live: its task has not ended in its run, the run goes on, and
        it heartbeat since ``silent_since``."""
        sql = (
            "SELECT c.task_key, c.run_id, c.owner, c.heartbeat_at, r.status, t.status"
            " FROM task_claims c LEFT JOIN runs r ON r.id = c.run_id"
            " LEFT JOIN run_tasks t ON t.run_id = c.run_id AND t.task_id = c.task_id"
            " WHERE NOT (c.run_id = ? AND c.owner = ?)"
        )
        args: list[Any] = [run_id, self._owner]
        if len(keys) <= _BY_KEY:  # a look again at what waits: by key, not every row
            sql += f" AND c.task_key IN ({', '.join('?' * len(keys))})"
            args += keys
        for key, rid, owner, beat, run_status, task_status in self._execute(sql, args).fetchall():
            live = (
                run_status in _LIVE_RUN
                and task_status not in _TASK_ENDED
                and float(beat) >= silent_since
            )
            yield str(key), str(rid), str(owner), live

    def heartbeat_claims(self: _Backend, run_id: str) -> None:
        """Note that the claims ``run_id`` holds in this process are alive."""
        with self._tx():
            self._execute(
                "UPDATE task_claims SET heartbeat_at = ? WHERE run_id = ? AND owner = ?",
                (time.time(), run_id, self._owner),
            )

    def release_run_claims(self: _Backend, run_id: str) -> None:
        """Remove every claim ``run_id`` holds in this process (as the run ends)."""
        with self._tx():
            self._execute(
                "DELETE FROM task_claims WHERE run_id = ? AND owner = ?", (run_id, self._owner)
            )

    def claims_of(self: _Backend, run_id: str | None = None) -> dict[str, tuple[str, str]]:
        """The claims recorded (key → (run id, owner)), all or one run's: for tests, tools."""
        sql = "SELECT task_key, run_id, owner FROM task_claims"
        rows = self._execute(*((sql + " WHERE run_id = ?", (run_id,)) if run_id else (sql,)))
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}
