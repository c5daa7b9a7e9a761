"""Resource requests and pools in Kubernetes quantity syntax (``500m``, ``128Mi``, ``2Gi``).

>>> Resources.parse({"cpu": "500m", "memory": "2Gi", "gpu": 1})
Resources(cpu=0.5, memory='2Gi', gpu=1)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_RESOURCES", "Resources", "format_bytes", "format_cpu", "parse_cpu", "parse_memory"]

_MEM_UNITS = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_cpu(value: str | int | float) -> int:
    """CPU as millicores: ``"500m"`` → 500, ``2`` → 2000, ``"1.5"`` → 1500."""
    if isinstance(value, bool):
        raise ValueError(f"cpu: expected a number like 2 or '500m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"cpu: must not be negative, got {value!r}")
        return _whole_milli(value * 1000, value)
    m = _QUANTITY.match(str(value))
    if not m or m.group(2) not in ("", "m"):
        raise ValueError(f"cpu: expected a number like 2 or '500m', got {value!r}")
    n = float(m.group(1))
    return _whole_milli(n if m.group(2) == "m" else n * 1000, value)


def _whole_milli(milli: float, value: object) -> int:
    # as Kubernetes: a CPU is counted in whole millicores (0.0001 was silently 0)
    if abs(milli - round(milli)) > 1e-6:
        raise ValueError(f"cpu: {value!r} is finer than a millicore (1m = 0.001 CPU)")
    return round(milli)


def parse_memory(value: str | int) -> int:
    """Memory as bytes: ``"128Mi"`` → 134217728, ``"1G"`` → 10**9, ``1024`` → 1024."""
    if isinstance(value, bool):
        raise ValueError(f"memory: expected a size like '512Mi' or '4Gi', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"memory: must not be negative, got {value!r}")
        return value
    m = _QUANTITY.match(str(value))
    if not m or m.group(2) not in _MEM_UNITS:
        raise ValueError(
            f"memory: expected a size like '512Mi' or '4Gi' (units Ki Mi Gi Ti, k M G T), "
            f"got {value!r}"
        )
    return round(float(m.group(1)) * _MEM_UNITS[m.group(2)])


def format_bytes(n: int) -> str:
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:.0f}{unit}" if v.is_integer() else f"{v:.1f}{unit}"
    return f"{n}"


def format_cpu(milli: int) -> str:
    return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"


@dataclass(frozen=True, slots=True)
class Resources:
    """A request (or a pool's capacity): CPU in millicores, memory in bytes, whole GPUs."""

    cpu_milli: int = 0
    memory_bytes: int = 0
    gpu: int = 0

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Resources:
        """Build from ``{"cpu": ..., "memory": ..., "gpu": ...}``; unknown keys are errors."""
        if not spec:
            return NO_RESOURCES
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"expected a dict like {{'cpu': 2, 'memory': '4Gi', 'gpu': 1}}, "
                f"got {type(spec).__name__} {spec!r}"
            )
        unknown = set(spec) - {"cpu", "memory", "gpu"}
        if unknown:
            raise ValueError(f"unknown resource {sorted(unknown)[0]!r}: use cpu, memory and gpu")
        gpu = spec.get("gpu", 0)
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
            try:
                gpu = int(str(gpu))
                if gpu < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"gpu: expected a whole number of GPUs, got {gpu!r}") from None
        return cls(
            cpu_milli=parse_cpu(spec.get("cpu", 0)),
            memory_bytes=parse_memory(spec.get("memory", 0)),
            gpu=gpu,
        )

    def plus(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli + other.cpu_milli,
            self.memory_bytes + other.memory_bytes,
            self.gpu + other.gpu,
        )

    @property
    def empty(self) -> bool:
        return not (self.cpu_milli or self.memory_bytes or self.gpu)

    def exceeds(self, capacity: Resources) -> list[str]:
        """What this request wants beyond ``capacity`` (empty when it fits)."""
        out = []
        if self.cpu_milli > capacity.cpu_milli:
            out.append(f"cpu {format_cpu(self.cpu_milli)} > {format_cpu(capacity.cpu_milli)}")
        if self.memory_bytes > capacity.memory_bytes:
            out.append(
                f"memory {format_bytes(self.memory_bytes)} > {format_bytes(capacity.memory_bytes)}"
            )
        if self.gpu > capacity.gpu:
            out.append(f"gpu {self.gpu} > {capacity.gpu}")
        return out

    def to_record(self) -> dict[str, Any]:
        """Exact, for storage (``to_dict`` rounds memory for people: 1.5Gi)."""
        return {"cpu": f"{self.cpu_milli}m", "memory": self.memory_bytes, "gpu": self.gpu}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.cpu_milli:
            d["cpu"] = format_cpu(self.cpu_milli)
        if self.memory_bytes:
            d["memory"] = format_bytes(self.memory_bytes)
        if self.gpu:
            d["gpu"] = self.gpu
        return d

    def __repr__(self) -> str:
        return (
            f"Resources(cpu={self.cpu_milli / 1000:g}, memory={format_bytes(self.memory_bytes)!r},"
            f" gpu={self.gpu})"
        )


NO_RESOURCES = Resources()
