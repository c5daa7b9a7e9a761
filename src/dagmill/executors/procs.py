"""Processes a run's tasks start: found and stopped, even when the engine is killed.

Every process started while a run executes carries ``DAGMILL_RUN_TOKEN=<token>`` in the
environment it was started with (set in the engine's environment for the run's length;
a task's subprocesses, their children, processor modules and command nodes inherit it).
A *reaper* waits for the engine on a pipe: a small ``sh`` that costs nothing while the run
is healthy. If the engine dies without saying goodbye (kill -9, OOM), the pipe closes,
the reaper starts Python and stops every process whose ``/proc/PID/environ`` holds the
token: SIGTERM, then SIGKILL after a short grace. This reaches what a process group
cannot: children that ignore SIGTERM, that started their own session, or whose parent
(the engine itself, with one worker) is gone. Jenkins finds a build's leftovers the same
way (its ``BUILD_ID`` variable).

``stop_descendants`` stops the processes a task started below this one (for a timeout);
``stop_marked`` every process of the run, wherever it went (for a cancel).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from typing import Any

__all__ = [
    "TOKEN_ENV",
    "Reaper",
    "descendants_since",
    "is_running",
    "stop_descendants",
    "stop_marked",
]

TOKEN_ENV = "DAGMILL_RUN_TOKEN"
_SH = "/bin/sh"
GRACE_SECONDS = 2.0

# The reaper's code (stdlib only: it runs with -I -S, no site, no user path, after the
# engine died). ``stop_marked`` below runs the same functions in this process, for a cancel.
_STOP = r"""
import os, signal, time

def marked(token, skip):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if token in env:
            found.append(int(entry))
    return found

def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

def stop(token, grace, skip):
    victims = marked(token, skip)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline:
        time.sleep(0.05)
        victims = [p for p in victims if alive(p)]
    for pid in set(victims) | set(marked(token, skip)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""
_REAP = (
    _STOP
    + """
import sys
stop(("%s=%s" % (sys.argv[1], sys.argv[2])).encode(), float(sys.argv[3]), {os.getpid()})
"""
)
_stop_code: dict[str, Any] = {}
exec(compile(_STOP, "<dagmill reaper>", "exec"), _stop_code)


def stop_marked(token: str, grace: float = GRACE_SECONDS) -> None:
    """Stop every process started with this run's token (but this one and the reapers):
    SIGTERM, then SIGKILL after ``grace``. For a cancel: it reaches children that left
    their worker's process group (their own session) and outlived their parent."""
    if os.path.isdir("/proc"):
        _stop_code["stop"](f"{TOKEN_ENV}={token}".encode(), grace, {os.getpid(), *_reapers})


# the waiting part: no Python until it is needed. Signals a terminal sends the engine's
# process group are the engine's to handle, so the reaper ignores them.
_WAIT = 'trap "" INT TERM HUP QUIT TSTP; read -r line; [ "$line" = bye ] || exec "$@"'


_live_fds: set[int] = set()  # write ends of the reapers' pipes in this process


def _forget_reapers() -> None:
    # a forked child (a pool worker) must not hold the engine's end of the pipe open, or
    # the reaper would not see the engine die until the child did; /dev/null over it
    # keeps the file object in the child valid
    for fd in _live_fds:
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd, inheritable=False)
            os.close(null)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_reapers)


_reapers: set[int] = set()  # pids of reapers started here: never a task's process


def _reap_finished() -> None:
    for pid in list(_reapers):
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        _reapers.discard(pid)


class Reaper:
    """Sets the run's token in this process's environment and starts the reaper;
    ``close()`` says goodbye (nothing is stopped) and takes the token back.

    ``posix_spawn`` and no waiting: a ``subprocess.Popen`` that waits for the exec, and a
    wait for the reaper to exit, cost milliseconds, more than a short run's overhead.
    A reaper that was told goodbye is collected when the next one starts."""

    def __init__(self) -> None:
        _reap_finished()
        self.token = secrets.token_hex(8)
        self._before = os.environ.get(TOKEN_ENV)
        self._write = -1  # the engine's end of the pipe
        if os.path.isdir("/proc") and os.path.exists(_SH):
            env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
            read, write = os.pipe()  # both close on exec; the read end becomes stdin
            try:
                pid = os.posix_spawn(
                    _SH,
                    [_SH, "-c", _WAIT, "dagmill-reaper", sys.executable, "-I", "-S", "-c",
                     _REAP, TOKEN_ENV, self.token, str(GRACE_SECONDS)],
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, read, 0),
                        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                    ],
                )  # fmt: skip
            except OSError:
                os.close(write)
            else:
                _reapers.add(pid)
                self._write = write
                _live_fds.add(write)
            finally:
                os.close(read)
        os.environ[TOKEN_ENV] = self.token

    def close(self) -> None:
        if self._before is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = self._before
        fd, self._write = self._write, -1
        if fd >= 0:
            _live_fds.discard(fd)
            with contextlib.suppress(OSError):
                os.write(fd, b"bye\n")
            os.close(fd)


def is_running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has stopped); reaps it if it is our child."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def boot_seconds() -> float:
    """Now, on the clock /proc's process start times count from (0.0 if unknown)."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return 0.0


def descendants_since(root: int, since: float) -> list[int]:
    """Processes below ``root`` in the tree that started at or after ``since``."""
    if not os.path.isdir("/proc") or since <= 0:
        return []
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    started: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        started[pid] = int(fields[19]) / ticks
    out, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                frontier.append(child)
                if started[child] >= since - 0.01:
                    out.append(child)
    return out


def stop_descendants(since: float, grace: float = GRACE_SECONDS) -> None:
    """Stop what this process started since ``since`` (boot_seconds()), with theirs:
    SIGTERM, then SIGKILL whatever still runs after ``grace``."""
    victims = [p for p in descendants_since(os.getpid(), since) if p not in _reapers]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if is_running(p)]
        if victims:
            time.sleep(0.05)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        is_running(pid)
