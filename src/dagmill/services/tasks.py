"""Python task classes: load, plan, preview, run and choose what to reset (the front door of
``dagmill.Task``; :mod:`dagmill.workflow` wraps it in d6tflow's API).

    task = load_target("flows.py:Train", {"lr": "0.1"}, data_dir="data")
    the_plan, _ = make_plan([task])        # nothing is written
    result = run_tasks([task], workers=2)
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagmill import settings
from dagmill.engine import Reporter, RunResult
from dagmill.errors import DefinitionError
from dagmill.executors.base import Executor
from dagmill.frontends.classes import Task, build_graph, flatten
from dagmill.frontends.loader import load_task
from dagmill.io.records import RecordBook
from dagmill.model.graph import Graph
from dagmill.model.runs import RunTarget
from dagmill.plan.planner import Plan, PlanOptions, plan
from dagmill.services.execution import RunOptions, check_workers, execute_plan
from dagmill.summary import tree_text

__all__ = [
    "load_target",
    "make_plan",
    "preview_text",
    "run_task_list",
    "run_tasks",
    "set_dir",
    "task_list",
    "tasks_to_reset",
]


def set_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    """Set the folder task outputs go to (default ``data``); returns it."""
    if dir is not None:
        settings.dir = os.fspath(dir)
        settings.dirpath = Path(dir)
    return settings.dirpath


def load_target(ref: str, params: Mapping[str, Any], data_dir: str | None = None) -> Task:
    """The task ``MODULE:Task`` names, with ``params``, writing under ``data_dir`` (if given)."""
    if data_dir:
        set_dir(data_dir)
    return load_task(ref)(**params)


def task_list(tasks: Any, what: str = "tasks") -> list[Task]:
    """``tasks`` (one task, or any nesting of lists, tuples and dicts of them) as a list;
    a task class or anything else is an error that says what to pass."""
    items = [tasks] if isinstance(tasks, Task) else list(flatten(tasks))
    for t in items:
        if not isinstance(t, Task):
            hint = (
                f"pass {t.__name__}() rather than {t.__name__}"
                if isinstance(t, type)
                else "pass task instances, e.g. Train()"
            )
            raise DefinitionError(f"{what}: expected task instances, got {t!r}: {hint}")
    return items


def make_plan(
    tasks: Sequence[Task],
    forced: Any = None,
    forced_all: bool = False,
    forced_all_upstream: bool = False,
) -> tuple[Plan, dict[str, Task]]:
    """Build the graph of ``tasks`` and decide what must run (nothing is written).

    ``forced`` tasks rerun with their downstream; ``forced_all`` reruns the given tasks,
    ``forced_all_upstream`` everything.
    """
    # Building and planning allocate one small object after another and free none: the
    # cyclic collector's full passes would find nothing and cost 15% of the time.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        graph, objs = build_graph(tasks)
        forced_ids = _forced_ids(graph, forced, forced_all, forced_all_upstream)
        opts = PlanOptions(settings.check_dependencies, settings.detect_changes)
        return plan(graph, RecordBook(), opts, forced_ids), objs
    finally:
        if was_enabled:
            gc.enable()


def _forced_ids(graph: Graph, forced: Any, forced_all: bool, all_upstream: bool) -> set[str]:
    if all_upstream:
        return set(graph.tasks)
    ids: set[str] = set(graph.targets) if forced_all else set()
    if forced is not None:
        chosen = {t.task_id for t in task_list(forced, "forced")}
        ids |= graph.downstream_closure(chosen & set(graph.tasks))
    return ids


def preview_text(
    tasks: Any, show_params: bool = True, clip_params: bool = False, color: bool = False
) -> str:
    """The tree of ``tasks`` and their upstream with COMPLETE / PENDING / STALE and why."""
    roots = task_list(tasks)
    p, _ = make_plan(roots)
    return tree_text(
        p, [t.task_id for t in roots], show_params=show_params, clip_params=clip_params, color=color
    )


def run_tasks(
    tasks: Any,
    forced: Any = None,
    forced_all: bool = False,
    forced_all_upstream: bool = False,
    confirm: bool = False,
    workers: int = 1,
    abort: bool = True,
    execution_summary: bool | None = None,
    *,
    pool: Any = None,
    record: bool | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    name: str | None = None,
    run_id: str | None = None,
    job_id: str | None = None,
    target: RunTarget | None = None,
    attempts: Mapping[str, int] | None = None,
    project: str | None = None,
) -> RunResult | None:
    """Run ``tasks`` and whatever they need that is not complete.

    ``forced``: tasks to rerun (with their downstream); ``forced_all``: rerun the given
    tasks; ``forced_all_upstream``: rerun everything. ``workers=N`` runs N tasks at once
    in worker processes. ``pool`` is the resource pool (``{"cpu": 4, "memory": "8Gi"}``;
    default: this machine); tasks that declare resources also share their ``project``'s
    quota with every run of the project (default: $DAGMILL_PROJECT, else ``default``:
    this machine's capacity). ``abort=True`` raises :class:`RunFailed` if a task failed.
    Returns the run's result, or None if ``confirm`` was declined. The run's name
    defaults to the tasks' families.
    """
    options = RunOptions(
        workers=workers,
        pool=pool,
        project=project,
        record=record,
        abort=abort,
        execution_summary=execution_summary,
        confirm=confirm,
        forced_all=forced_all,
        forced_all_upstream=forced_all_upstream,
        reporter=reporter,
        executor=executor,
        name=name,
        run_id=run_id,
        job_id=job_id,
        target=target,
        attempts=attempts,
    )
    return run_task_list(tasks, options, forced)


def run_task_list(tasks: Any, options: RunOptions, forced: Any = None) -> RunResult | None:
    """:func:`run_tasks` with its options as one object (the services' way in)."""
    check_workers(options.workers)
    roots = task_list(tasks)
    the_plan, _ = make_plan(roots, forced, options.forced_all, options.forced_all_upstream)
    name = options.name or ", ".join(t.task_family for t in roots[:3]) + (
        f" (+{len(roots) - 3})" if len(roots) > 3 else ""
    )
    return execute_plan(the_plan, name, options)


def tasks_to_reset(task: Task, upstream: bool = False) -> list[Task]:
    """The tasks whose outputs a reset of ``task`` would delete: ``task`` (with
    ``upstream``, everything it needs too), those of them with an output that exists."""
    graph, objs = build_graph([task])
    ids = list(graph.order) if upstream else [task.task_id]
    return [objs[t] for t in ids if any(x.exists() for x in flatten(objs[t].output()))]
