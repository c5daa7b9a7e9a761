"""Is a process of this host gone? (Owners of runs, claims and temporary files.)"""

from __future__ import annotations

import os

__all__ = ["owner_gone", "process_gone"]


def process_gone(pid: int) -> bool:
    """True if no process ``pid`` runs on this host (a zombie counts as gone: killed,
    its parent has not reaped it yet); False if it lives, or is someone else's."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def owner_gone(owner: str) -> bool:
    """True if ``owner`` (host:pid) is a process of this host that is gone; False if it
    lives or is on another host (only its heartbeat can tell then)."""
    host, _, pid = owner.rpartition(":")
    return host == os.uname().nodename and pid.isdigit() and process_gone(int(pid))
