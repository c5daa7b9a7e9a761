"""The run state machine, pure: which tasks are ready, which wait, and on what.

It knows nothing of processes or storage; the engine feeds it events.

    >>> from dagmill.model.graph import Graph
    >>> from dagmill.model.task import TaskSpec
    >>> a = TaskSpec("a", "A", action=print)
    >>> g = Graph.build([a, TaskSpec("b", "B", upstream=("a",), action=print)])
    >>> s = RunState(g, to_run=["a", "b"])
    >>> s.take_ready()
    ['a']
    >>> s.succeed("a")
    ['b']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from dagmill.model.graph import Graph
from dagmill.model.states import FINAL_TASK_STATES, TaskRunStatus

__all__ = ["RunState"]

S = TaskRunStatus


class RunState:
    """Status of every task of one run; tasks not in ``to_run`` are SKIPPED (complete)."""

    def __init__(self, graph: Graph, to_run: Iterable[str]) -> None:
        self.graph = graph
        run_set = set(to_run)
        self.status: dict[str, TaskRunStatus] = {}
        self._blocking: dict[str, int] = {}
        self._ready: deque[str] = deque()
        self._open = 0
        for tid in graph.order:
            if tid not in run_set:
                self.status[tid] = S.SKIPPED
                continue
            n = sum(1 for u in graph.tasks[tid].upstream if u in run_set)
            self._blocking[tid] = n
            self.status[tid] = S.WAITING
            self._open += 1
            if n == 0:
                self._ready.append(tid)

    @property
    def finished(self) -> bool:
        return self._open == 0

    def take_ready(self) -> list[str]:
        """Tasks whose upstream are all done, in graph order; each is handed out once."""
        out = list(self._ready)
        self._ready.clear()
        return out

    def running(self, tid: str) -> None:
        self.status[tid] = S.RUNNING

    def pending(self, tid: str) -> None:
        self.status[tid] = S.PENDING

    def succeed(self, tid: str, status: TaskRunStatus = S.SUCCESS) -> list[str]:
        """Mark success (or SKIPPED: found complete, another run made it); return the
        downstream tasks that became ready."""
        self._close(tid, status)
        ready = []
        for d in self.graph.downstream[tid]:
            if d in self._blocking and self.status[d] is S.WAITING:
                self._blocking[d] -= 1
                if self._blocking[d] == 0:
                    ready.append(d)
        self._ready.extend(ready)
        return ready

    def fail(self, tid: str, status: TaskRunStatus = S.FAILED) -> list[str]:
        """Mark failed (or cancelled); everything downstream becomes UPSTREAM_FAILED."""
        self._close(tid, status)
        hit = []
        stack = list(self.graph.downstream[tid])
        while stack:
            d = stack.pop()
            if self.status.get(d) in (S.WAITING, S.PENDING):
                self._close(d, S.UPSTREAM_FAILED)
                hit.append(d)
                stack.extend(self.graph.downstream[d])
        return hit

    def cancel_open(self) -> list[str]:
        """Cancel every task that has not finished; return them."""
        hit = [t for t, s in self.status.items() if s not in FINAL_TASK_STATES]
        for t in hit:
            self._close(t, S.CANCELLED)
        self._ready.clear()
        return hit

    def _close(self, tid: str, status: TaskRunStatus) -> None:
        if self.status[tid] not in FINAL_TASK_STATES:
            self._open -= 1
        self.status[tid] = status
