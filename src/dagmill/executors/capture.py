"""Task output capture: stdout and stderr, at the file-descriptor level, into a log file.

At the descriptor level, so ``print``, ``logging`` to stderr and the output of any
subprocess a task starts are all captured. Each attempt's lines are a byte range
``[start, end)`` of a log file: a pool worker keeps one file for its life, an inline run
one file for the run, so no file is created per task.

When a run has secrets (values of environment variables whose names say SECRET, TOKEN,
PASSWORD, API_KEY ..., or listed in ``DAGMILL_SECRET_ENV``), the output goes through a
pipe and a thread that masks them before anything reaches the disk.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence

from dagmill.executors.base import TaskError
from dagmill.model.secrets import MASK
from dagmill.model.secrets import secret_values as _secret_values

__all__ = ["MASK", "LogCapture", "log_error", "secret_values", "with_actions_secrets"]

_MASK_BYTES = MASK.encode()
_SYNC = b"\x00dagmill-sync\x00\n"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values to mask: env vars named like secrets, and those listed in DAGMILL_SECRET_ENV."""
    return _secret_values(os.environ if environ is None else environ)


def with_actions_secrets(secrets: Sequence[str], actions: Iterable[object]) -> list[str]:
    """``secrets`` and those of the environments that actions set for their processes (a
    YAML node's ``env:``), longest first."""
    more = set(secrets)
    for action in actions:
        env = getattr(action, "env", None)
        if isinstance(env, dict) and env:
            more.update(_secret_values({**os.environ, **env}))
    return sorted(more, key=len, reverse=True)


def _flush_python_streams() -> bool:
    """Flush Python's own buffers into fds 1 and 2; False if the disk would not take it."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            ok = False
        except Exception:  # a replaced stream that cannot flush: nothing of ours to lose
            pass
    return ok


def _line_buffered(on: bool) -> list[bool]:
    """Make print() reach the log line by line (a follower sees it at once); returns what
    each stream had, for putting it back."""
    before = []
    for stream in (sys.stdout, sys.stderr):
        before.append(bool(getattr(stream, "line_buffering", False)))
        _reconfigure(stream, on)
    return before


def _reconfigure(stream: object, line_buffering: bool) -> None:
    # try/except, not contextlib.suppress: this runs four times per task
    try:  # noqa: SIM105
        stream.reconfigure(line_buffering=line_buffering)  # type: ignore[attr-defined]
    except Exception:
        pass


def log_error(capture: LogCapture) -> TaskError | None:
    """The failure of an attempt whose output could not be kept (then cleared)."""
    failure, capture.failure = capture.failure, None
    return TaskError("LogWriteError", failure, None, "") if failure else None


class LogCapture:
    """Points this process's fds 1 and 2 at ``path`` while tasks run."""

    def __init__(self, path: str, secrets: Iterable[str] = ()) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._secrets = [s.encode() for s in secrets if s]
        self._saved: tuple[int, int] | None = None
        self._buffering: list[bool] | None = None
        self._target = self._file
        self._synced = threading.Event()
        self.failure: str | None = None  # why the log could not be written (a full disk)
        if self._secrets:
            read, write = os.pipe()
            self._target = write
            self._reader = threading.Thread(target=self._mask, args=(read,), daemon=True)
            self._reader.start()

    def offset(self) -> int:
        return os.fstat(self._file).st_size

    def begin(self) -> None:
        """Send fds 1 and 2 to the log (``offset()`` before it is where the task's lines
        start: the executors ask it then, not here, to spare an fstat per task)."""
        _flush_python_streams()
        if self._saved is None:
            self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._target, 1)
        os.dup2(self._target, 2)
        if self._buffering is None:
            self._buffering = _line_buffered(True)

    def end(self, restore: bool) -> int:
        """Flush what the task wrote; returns where its lines end (``restore``: give fds 1
        and 2 back, for a process that has other output of its own). ``failure`` then
        says if part of the output could not be written."""
        if not _flush_python_streams():
            # what Python still holds cannot be written: drop it, never let it reach the
            # terminal once fds 1 and 2 are given back
            self.failure = self.failure or (
                f"the task's output could not be written to {self.path}: No space left on device?"
            )
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
            _flush_python_streams()
        if self._secrets:  # wait until the masking thread has written everything so far
            self._synced.clear()
            os.write(1, _SYNC)
            self._synced.wait(5)
        end = self.offset()
        if restore and self._saved is not None:
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            if self._buffering is not None:
                for stream, was in zip((sys.stdout, sys.stderr), self._buffering):
                    _reconfigure(stream, was)
                self._buffering = None
        return end

    def close(self) -> None:
        if self._saved is not None:
            _flush_python_streams()
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for fd in self._saved:
                os.close(fd)
            self._saved = None
        if self._target != self._file:
            os.close(self._target)  # the reader sees EOF and ends
            self._reader.join(5)
        os.close(self._file)

    def _mask(self, read: int) -> None:
        pending = b""
        # an incomplete secret (or sync marker) at the end of what was read is shorter
        # than this: keep that much back until the next read completes it
        keep = max(max(len(s) for s in self._secrets), len(_SYNC)) - 1
        # a secret with a line break in it (a PEM key) could be cut at a line's end
        by_line = not any(b"\n" in s for s in self._secrets)
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            pending += chunk
            while True:
                i = pending.find(_SYNC)
                if i < 0:
                    break
                self._write(self._masked(pending[:i]))
                pending = pending[i + len(_SYNC) :]
                self._synced.set()
            # mask whole secrets first, so that no cut below can split one in two
            pending = self._masked(pending)
            cut = (by_line and pending.rfind(b"\n") + 1) or max(0, len(pending) - keep)
            self._write(pending[:cut])
            pending = pending[cut:]
        self._write(self._masked(pending))
        os.close(read)

    def _masked(self, data: bytes) -> bytes:
        for s in self._secrets:
            if s in data:
                data = data.replace(s, _MASK_BYTES)
        return data

    def _write(self, data: bytes) -> None:
        if not data or self.failure is not None:
            return  # after a failure keep draining the pipe, or the task would block on it
        try:
            os.write(self._file, data)
        except OSError as e:
            self.failure = f"the task's output could not be written to {self.path}: {e.strerror}"
