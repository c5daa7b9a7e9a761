"""The servers sharing a run record (``dagmill server``), as the store's ledger holds them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEAD_AFTER_PERIODS", "SERVER_STATUS", "ServerInfo", "server_dead"]

# running: takes and runs work; draining: finishes (or hands back) its runs, takes none;
# stopped: gone cleanly (a server that died stays running/draining until its heartbeat
# is stale)
SERVER_STATUS = ("running", "draining", "stopped")
# a server silent for this many of its heartbeat periods is dead: one late beat (a busy
# machine) is not a death, two are
DEAD_AFTER_PERIODS = 2.0


def server_dead(status: str, heartbeat_at: float, heartbeat_seconds: float, now: float) -> bool:
    """Stopped, or silent for more than ``DEAD_AFTER_PERIODS`` heartbeat periods at ``now``."""
    return status == "stopped" or now > heartbeat_at + DEAD_AFTER_PERIODS * heartbeat_seconds


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server process: where it runs, how many runs it may run at once, its status
    and its last heartbeat (epoch seconds), which it promised every ``heartbeat_seconds``."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    max_runs: int
    status: str
    stopped_at: float | None = None
    heartbeat_seconds: float = 5.0

    @property
    def expires_at(self) -> float:
        """When it is dead unless it heartbeats again (epoch seconds)."""
        return self.heartbeat_at + DEAD_AFTER_PERIODS * self.heartbeat_seconds

    def dead(self, now: float) -> bool:
        """Stopped, or silent for more than two heartbeat periods at ``now``."""
        return server_dead(self.status, self.heartbeat_at, self.heartbeat_seconds, now)
