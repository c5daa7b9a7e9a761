"""The servers sharing a run record (``dagmill server``), as the store's ledger holds them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVER_STATUS", "ServerInfo"]

# running: takes and runs work; draining: finishes (or hands back) its runs, takes none;
# stopped: gone cleanly (a server that died stays running/draining until its heartbeat
# is stale)
SERVER_STATUS = ("running", "draining", "stopped")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server process: where it runs, how many runs it may run at once, its status
    and its last heartbeat (epoch seconds)."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    max_runs: int
    status: str
    stopped_at: float | None = None
