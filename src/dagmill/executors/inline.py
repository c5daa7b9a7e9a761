"""Run tasks one at a time in this process (``workers=1``): in-memory outputs work.

Ctrl-C interrupts the task itself. Processes the task started are children of this
process, not of a worker with its own process group, so ``cancel()`` finds them in the
process tree: descendants of this process started after the task began (so that a
notebook kernel's earlier children are left alone). On systems without ``/proc`` they
are left to the operating system. If the engine itself is killed (kill -9), a reaper
(``procs.Reaper``) stops them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagmill.executors.base import Executor, Submission, TaskResult, execute
from dagmill.executors.capture import LogCapture, log_error, with_actions_secrets
from dagmill.executors.procs import Reaper, boot_seconds, stop_descendants, stop_marked

__all__ = ["InlineExecutor"]

_GRACE_SECONDS = 3.0


class InlineExecutor(Executor):
    slots = 1
    in_process = True

    def __init__(self) -> None:
        self._done: list[TaskResult] = []
        self._actions: Mapping[str, Callable[[], Any]] = {}
        self._task_started = 0.0
        self._capture: LogCapture | None = None
        self._reaper: Reaper | None = None

    def start(
        self,
        actions: Mapping[str, Callable[[], Any]],
        log_dir: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._actions = actions
        # the engine is the parent of what tasks start: if it is killed, the reaper
        # stops them
        self._reaper = Reaper()
        if log_dir is not None:
            secrets = with_actions_secrets(secrets, actions.values())
            self._capture = LogCapture(os.path.join(log_dir, "inline.log"), secrets)

    def can_submit(self) -> bool:
        return not self._done

    def where_next(self) -> tuple[str, int] | None:
        cap = self._capture
        return (cap.path, cap.offset()) if cap is not None else None

    def submit(self, sub: Submission) -> None:
        self._task_started = boot_seconds()
        action = sub.action or self._actions[sub.task_id]
        cap = self._capture
        started = time.time()
        end = None
        if cap is not None:
            cap.begin()
        try:
            result = execute(sub, action)
        except BaseException as e:
            if getattr(e, "dagmill_outputs_saved", False):
                # interrupted after its work was done and its outputs in place: a success
                # that the engine records before it stops
                if cap is not None:
                    end = cap.end(restore=True)
                    cap = None
                self._done.append(
                    TaskResult(sub.task_id, sub.attempt, True, started, time.time(), None, end)
                )
            raise
        finally:
            if cap is not None:  # the engine's own output goes where it went before
                end = cap.end(restore=True)
        if self._capture is not None:
            broken = log_error(self._capture)
            if broken is not None and result.ok:
                result = result._replace(ok=False, error=broken)
            # a NamedTuple's _replace is Python-level: build it (log_end is the last field)
            result = TaskResult(*result[:6], end)
        self._done.append(result)

    def shutdown(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

    def wait(self, timeout: float | None) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        """Stop the processes the interrupted task started (and theirs), and any that
        left the process tree (a daemon whose parent exited)."""
        stop_descendants(self._task_started, _GRACE_SECONDS)
        if self._reaper is not None:
            stop_marked(self._reaper.token, _GRACE_SECONDS)
