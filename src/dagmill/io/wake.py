"""Wake-ups between processes of one host: datagram sockets under ``$DAGMILL_HOME``.

A server on SQLite is woken through one (the CLI writes a byte to it after it changes
jobs or queues a run); an engine with tasks waiting for room in their project is woken
through its own (the process that releases resources of the project writes to it). On
PostgreSQL, LISTEN/NOTIFY does this across hosts as well.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

__all__ = ["WakeSocket", "Waker", "poke"]


def _sockaddr(address: str) -> str:
    # "@name" is Linux's abstract namespace: no file to make, to clean up, or to outgrow
    # the 108 bytes of a socket path
    return "\0" + address[1:] if address.startswith("@") else address


def poke(path: str) -> bool:
    """Write a byte to the wake socket at ``path`` (a file, or ``@name`` in Linux's
    abstract namespace); False if nobody listens there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.sendto(b"!", _sockaddr(path))
        return True
    except OSError:  # gone, or its buffer is full: it is awake already
        return False
    finally:
        s.close()


class Waker:
    """A selectable wake-up: ``fileno()`` is readable once poked, by this process
    (``poke()``) or by another of this host (``io.wake.poke(address)``). ``address`` is
    None where no socket file could be made (a path too long, a read-only folder): then
    only this process can wake it."""

    def __init__(self, folder: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.address: str | None = None
        self._pair: socket.socket | None = None
        name = f"{os.getpid()}-{os.urandom(6).hex()}"
        if sys.platform == "linux":
            folder = None
            with contextlib.suppress(OSError):
                self._sock.bind(_sockaddr(f"@dagmill-wake-{name}"))
                self.address = f"@dagmill-wake-{name}"
        if folder is not None:
            path = os.path.join(folder, f"{name}.sock")
            try:
                os.makedirs(folder, exist_ok=True)
                self._sock.bind(path)
                self.address = path
            except OSError:
                pass
        if self.address is None:
            self._sock.close()
            self._sock, self._pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pair.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def poke(self) -> None:
        if self._pair is not None:
            with contextlib.suppress(OSError):
                self._pair.send(b"!")
        elif self.address is not None:
            poke(self.address)

    def drain(self) -> bool:
        """Consume the wake-ups received; True if there were any."""
        got = False
        while True:
            try:
                self._sock.recv(64)
                got = True
            except (BlockingIOError, InterruptedError):
                return got
            except OSError:
                return got

    def close(self) -> None:
        self._sock.close()
        if self._pair is not None:
            self._pair.close()
        if self.address is not None and not self.address.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


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
