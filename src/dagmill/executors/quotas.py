"""Pure resource admission: a pool with capacity, requests that fit or wait, and why.

>>> from dagmill.model.resources import Resources
>>> pool = ResourcePool(Resources(cpu_milli=2000, memory_bytes=2**30))
>>> a = pool.try_acquire(Resources(cpu_milli=2000))
>>> pool.try_acquire(Resources(cpu_milli=500))
'waiting for cpu: needs 500m, 0 of 2 free'
>>> pool.release(a)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dagmill.errors import ResourceError
from dagmill.model.resources import Resources, format_bytes

__all__ = ["Allocation", "ResourcePool"]


@dataclass(frozen=True, slots=True)
class Allocation:
    request: Resources
    gpu_ids: tuple[int, ...] = ()


def _cpu(m: int) -> str:
    return f"{m // 1000}" if m % 1000 == 0 else f"{m}m"


class ResourcePool:
    """What a run may use at once. Requests larger than the capacity are errors."""

    def __init__(
        self,
        capacity: Resources,
        gpu_ids: Sequence[int] | None = None,
        name: str = "the resource pool",
    ) -> None:
        self.capacity = capacity
        self.name = name  # for messages: "this machine", "the run's pool"
        self._cpu = capacity.cpu_milli
        self._mem = capacity.memory_bytes
        self._gpus = list(gpu_ids if gpu_ids is not None else range(capacity.gpu))
        self._nothing = Allocation(Resources())

    def check(self, request: Resources, who: str) -> None:
        """Raise ResourceError if ``request`` can never fit, naming ``who`` asked."""
        over = request.exceeds(self.capacity)
        if over:
            raise ResourceError(
                f"{who} requests more than {self.name} has ({', '.join(over)}): lower the "
                "task's resources, or give the run a larger pool (--pool cpu=N,memory=Q,gpu=N;"
                " in Python, pool={...})"
            )

    def try_acquire(self, request: Resources) -> Allocation | str:
        """An allocation, or a sentence saying what the request waits for."""
        if request.empty:
            return self._nothing
        if request.cpu_milli > self._cpu:
            return (
                f"waiting for cpu: needs {_cpu(request.cpu_milli)}, "
                f"{_cpu(self._cpu)} of {_cpu(self.capacity.cpu_milli)} free"
            )
        if request.memory_bytes > self._mem:
            return (
                f"waiting for memory: needs {format_bytes(request.memory_bytes)}, "
                f"{format_bytes(self._mem)} of {format_bytes(self.capacity.memory_bytes)} free"
            )
        if request.gpu > len(self._gpus):
            return (
                f"waiting for gpu: needs {request.gpu}, "
                f"{len(self._gpus)} of {self.capacity.gpu} free"
            )
        self._cpu -= request.cpu_milli
        self._mem -= request.memory_bytes
        ids = tuple(self._gpus[: request.gpu])
        del self._gpus[: request.gpu]
        return Allocation(request, ids)

    def release(self, alloc: Allocation) -> None:
        self._cpu += alloc.request.cpu_milli
        self._mem += alloc.request.memory_bytes
        self._gpus.extend(alloc.gpu_ids)
        self._gpus.sort()
