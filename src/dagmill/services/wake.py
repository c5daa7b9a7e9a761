"""Wake a local server after a change it should act on now (a job built, paused,
resumed or deleted; a run queued; slots backfilled) rather than at its next poll.

On SQLite a server listens on a datagram socket in ``$DAGMILL_HOME``
(``dagmill.settings.server_socket()``); one byte wakes it. On PostgreSQL the store's
change counter and NOTIFY do this across hosts, and this is a harmless no-op.
"""

from __future__ import annotations

import os

from dagmill import settings
from dagmill.io.wake import poke

__all__ = ["wake_server"]


def wake_server() -> bool:
    """Send one datagram to the local server's wake socket, if there is one; True if it
    was sent. No server listening (no socket, or a socket left by a dead server) is
    fine: the change is in the store, and the next server reads it as it starts."""
    path = settings.server_socket()
    return os.path.exists(path) and poke(path)
