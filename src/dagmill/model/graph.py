"""An immutable, validated task graph.

Validation happens once, when the graph is built: unknown upstream ids, cycles (the
cycle is printed) and data nodes written by two tasks are errors. Selections return new
graphs.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dagmill.errors import CycleError, DefinitionError
from dagmill.model.task import TaskSpec

__all__ = ["Graph"]


@dataclass(frozen=True, slots=True)
class Graph:
    """Tasks by id in topological order (upstream first), with downstream edges."""

    tasks: Mapping[str, TaskSpec]
    order: tuple[str, ...]
    downstream: Mapping[str, tuple[str, ...]]
    targets: tuple[str, ...]

    @classmethod
    def build(cls, specs: Iterable[TaskSpec], targets: Iterable[str] = ()) -> Graph:
        tasks: dict[str, TaskSpec] = {}
        for spec in specs:
            if spec.id in tasks and tasks[spec.id] is not spec:
                continue  # the same task reached twice through different paths
            tasks[spec.id] = spec
        downstream: dict[str, list[str]] = {tid: [] for tid in tasks}
        missing: list[str] = []
        for spec in tasks.values():
            for up in spec.upstream:
                if up not in tasks:
                    missing.append(f"{spec.id} needs {up}")
                else:
                    downstream[up].append(spec.id)
        if missing:
            raise DefinitionError(
                "tasks depend on tasks that are not in the graph: " + "; ".join(missing[:5])
            )
        _check_single_producers(tasks)
        order = _topological(tasks, downstream)
        tgt = tuple(targets) or tuple(t for t in order if not downstream[t])
        return cls(
            tasks=MappingProxyType(tasks),
            order=order,
            downstream=MappingProxyType({k: tuple(v) for k, v in downstream.items()}),
            targets=tgt,
        )

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    def upstream_closure(self, ids: Iterable[str]) -> set[str]:
        """The given tasks and everything they depend on, transitively."""
        seen: set[str] = set()
        stack = list(ids)
        while stack:
            tid = stack.pop()
            if tid not in seen:
                seen.add(tid)
                stack.extend(self.tasks[tid].upstream)
        return seen

    def downstream_closure(self, ids: Iterable[str]) -> set[str]:
        """The given tasks and everything that depends on them, transitively."""
        seen: set[str] = set()
        stack = list(ids)
        while stack:
            tid = stack.pop()
            if tid not in seen:
                seen.add(tid)
                stack.extend(self.downstream[tid])
        return seen

    def subgraph(self, ids: Iterable[str]) -> Graph:
        """A new graph of the given tasks (which must include their upstream)."""
        keep = set(ids)
        return Graph.build(
            (self.tasks[t] for t in self.order if t in keep),
            targets=[t for t in self.targets if t in keep],
        )


def _topological(
    tasks: Mapping[str, TaskSpec], downstream: Mapping[str, list[str]]
) -> tuple[str, ...]:
    """Kahn's algorithm, upstream first; on a cycle, graphlib finds it for the message."""
    waiting = {tid: len(set(s.upstream)) for tid, s in tasks.items()}
    order = [tid for tid, n in waiting.items() if n == 0]
    i = 0
    while i < len(order):
        for d in dict.fromkeys(downstream[order[i]]):
            waiting[d] -= 1
            if waiting[d] == 0:
                order.append(d)
        i += 1
    if len(order) < len(tasks):
        sorter = graphlib.TopologicalSorter({tid: s.upstream for tid, s in tasks.items()})
        try:
            sorter.prepare()
        except graphlib.CycleError as e:
            cycle = list(e.args[1])
            raise CycleError(
                "the task graph has a cycle: "
                + " -> ".join(cycle)
                + ". Remove one of these dependencies.",
                cycle,
            ) from None
    return tuple(order)


def _check_single_producers(tasks: Mapping[str, TaskSpec]) -> None:
    producers: dict[str, str] = {}
    clashes: list[str] = []
    for spec in tasks.values():
        for out in spec.outputs:
            other = producers.setdefault(out.location, spec.id)
            if other != spec.id:
                clashes.append(f"{out.location} (by {other} and {spec.id})")
    if clashes:
        raise DefinitionError(
            "each output must be written by one task only; written twice: "
            + "; ".join(clashes[:5])
            + ". Give the tasks different outputs or parameters."
        )
