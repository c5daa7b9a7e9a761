"""Claims on tasks: a task is executed by one run at a time, across processes and hosts.

A claim is a row of ``task_claims`` keyed by the task's identity where it writes (its id
and output location, the same in every run and process). A run claims the tasks it is
about to run in one transaction (``claim_tasks``), heartbeats them with its flushes and
releases each one in the flush that records its end. A claim whose run ended, whose
process died (on this host) or that missed heartbeats for ``lease`` seconds (any host)
is taken over by the next run that asks: nothing waits forever on a dead owner.

Keys are handled in sorted order in every statement, so that concurrent transactions
take row locks in one order (PostgreSQL never finds a deadlock among them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ClaimHolder", "TaskClaims", "owner_is_dead"]

_LIVE_RUN = ("RUNNING", "PENDING")


@dataclass(frozen=True, slots=True)
class ClaimHolder:
    """Who holds a claim another run asked for."""

    run_id: str
    owner: str  # host:pid


class _Backend(Protocol):
    _owner: str
    _claims_released: list[tuple[str, str]]
    _claims_beating: set[str]

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def _tx(self) -> AbstractContextManager[Any]: ...
    def _foreign_claims(self, run_id: str) -> Iterator[tuple[str, str, str, float, Any]]: ...


def owner_is_dead(owner: str) -> bool:
    """True if ``owner`` (host:pid) is a process of this host that is gone (or a zombie);
    False if it lives or is on another host (only its heartbeat can tell then)."""
    host, _, pid_text = owner.rpartition(":")
    if host != os.uname().nodename or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process its parent has not reaped yet still answers kill(0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class TaskClaims:
    """The store's claim functions (mixed into ``Store``: they share its connection and
    its flush transaction)."""

    def _init_claims(self: _Backend) -> None:
        self._claims_released: list[tuple[str, str]] = []
        self._claims_beating: set[str] = set()

    def claim_tasks(
        self: _Backend, run_id: str, tasks: Mapping[str, str], *, lease: float
    ) -> dict[str, ClaimHolder]:
        """Claim, in one transaction, the tasks ``tasks`` names (task key → task id) for
        ``run_id``: those free, already the run's (a resumed run), or whose holder is gone.
        Returns the keys another live run holds, with who holds them."""
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
            for key, rid, owner, beat, status in self._foreign_claims(run_id):
                if key not in tasks:
                    continue
                if (
                    rid == run_id
                    or status not in _LIVE_RUN
                    or beat < now - lease
                    or owner_is_dead(owner)
                ):
                    gone.append((run_id, me, now, now, key, rid, owner))
                else:
                    held[key] = ClaimHolder(rid, owner)
            if gone:
                gone.sort(key=lambda row: str(row[4]))
                self._executemany(
                    "UPDATE task_claims SET run_id = ?, owner = ?, claimed_at = ?,"
                    " heartbeat_at = ? WHERE task_key = ? AND run_id = ? AND owner = ?",
                    gone,
                )
                # another process may have taken some of them first (PostgreSQL)
                taken = {row[4] for row in gone}
                for key, rid, owner, _, _ in self._foreign_claims(run_id):
                    if key in taken:
                        held[key] = ClaimHolder(rid, owner)
        return held

    def _foreign_claims(self: _Backend, run_id: str) -> Iterator[tuple[str, str, str, float, Any]]:
        """(key, run id, owner, heartbeat, run status) of every claim not this run's in
        this process. The table holds only the claims of live work, so it stays small."""
        rows = self._execute(
            "SELECT c.task_key, c.run_id, c.owner, c.heartbeat_at, r.status"
            " FROM task_claims c LEFT JOIN runs r ON r.id = c.run_id"
            " WHERE NOT (c.run_id = ? AND c.owner = ?)",
            (run_id, self._owner),
        ).fetchall()
        for r in rows:
            yield str(r[0]), str(r[1]), str(r[2]), float(r[3]), r[4]

    def release_claims(self: _Backend, run_id: str, keys: Iterable[str]) -> None:
        """Release claims of ``run_id`` (written with the next flush, in the transaction
        that records the tasks' new status)."""
        self._claims_released.extend((k, run_id) for k in keys)

    def heartbeat_claims(self: _Backend, run_id: str) -> None:
        """Note that the claims of ``run_id`` in this process are alive (next flush)."""
        self._claims_beating.add(run_id)

    def release_run_claims(self: _Backend, run_id: str) -> None:
        """Release every claim ``run_id`` holds in this process, now (as the run ends)."""
        with self._tx():
            self._execute(
                "DELETE FROM task_claims WHERE run_id = ? AND owner = ?", (run_id, self._owner)
            )

    def claims_of(self: _Backend, run_id: str | None = None) -> dict[str, tuple[str, str]]:
        """The claims held (key → (run id, owner)), all or one run's: for tests and tools."""
        sql = "SELECT task_key, run_id, owner FROM task_claims"
        rows = self._execute(*((sql + " WHERE run_id = ?", (run_id,)) if run_id else (sql,)))
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    def _claims_buffered(self: _Backend) -> bool:
        return bool(self._claims_released or self._claims_beating)

    def _flush_claims(self: _Backend, now: float) -> None:
        """Inside the flush transaction: releases, then heartbeats."""
        released, self._claims_released = self._claims_released, []
        beating, self._claims_beating = self._claims_beating, set()
        me = self._owner
        try:
            if released:
                released.sort()
                self._executemany(
                    "DELETE FROM task_claims WHERE task_key = ? AND run_id = ? AND owner = ?",
                    [(k, r, me) for k, r in released],
                )
            for run_id in sorted(beating):
                self._execute(
                    "UPDATE task_claims SET heartbeat_at = ? WHERE run_id = ? AND owner = ?",
                    (now, run_id, me),
                )
        except BaseException:  # the transaction rolls back: a retried flush writes them
            self._claims_released[:0] = released
            self._claims_beating |= beating
            raise
