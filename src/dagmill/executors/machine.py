"""The resources of this machine: the default pool of a local run."""

from __future__ import annotations

import functools
import glob
import os
import re

from dagmill.executors.quotas import ResourcePool
from dagmill.model.resources import Resources

__all__ = ["machine_capacity", "machine_pool"]


def _gpu_ids() -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    return sorted(
        int(m.group(1))
        for p in glob.glob("/dev/nvidia[0-9]*")
        if (m := re.fullmatch(r"/dev/nvidia(\d+)", p))
    )


@functools.cache
def _capacity() -> tuple[Resources, tuple[int, ...]]:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 * 2**30
    gpus = tuple(_gpu_ids())
    cpus = (os.cpu_count() or 1) * 1000
    return Resources(cpu_milli=cpus, memory_bytes=memory, gpu=len(gpus)), gpus


def machine_pool() -> ResourcePool:
    """CPUs, physical memory and GPUs (``CUDA_VISIBLE_DEVICES`` or ``/dev/nvidiaN``)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # may change between runs of one process
        _capacity.cache_clear()
    cap, gpus = _capacity()
    return ResourcePool(cap, gpus, name="this machine")


def machine_capacity() -> Resources:
    """This machine's CPUs, memory and GPUs (the default project's quota)."""
    return _capacity()[0]
