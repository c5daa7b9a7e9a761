"""The task spec: one node of a graph, as every front door compiles it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagmill.model.resources import NO_RESOURCES, Resources

__all__ = ["OutputRef", "TaskSpec"]


@dataclass(frozen=True, slots=True)
class OutputRef:
    """One output (data node) of a task: its key, where it lives, and how it is stored.

    ``location`` is a local path or URL for files, or a key for in-memory outputs
    (``kind="memory"``), which only live as long as the process.
    """

    key: str
    location: str
    kind: str = "file"


@dataclass(frozen=True, slots=True, eq=False)
class TaskSpec:
    """A task as the planner and engine see it.

    ``action`` is a picklable zero-argument callable that does the work (``None`` for an
    external task, whose outputs come from outside). ``code`` maps the parts of the task's
    code (``"version"``, or method names) to hashes, so a change can be named.
    ``complete_check`` replaces output-based completion when a task defines its own.
    """

    id: str
    family: str
    params: tuple[tuple[str, str], ...] = ()
    upstream: tuple[str, ...] = ()
    outputs: tuple[OutputRef, ...] = ()
    code: tuple[tuple[str, str], ...] = ()
    action: Callable[[], Any] | None = None
    complete_check: Callable[[], bool] | None = None
    resources: Resources = NO_RESOURCES
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return self.action is None

    @property
    def label(self) -> str:
        """How messages name the task: ``extra["label"]`` if the front door gave one (a
        pipeline's node name), else d6tflow's ``TaskTrain-{'do_preprocess': 'True'}``."""
        given = self.extra.get("label")
        return str(given) if given else f"{self.family}-{dict(self.params)}"
