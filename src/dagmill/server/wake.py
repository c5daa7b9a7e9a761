"""Wake-ups for a server on SQLite: a datagram socket in ``$DAGMILL_HOME`` that the CLI
(``services``) writes a byte to after it changes jobs or queues a run. On PostgreSQL the
store's LISTEN/NOTIFY does this across hosts."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

__all__ = ["WakeSocket"]


class WakeSocket:
    """Sets ``event`` whenever a datagram arrives at ``path`` (None if it cannot bind:
    the path is too long for a socket, or the folder is read-only)."""

    def __init__(self, path: str, event: threading.Event) -> None:
        self.path = path
        self._event = event
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead server's; a live one was refused before this
        self._sock.bind(path)
        threading.Thread(target=self._listen, name="wake", daemon=True).start()

    @classmethod
    def open(cls, path: str, event: threading.Event) -> WakeSocket | None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return cls(path, event)
        except OSError:
            return None

    def _listen(self) -> None:
        while True:
            try:
                self._sock.recv(64)
            except OSError:
                return  # closed
            self._event.set()

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
