"""The ledger of servers sharing a run record: who runs, where, and whether it lives.

A server registers as it starts, with the period it promises to heartbeat at, heartbeats
while it runs (``running``, or ``draining`` as it stops taking work) and says ``stopped``
as it ends. One that died says nothing: once its heartbeat is older than two of its
periods it is dead (``ServerInfo.dead``), ``live_servers`` leaves it out, and its runs
and leases are taken over by the others.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dagmill.model.servers import DEAD_AFTER_PERIODS, SERVER_STATUS, ServerInfo

__all__ = ["ServerLedger"]

_COLS = "id, host, pid, started_at, heartbeat_at, max_runs, status, stopped_at, heartbeat_seconds"


class _Backend(Protocol):
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...


class ServerLedger:
    """The store's server functions (mixed into ``Store``): each one short transaction."""

    def register_server(
        self: _Backend, server_id: str, max_runs: int, heartbeat_seconds: float = 5.0
    ) -> ServerInfo:
        """Record this process as the server ``server_id`` (running, may run ``max_runs``
        runs at once, heartbeats every ``heartbeat_seconds``). Registering an id again (a
        restart that keeps its id) starts it afresh."""
        if not heartbeat_seconds > 0:
            raise ValueError(f"a heartbeat period is positive seconds; got {heartbeat_seconds}")
        now = time.time()
        host, pid = os.uname().nodename, os.getpid()
        with self._tx():
            self._execute(
                f"INSERT INTO servers ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, 'running', NULL, ?)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                " max_runs = excluded.max_runs, status = 'running', stopped_at = NULL,"
                " heartbeat_seconds = excluded.heartbeat_seconds",
                (server_id, host, pid, now, now, max_runs, heartbeat_seconds),
            )
        return ServerInfo(
            server_id, host, pid, now, now, max_runs, "running", None, heartbeat_seconds
        )

    def server_heartbeat(
        self: _Backend, server_id: str, status: str = "running", now: float | None = None
    ) -> None:
        """Note that the server lives, and its status (running or draining), at ``now``
        (the clock, unless given: a server's loop runs on an injected clock in tests)."""
        if status not in SERVER_STATUS:
            raise ValueError(f"a server is {', '.join(SERVER_STATUS)}; got {status!r}")
        with self._tx():
            self._execute(
                "UPDATE servers SET heartbeat_at = ?, status = ? WHERE id = ?",
                (time.time() if now is None else now, status, server_id),
            )

    def stop_server(self: _Backend, server_id: str) -> None:
        """Note that the server ended cleanly (not to be mistaken for one that died)."""
        now = time.time()
        with self._tx():
            self._execute(
                "UPDATE servers SET status = 'stopped', stopped_at = ?, heartbeat_at = ?"
                " WHERE id = ?",
                (now, now, server_id),
            )

    def live_servers(
        self: _Backend, stale_after: float | None = None, now: float | None = None
    ) -> list[ServerInfo]:
        """The servers not stopped whose last heartbeat, at ``now`` (the clock, unless
        given), is at most two of their own periods old (or ``stale_after`` seconds, if
        given), oldest first."""
        now = time.time() if now is None else now
        args: tuple[float, ...]
        if stale_after is None:
            fresh, args = "heartbeat_at >= ? - ? * heartbeat_seconds", (now, DEAD_AFTER_PERIODS)
        else:
            fresh, args = "heartbeat_at >= ?", (now - stale_after,)
        rows = self._execute(
            f"SELECT {_COLS} FROM servers WHERE status <> 'stopped' AND {fresh}"
            " ORDER BY started_at, id",
            args,
        )
        return [ServerInfo(*r) for r in rows]

    def servers(self: _Backend, ids: Iterable[str]) -> dict[str, ServerInfo]:
        """The servers of ``ids`` that are recorded, whatever their status, by id (whose
        runs are whose: a run's ``server_id`` names one)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = self._execute(f"SELECT {_COLS} FROM servers WHERE id IN ({marks})", wanted)
        return {str(r[0]): ServerInfo(*r) for r in rows}

    def get_server(self: _Backend, server_id: str) -> ServerInfo | None:
        """A server by id, whatever its status (for tools and tests)."""
        row = self._execute(f"SELECT {_COLS} FROM servers WHERE id = ?", (server_id,)).fetchone()
        return ServerInfo(*row) if row else None
