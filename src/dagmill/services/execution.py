"""Running a plan, whichever front door made it: check it can run, record it, capture its
output, print the summary.

    the_plan, _ = dagmill.services.tasks.make_plan([Train()])
    result = execute_plan(the_plan, "Train", RunOptions(workers=2, project="ml"))

Nothing is written if the plan cannot run (missing inputs, an unknown project, resources
larger than the project's quota or the pool,
output folders that cannot be written).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagmill import settings
from dagmill.engine import Reporter, RunResult, new_run_id, run_plan
from dagmill.errors import DefinitionError, ResourceError, RunFailed
from dagmill.executors.base import Executor
from dagmill.executors.capture import secret_values
from dagmill.executors.inline import InlineExecutor
from dagmill.executors.local import LocalExecutor
from dagmill.executors.machine import machine_capacity, machine_pool
from dagmill.executors.quotas import ResourcePool
from dagmill.io.records import RecordBook
from dagmill.model.graph import Graph
from dagmill.model.projects import DEFAULT_PROJECT, project_limits
from dagmill.model.resources import Resources
from dagmill.model.runs import RunTarget
from dagmill.model.states import TaskRunStatus
from dagmill.model.task import TaskSpec
from dagmill.plan.planner import Plan
from dagmill.store import Store
from dagmill.summary import summary_text

__all__ = [
    "RunOptions",
    "ask",
    "check_quota",
    "check_workers",
    "execute_plan",
    "named_requests",
]

log = logging.getLogger("dagmill")


def ask(question: str) -> bool:
    """Whether the user answers y on the terminal (no terminal input: no)."""
    try:
        return input(question).strip().lower() == "y"
    except EOFError:
        return False


def check_workers(workers: Any) -> None:
    """``workers`` is a whole number of tasks to run at once, 1 or more."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DefinitionError(
            f"workers: expected a whole number of tasks to run at once (1 or more), got {workers!r}"
        )


def _check_output_folders(the_plan: Plan) -> None:
    """The local folders the tasks to run write into (and their records) exist or can be
    made, and can be written: a --data folder under a file or a read-only one is bad
    input, said before anything is recorded (it was a traceback from the first write)."""
    tasks = the_plan.graph.tasks
    folders = {
        out.location.rpartition(os.sep)[0]  # the dirname of an absolute path, cheaper
        for tid in the_plan.to_run
        for out in tasks[tid].outputs
        if out.kind == "file" and "://" not in out.location
    }
    folders.discard("")
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"{folder!r} is read-only")
        except OSError as e:
            raise DefinitionError(
                f"cannot write task outputs in {folder}: {e.strerror or e}: pass --data "
                "(in Python, dagmill.set_dir) with a folder you can write to"
            ) from None


def _check_one_process(graph: Graph) -> None:
    """memory:// data nodes live in one process: worker processes would each see their
    own (the run failed with "did not write output", saying nothing of why). In-memory
    task outputs (TaskCache) keep their own error, which says what to do, at run time."""
    for spec in graph.tasks.values():
        for out in spec.outputs:
            if out.kind != "memory" and out.location.startswith("memory://"):
                raise DefinitionError(
                    f"{spec.label}: {out.location} lives in one process: run with --workers 1"
                )


class _LogReporter:
    """Logs failures as they happen (with the user's file and line first)."""

    def __init__(self, graph: Graph, inner: Reporter | None) -> None:
        self.graph = graph
        self.inner = inner

    def run_started(self, run_id: str, p: Plan) -> None:
        log.info("run %s: %d tasks, %d to run", run_id, len(p.graph), len(p.to_run))
        if self.inner is not None:
            self.inner.run_started(run_id, p)

    def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None:
        if status is TaskRunStatus.FAILED:
            log.error("%s failed: %s", self.graph.tasks[task_id].label, detail)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s", task_id, status.value, detail)
        if self.inner is not None:
            self.inner.task_changed(task_id, status, detail)


def _pool(pool: Any) -> ResourcePool:
    if pool is None:
        return machine_pool()
    if isinstance(pool, ResourcePool):
        return pool
    if isinstance(pool, Resources):
        return ResourcePool(pool)
    try:
        given = Resources.parse(pool)
    except ValueError as e:
        raise ResourceError(f"resource pool {pool!r}: {e}") from None
    # what the pool does not name is this machine's ({"cpu": 4} leaves memory alone)
    machine = machine_capacity()
    return ResourcePool(
        Resources(
            given.cpu_milli if "cpu" in pool else machine.cpu_milli,
            given.memory_bytes if "memory" in pool else machine.memory_bytes,
            given.gpu if "gpu" in pool else machine.gpu,
        ),
        name="the run's pool",
    )


def named_requests(tasks: Iterable[TaskSpec]) -> dict[str, Resources]:
    """What the tasks that declare resources request, by task label."""
    return {s.label: s.resources for s in tasks if not s.resources.empty}


def check_quota(
    store: Store,
    project: str,
    requests: Iterable[tuple[str, Resources]],
    machine: Resources | None = None,
) -> None:
    """Refuse a project that does not exist, and a task that asks for more than its
    project's whole quota (it could never start): DefinitionError, naming the task and
    the resource. ``requests``: (task label, request) pairs; ``machine``: what the
    default project's quota leaves unlimited is (this machine's capacity, or a run's
    pool)."""
    info = store.get_project(project)
    if info is None:
        raise DefinitionError(
            f"project {project!r} does not exist: create it with "
            f"`dagmill projects create {project} --cpu N --memory SIZE`, or run in another "
            "(--project, DAGMILL_PROJECT)"
        )
    limits = project_limits(project, info.quota, machine or machine_capacity())
    for label, request in requests:
        over = limits.too_big(request)
        if over:
            where = "this machine's capacity" if project == DEFAULT_PROJECT else "its quota"
            raise ResourceError(
                f"{label} requests more than project {project}'s whole quota "
                f"({', '.join(over)}; the project's limit is {where}): lower the task's "
                f"resources, or raise the quota with `dagmill projects set {project} ...`"
            )


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run is run: one object from the face that starts it (CLI, server, Python)
    down to :func:`execute_plan`.

    ``workers``: tasks at once; ``pool``: what the run may use here (default: this
    machine); ``project``: whose quota its tasks share (default: ``settings.project()``);
    ``forced_all`` / ``forced_all_upstream``: run the targets / everything again;
    ``abort``: raise RunFailed if a task failed; ``run_id``, ``job_id``, ``target``,
    ``attempts``: a queued or resumed run's identity and history."""

    workers: int = 1
    pool: Any = None
    project: str | None = None
    record: bool | None = None
    abort: bool = True
    execution_summary: bool | None = None
    confirm: bool = False
    forced_all: bool = False
    forced_all_upstream: bool = False
    reporter: Reporter | None = None
    executor: Executor | None = None
    name: str | None = None
    run_id: str | None = None
    job_id: str | None = None
    target: RunTarget | None = None
    attempts: Mapping[str, int] | None = None


def execute_plan(the_plan: Plan, name: str, options: RunOptions) -> RunResult | None:
    """Run a plan from any front door: check it can run, record it, capture its output,
    print the summary. Nothing is written if the plan cannot run (missing inputs,
    resources larger than the pool or than the project's whole quota). Returns None if
    ``options.confirm`` was declined."""
    workers, pool, record, abort = options.workers, options.pool, options.record, options.abort
    executor, reporter, target = options.executor, options.reporter, options.target
    run_id, job_id, attempts = options.run_id, options.job_id, options.attempts
    check_workers(workers)
    logging.getLogger("dagmill").setLevel(settings.log_level.upper())
    graph = the_plan.graph
    forced_ids = [t for t in graph.order if the_plan.tasks[t].reason == "forced"]
    missing = [graph.tasks[t] for t in the_plan.to_run if the_plan.tasks[t].missing_input]
    if missing:
        raise DefinitionError(
            "missing inputs: "
            + "; ".join(f"{s.label}: {the_plan.tasks[s.id].reason}" for s in missing[:5])
            + ". Create them, or run the tasks that make them."
        )
    if options.confirm and forced_ids:
        print("Tasks to rerun:", ", ".join(graph.tasks[t].label for t in sorted(forced_ids)))
        if not ask("Confirm invalidating forced tasks (y/n) "):
            return None
    the_pool = _pool(pool)
    store = None
    log_dir = None
    secrets: list[str] = []
    run_id = run_id or new_run_id()
    project = options.project or settings.project()

    def check_here() -> None:
        for tid in the_plan.to_run:
            the_pool.check(graph.tasks[tid].resources, graph.tasks[tid].label)
        _check_output_folders(the_plan)
        if executor is None and workers != 1:
            _check_one_process(graph)

    recorded = settings.record if record is None else record
    if project == DEFAULT_PROJECT or not recorded:
        check_here()  # before the record is opened: bad input creates nothing
    if recorded:
        from dagmill.store import open_store

        store = open_store()
        try:
            # a named project first (it may not exist; its quota is the lasting limit),
            # then what this run may use here
            requests = named_requests(graph.tasks[t] for t in the_plan.to_run)
            check_quota(store, project, requests.items(), the_pool.capacity)
            if project != DEFAULT_PROJECT:
                check_here()
        except DefinitionError:
            store.close()
            raise
    ex = executor or (InlineExecutor() if workers == 1 else LocalExecutor(workers))
    if store is not None and settings.capture_logs:
        log_dir = settings.logs_dir(run_id)
        secrets = secret_values()
    try:
        result = run_plan(
            the_plan,
            ex,
            pool=the_pool,
            records=RecordBook(),
            store=store,
            name=name,
            reporter=_LogReporter(graph, reporter),
            options={"workers": workers, "targets": [graph.tasks[t].label for t in graph.targets]},
            run_id=run_id,
            job_id=job_id,
            target=target,
            log_dir=log_dir,
            secrets=secrets,
            attempts=attempts,
            project=project,
            server_id=settings.server_id(),
        )
    finally:
        if store is not None:
            store.close()
    result.summary_text = summary_text(result)
    show = options.execution_summary
    if show is None:
        show = settings.execution_summary
    if show:
        print(result.summary_text)
    if abort and not result.ok:
        failed = result.with_status(TaskRunStatus.FAILED)
        first = result.errors.get(failed[0]) if failed else None
        raise RunFailed(
            f"run {result.run_id} failed: {len(failed)} task(s) failed"
            + (f"; first: {graph.tasks[failed[0]].label}: {first}" if first else "")
            + (f"\n{first.traceback}" if first and first.traceback else ""),
            result.run_id,
            failed,
        )
    return result
