"""Run tasks one at a time in this process (``workers=1``): in-memory outputs work.

Ctrl-C interrupts the task itself. Processes the task started are children of this
process, not of a worker with its own process group, so ``cancel()`` finds them in the
process tree: descendants of this process started after the task began (so that a
notebook kernel's earlier children are left alone). On systems without ``/proc`` they
are left to the operating system.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagmill.executors.base import Executor, Submission, TaskResult, execute
from dagmill.executors.capture import LogCapture, log_error

__all__ = ["InlineExecutor"]

_GRACE_SECONDS = 3.0


class InlineExecutor(Executor):
    slots = 1

    def __init__(self) -> None:
        self._done: list[TaskResult] = []
        self._actions: Mapping[str, Callable[[], Any]] = {}
        self._task_started = 0.0
        self._capture: LogCapture | None = None

    def start(
        self,
        actions: Mapping[str, Callable[[], Any]],
        log_dir: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._actions = actions
        if log_dir is not None:
            self._capture = LogCapture(os.path.join(log_dir, "inline.log"), secrets)

    def can_submit(self) -> bool:
        return not self._done

    def where_next(self) -> tuple[str, int] | None:
        cap = self._capture
        return (cap.path, cap.offset()) if cap is not None else None

    def submit(self, sub: Submission) -> None:
        self._task_started = _boot_seconds()
        action = sub.action or self._actions[sub.task_id]
        cap = self._capture
        if cap is None:
            self._done.append(execute(sub, action))
            return
        cap.begin()
        try:
            result = execute(sub, action)
        finally:
            end = cap.end(restore=True)  # the engine's own output goes where it went before
        broken = log_error(cap)
        if broken is not None and result.ok:
            result = result._replace(ok=False, error=broken)
        self._done.append(result._replace(log_end=end))

    def shutdown(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    def wait(self, timeout: float | None) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        """Stop the processes the interrupted task started (and theirs)."""
        victims = _descendants_since(os.getpid(), self._task_started)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_SECONDS
        while victims and time.monotonic() < deadline:
            victims = [p for p in victims if _reap(p)]
            if victims:
                time.sleep(0.05)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)


def _boot_seconds() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return 0.0


def _reap(pid: int) -> bool:
    """True while ``pid`` still runs; reaps it if it is our exited child."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _descendants_since(root: int, since: float) -> list[int]:
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
