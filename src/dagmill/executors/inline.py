"""Run tasks one at a time in this process (``workers=1``): in-memory outputs work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagmill.executors.base import Executor, Submission, TaskResult, execute

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    slots = 1

    def __init__(self) -> None:
        self._done: list[TaskResult] = []
        self._actions: Mapping[str, Callable[[], Any]] = {}

    def start(self, actions: Mapping[str, Callable[[], Any]]) -> None:
        self._actions = actions

    def can_submit(self) -> bool:
        return not self._done

    def submit(self, sub: Submission) -> None:
        self._done.append(execute(sub, sub.action or self._actions[sub.task_id]))

    def wait(self, timeout: float | None) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        """Nothing runs between calls: Ctrl-C interrupts the task itself."""
