"""The executor interface and the one function that runs a task action.

An executor is handed submissions, runs them somewhere, and reports results as events:
``start()``, ``can_submit()``, ``submit(sub)``, ``wait(timeout) -> [TaskResult]``,
``cancel()``, ``shutdown()``. It never reaches up into the engine or the store.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from dagmill.executors.procs import boot_seconds, stop_descendants

__all__ = ["Executor", "Submission", "TaskError", "TaskResult", "execute"]

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIB_DIRS = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


_NO_ENV: Mapping[str, str] = MappingProxyType({})


# NamedTuples, not frozen dataclasses: one of each per task, and they are built in C
class Submission(NamedTuple):
    """One attempt of one task, as handed to an executor."""

    task_id: str
    attempt: int
    action: Callable[[], Any] | None  # None: the executor was handed it at start()
    env: Mapping[str, str] = _NO_ENV
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class TaskError:
    """A failure, already formatted (tracebacks do not cross processes)."""

    type: str
    message: str
    location: str | None  # "file.py:42 in run": the user's own frame, innermost
    traceback: str

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.type}: {self.message}{where}"


class TaskResult(NamedTuple):
    task_id: str
    attempt: int
    ok: bool
    started: float
    ended: float
    error: TaskError | None = None
    log_end: int | None = None  # where the attempt's captured output ends in its log


class Executor(ABC):
    """Runs submissions; ``slots`` of them at once."""

    slots: int = 1
    # tasks run in this process: their in-memory outputs are visible to the engine
    in_process: bool = False

    def start(  # noqa: B027 - optional hook
        self,
        actions: Mapping[str, Callable[[], Any]],
        log_dir: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        """Prepare workers; called once before the first submission with every task's
        action (forked workers inherit them instead of unpickling each one), the folder
        for captured output (None: no capture) and the values to mask in it."""

    @abstractmethod
    def can_submit(self) -> bool: ...

    @abstractmethod
    def submit(self, sub: Submission) -> None: ...

    def where_next(self) -> tuple[str, int] | None:
        """(log file, offset) where the next submission's captured output will start."""
        return None

    @abstractmethod
    def wait(self, timeout: float | None) -> list[TaskResult]:
        """Block until at least one result is ready (or ``timeout`` passes); return them."""

    def watch(self, wakeup: Any) -> bool:
        """Also return from ``wait`` (with no results) when ``wakeup`` (an object with
        ``fileno()``) becomes readable; the caller drains it. False if this executor
        cannot: its ``wait`` never blocks while a task runs (tasks run inside submit)."""
        return False

    @abstractmethod
    def cancel(self) -> None:
        """Stop everything that runs now, with its whole process group."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release workers; the executor is not used afterwards."""


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def execute(sub: Submission, action: Callable[[], Any]) -> TaskResult:
    """Run one submission's action here and now; exceptions become a TaskError."""
    if sub.env or sub.timeout:
        return _execute_with(sub, action)
    started = time.time()
    try:
        action()
    except Exception as e:  # the task's own failure: report it, keep the run going
        return TaskResult(sub.task_id, sub.attempt, False, started, time.time(), _describe(e))
    return TaskResult(sub.task_id, sub.attempt, True, started, time.time())


def _execute_with(sub: Submission, action: Callable[[], Any]) -> TaskResult:
    """``execute`` with environment variables set and a timeout armed for the task."""
    saved = {k: os.environ.get(k) for k in sub.env}
    os.environ.update(sub.env)
    timer = sub.timeout is not None and sub.timeout > 0
    since = 0.0
    if timer:
        since = boot_seconds()
        old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(sub.timeout or 0))
    started = time.time()
    try:
        action()
        return TaskResult(sub.task_id, sub.attempt, True, started, time.time())
    except _Timeout as e:
        # what the task started must not outlive it
        stop_descendants(since)
        if getattr(e, "dagmill_outputs_saved", False):  # its work was done: a success
            return TaskResult(sub.task_id, sub.attempt, True, started, time.time())
        err = TaskError(
            "TimeoutError", f"task ran longer than its timeout of {sub.timeout:g}s", None, ""
        )
        return TaskResult(sub.task_id, sub.attempt, False, started, time.time(), err)
    except Exception as e:
        return TaskResult(sub.task_id, sub.attempt, False, started, time.time(), _describe(e))
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _describe(e: BaseException) -> TaskError:
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    location = None
    for fr in reversed(frames):
        path = os.path.realpath(fr.filename)
        if path.startswith(_PKG_DIR) or path.startswith(_LIB_DIRS) or fr.filename.startswith("<"):
            continue
        location = f"{fr.filename}:{fr.lineno} in {fr.name}"
        break
    # no user frame (the failure is dagmill's own report, e.g. a processor module failed):
    # a dagmill file and line would point the user to the wrong place
    # the user's frames only: dagmill's own frames add nothing to a user's traceback
    tb = "".join(
        traceback.format_list(
            [f for f in frames if not os.path.realpath(f.filename).startswith(_PKG_DIR)]
        )
    )
    tb += "".join(traceback.format_exception_only(type(e), e))
    return TaskError(type(e).__name__, str(e), location, tb)
