"""The benchmark task shapes, shared by the bench scripts (the same as ../shared/peers/).

chain N: task i needs task i-1; fanout N: 1 root -> N leaves -> 1 join. Every task
writes a small pickle. Built after ``import dagmill`` so that import can be timed apart.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def shapes(dagmill: Any) -> SimpleNamespace:
    class Chain(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        i = dagmill.IntParameter()

        def requires(self):  # type: ignore[no-untyped-def]
            return Chain(i=self.i - 1) if self.i > 0 else []

        def run(self) -> None:
            self.save((self.inputLoad() if self.i > 0 else 0) + 1)

    class Root(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        def run(self) -> None:
            self.save(1)

    class Leaf(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        i = dagmill.IntParameter()

        def requires(self):  # type: ignore[no-untyped-def]
            return Root()

        def run(self) -> None:
            self.save(self.inputLoad() + self.i)

    class Join(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        n = dagmill.IntParameter()

        def requires(self):  # type: ignore[no-untyped-def]
            return [Leaf(i=i) for i in range(self.n)]

        def run(self) -> None:
            self.save(sum(self.inputLoad()))

    return SimpleNamespace(Chain=Chain, Root=Root, Leaf=Leaf, Join=Join)


def final_task(s: SimpleNamespace, shape: str, n: int) -> Any:
    return s.Chain(i=n - 1) if shape == "chain" else s.Join(n=n)


def expected(shape: str, n: int) -> int:
    return n if shape == "chain" else n + n * (n - 1) // 2
