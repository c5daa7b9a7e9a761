"""Run tasks one at a time in this process (``workers=1``): in-memory outputs work."""

from __future__ import annotations

from dagmill.executors.base import Executor, Submission, TaskResult, execute

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    slots = 1

    def __init__(self) -> None:
        self._done: list[TaskResult] = []

    def can_submit(self) -> bool:
        return not self._done

    def submit(self, sub: Submission) -> None:
        self._done.append(execute(sub))

    def wait(self, timeout: float | None) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        """Nothing runs between calls: Ctrl-C interrupts the task itself."""
