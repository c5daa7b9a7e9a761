"""The ledger of servers sharing a run record: who runs, where, and whether it lives.

A server registers as it starts, heartbeats while it runs (``running``, or ``draining``
as it stops taking work) and says ``stopped`` as it ends. One that died says nothing: its
heartbeat goes stale, and ``live_servers`` leaves it out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dagmill.model.servers import SERVER_STATUS, ServerInfo

__all__ = ["ServerLedger"]

_COLS = "id, host, pid, started_at, heartbeat_at, max_runs, status, stopped_at"


class _Backend(Protocol):
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...


class ServerLedger:
    """The store's server functions (mixed into ``Store``): each one short transaction."""

    def register_server(self: _Backend, server_id: str, max_runs: int) -> ServerInfo:
        """Record this process as the server ``server_id`` (running, may run ``max_runs``
        runs at once). Registering an id again (a restart that keeps its id) starts it
        afresh."""
        now = time.time()
        host, pid = os.uname().nodename, os.getpid()
        with self._tx():
            self._execute(
                f"INSERT INTO servers ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, 'running', NULL)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                " max_runs = excluded.max_runs, status = 'running', stopped_at = NULL",
                (server_id, host, pid, now, now, max_runs),
            )
        return ServerInfo(server_id, host, pid, now, now, max_runs, "running")

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
        self: _Backend, stale_after: float = 15.0, now: float | None = None
    ) -> list[ServerInfo]:
        """The servers not stopped that heartbeat within ``stale_after`` seconds of
        ``now`` (the clock, unless given), oldest first."""
        since = (time.time() if now is None else now) - stale_after
        rows = self._execute(
            f"SELECT {_COLS} FROM servers WHERE status <> 'stopped' AND heartbeat_at >= ?"
            " ORDER BY started_at, id",
            (since,),
        )
        return [ServerInfo(*r) for r in rows]

    def get_server(self: _Backend, server_id: str) -> ServerInfo | None:
        """A server by id, whatever its status (for tools and tests)."""
        row = self._execute(f"SELECT {_COLS} FROM servers WHERE id = ?", (server_id,)).fetchone()
        return ServerInfo(*row) if row else None
