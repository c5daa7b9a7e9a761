"""Projects and their resource quota, shared by every run of the project.

A quota limits what the project's running tasks may request at once, summed over every
run and every server. A resource the quota does not name is not limited, except in the
project ``default``, where it is this machine's capacity (``Quota.over``).

>>> q = Quota.parse({"cpu": 2, "memory": "4Gi"})
>>> q.too_big(Resources(cpu_milli=3000))
['cpu 3 > 2']
>>> q.lacks(Resources(cpu_milli=1500), Resources(cpu_milli=1000))
'cpu 1.5 of 2'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagmill.model.resources import Resources, format_bytes, format_cpu

__all__ = [
    "DEFAULT_PROJECT",
    "Lease",
    "LeaseWait",
    "ProjectInfo",
    "ProjectUsage",
    "Quota",
    "check_project_name",
    "project_limits",
]

DEFAULT_PROJECT = "default"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$")


def check_project_name(name: str) -> str:
    """A project name: lower-case letters, digits, ``-`` and ``_``, 1-64 characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"project name {name!r}: use lower-case letters, digits, '-' and '_' "
            "(1 to 64 characters, starting and ending with a letter or digit)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Quota:
    """What a project's running tasks may request at once; None: not limited."""

    cpu_milli: int | None = None
    memory_bytes: int | None = None
    gpu: int | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Quota:
        """From ``{"cpu": 8, "memory": "16Gi", "gpu": 1}`` (a key absent or None: not
        limited)."""
        if not spec:
            return cls()
        given = {k: v for k, v in spec.items() if v is not None}
        r = Resources.parse(given)
        return cls(
            r.cpu_milli if "cpu" in given else None,
            r.memory_bytes if "memory" in given else None,
            r.gpu if "gpu" in given else None,
        )

    @property
    def unlimited(self) -> bool:
        return self.cpu_milli is None and self.memory_bytes is None and self.gpu is None

    def over(self, machine: Resources) -> Quota:
        """This quota with what it leaves unlimited taken from ``machine`` (the default
        project's quota is the machine's capacity)."""
        return Quota(
            machine.cpu_milli if self.cpu_milli is None else self.cpu_milli,
            machine.memory_bytes if self.memory_bytes is None else self.memory_bytes,
            machine.gpu if self.gpu is None else self.gpu,
        )

    def merged(self, change: Quota, unset: tuple[str, ...] = ()) -> Quota:
        """This quota with ``change``'s limits applied and the resources named in
        ``unset`` (cpu, memory, gpu) made unlimited."""
        cpu = self.cpu_milli if change.cpu_milli is None else change.cpu_milli
        mem = self.memory_bytes if change.memory_bytes is None else change.memory_bytes
        gpu = self.gpu if change.gpu is None else change.gpu
        return Quota(
            None if "cpu" in unset else cpu,
            None if "memory" in unset else mem,
            None if "gpu" in unset else gpu,
        )

    def too_big(self, request: Resources) -> list[str]:
        """What ``request`` wants beyond the whole quota (it could never start)."""
        out = []
        if self.cpu_milli is not None and request.cpu_milli > self.cpu_milli:
            out.append(f"cpu {format_cpu(request.cpu_milli)} > {format_cpu(self.cpu_milli)}")
        if self.memory_bytes is not None and request.memory_bytes > self.memory_bytes:
            out.append(
                f"memory {format_bytes(request.memory_bytes)} > {format_bytes(self.memory_bytes)}"
            )
        if self.gpu is not None and request.gpu > self.gpu:
            out.append(f"gpu {request.gpu} > {self.gpu}")
        return out

    def lacks(self, used: Resources, request: Resources) -> str | None:
        """The first resource without room for ``request`` beside ``used``, as
        ``"cpu 1.5 of 2"`` (in use of the quota); None if it fits."""
        if self.cpu_milli is not None and used.cpu_milli + request.cpu_milli > self.cpu_milli:
            return f"cpu {_cpu_num(used.cpu_milli)} of {_cpu_num(self.cpu_milli)}"
        if (
            self.memory_bytes is not None
            and used.memory_bytes + request.memory_bytes > self.memory_bytes
        ):
            return f"memory {format_bytes(used.memory_bytes)} of {format_bytes(self.memory_bytes)}"
        if self.gpu is not None and used.gpu + request.gpu > self.gpu:
            return f"gpu {used.gpu} of {self.gpu}"
        return None

    def lacks_kept(self, used: Resources, kept: Resources, request: Resources) -> str | None:
        """As ``lacks``, with ``kept`` set aside for another task: ``"cpu 1 of 2 in use,
        1 kept"``; None if it fits beside both."""
        if self.lacks(used.plus(kept), request) is None:
            return None
        if self.cpu_milli is not None and (
            used.cpu_milli + kept.cpu_milli + request.cpu_milli > self.cpu_milli
        ):
            return (
                f"cpu {_cpu_num(used.cpu_milli)} of {_cpu_num(self.cpu_milli)} in use, "
                f"{_cpu_num(kept.cpu_milli)} kept"
            )
        if self.memory_bytes is not None and (
            used.memory_bytes + kept.memory_bytes + request.memory_bytes > self.memory_bytes
        ):
            return (
                f"memory {format_bytes(used.memory_bytes)} of {format_bytes(self.memory_bytes)}"
                f" in use, {format_bytes(kept.memory_bytes)} kept"
            )
        return f"gpu {used.gpu} of {self.gpu} in use, {kept.gpu} kept"

    def to_record(self) -> dict[str, Any]:
        """The limits set, exact, for storage (``to_dict`` rounds memory for people)."""
        d: dict[str, Any] = {}
        if self.cpu_milli is not None:
            d["cpu"] = f"{self.cpu_milli}m"
        if self.memory_bytes is not None:
            d["memory"] = self.memory_bytes
        if self.gpu is not None:
            d["gpu"] = self.gpu
        return d

    def to_dict(self) -> dict[str, Any]:
        """The limits set, as ``{"cpu": "4", "memory": "16Gi", "gpu": 1}``."""
        d: dict[str, Any] = {}
        if self.cpu_milli is not None:
            d["cpu"] = format_cpu(self.cpu_milli)
        if self.memory_bytes is not None:
            d["memory"] = format_bytes(self.memory_bytes)
        if self.gpu is not None:
            d["gpu"] = self.gpu
        return d


def _cpu_num(milli: int) -> str:
    """CPUs as a person says them: 3.5, 4, 0.25."""
    return f"{milli / 1000:g}"


def project_limits(project: str, quota: Quota, machine: Resources) -> Quota:
    """A project's quota as enforced: in ``default``, what it leaves unlimited is
    ``machine`` (this machine's capacity, or a run's pool)."""
    return quota.over(machine) if project == DEFAULT_PROJECT else quota


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project: the unit of quota that jobs and runs belong to."""

    name: str
    quota: Quota
    created_at: float
    description: str = ""
    updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A running task's admitted request, held against its project's quota."""

    project: str
    run_id: str
    task_id: str
    attempt: int
    request: Resources
    owner: str  # host:pid of the engine that runs the task
    admitted_at: float
    heartbeat_at: float
    server_id: str | None = None
    run_name: str = ""


@dataclass(frozen=True, slots=True)
class LeaseWait:
    """A task waiting for room in its project, and why."""

    project: str
    run_id: str
    task_id: str
    attempt: int
    request: Resources
    owner: str
    since: float
    reason: str
    heartbeat_at: float
    server_id: str | None = None
    run_name: str = ""


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    """A project now: its quota (``limits``: as enforced, the default project's filled in
    from the machine), what its running tasks hold, and what waits."""

    project: ProjectInfo
    limits: Quota
    used: Resources
    leases: list[Lease] = field(default_factory=list)
    waits: list[LeaseWait] = field(default_factory=list)
