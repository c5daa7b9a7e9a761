"""The Python API's facade: preview, run and reset task classes (d6tflow's API).

>>> import dagmill, tempfile
>>> _ = dagmill.set_dir(tempfile.mkdtemp())
>>> class Hello(dagmill.tasks.TaskJson):
...     name = dagmill.Parameter(default="world")
...     def run(self):
...         self.save({"greeting": f"hello {self.name}"})
>>> flow = dagmill.Workflow(Hello, {"name": "you"})
>>> result = flow.run(execution_summary=False, record=False)
>>> flow.outputLoad()
{'greeting': 'hello you'}
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagmill import settings
from dagmill.engine import Reporter, RunResult, new_run_id, run_plan
from dagmill.errors import DefinitionError, FlowError, ParameterError, ResourceError, RunFailed
from dagmill.executors.base import Executor
from dagmill.executors.capture import secret_values
from dagmill.executors.inline import InlineExecutor
from dagmill.executors.local import LocalExecutor
from dagmill.executors.machine import machine_pool
from dagmill.executors.quotas import ResourcePool
from dagmill.frontends.classes import Task, build_graph, flatten
from dagmill.io.records import RecordBook
from dagmill.model.graph import Graph
from dagmill.model.resources import Resources
from dagmill.model.runs import RunTarget
from dagmill.model.states import TaskRunStatus
from dagmill.plan.planner import Plan, PlanOptions, plan
from dagmill.summary import summary_text, tree_text

__all__ = [
    "Workflow",
    "WorkflowMulti",
    "execute_plan",
    "invalidate_downstream",
    "invalidate_upstream",
    "make_plan",
    "preview",
    "run",
    "set_dir",
    "show",
    "taskflow_downstream",
    "taskflow_upstream",
]

log = logging.getLogger("dagmill")


def set_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    """Set the folder task outputs go to (default ``data``); returns it."""
    if dir is not None:
        settings.dir = os.fspath(dir)
        settings.dirpath = Path(dir)
    return settings.dirpath


def _as_list(tasks: Any, what: str = "tasks") -> list[Task]:
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


def _check_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DefinitionError(
            f"workers: expected a whole number of tasks to run at once (1 or more), got {workers!r}"
        )


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
        chosen = {t.task_id for t in _as_list(forced, "forced")}
        ids |= graph.downstream_closure(chosen & set(graph.tasks))
    return ids


def preview(
    tasks: Any,
    indent: str = "",
    last: bool = True,
    show_params: bool = True,
    clip_params: bool = False,
) -> None:
    """Print the tree of ``tasks`` and their upstream with COMPLETE / PENDING / STALE."""
    roots = _as_list(tasks)
    p, _ = make_plan(roots)
    color = os.isatty(1) and "NO_COLOR" not in os.environ
    print("\n ===== Execution Preview ===== \n")
    text = tree_text(
        p, [t.task_id for t in roots], show_params=show_params, clip_params=clip_params, color=color
    )
    if indent:
        text = "\n".join(indent + line for line in text.splitlines())
    print(text)
    print("\n ===== Execution Preview ===== \n")


class _LogReporter:
    """Logs failures as they happen (with the user's file and line first)."""

    def __init__(self, graph: Graph, inner: Reporter | None) -> None:
        self.graph = graph
        self.inner = inner
        self.errors: dict[str, str] = {}

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
        return ResourcePool(Resources.parse(pool))
    except ValueError as e:
        raise ResourceError(f"resource pool {pool!r}: {e}") from None


def _confirm(question: str) -> bool:
    try:
        return input(question).strip().lower() == "y"
    except EOFError:
        return False


def run(
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
) -> RunResult | None:
    """Run ``tasks`` and whatever they need that is not complete.

    ``forced``: tasks to rerun (with their downstream); ``forced_all``: rerun the given
    tasks; ``forced_all_upstream``: rerun everything. ``workers=N`` runs N tasks at once
    in worker processes. ``pool`` is the resource pool (``{"cpu": 4, "memory": "8Gi"}``;
    default: this machine). ``abort=True`` raises :class:`RunFailed` if a task failed.
    Returns the run's result, or None if ``confirm`` was declined.
    """
    _check_workers(workers)
    roots = _as_list(tasks)
    the_plan, _ = make_plan(roots, forced, forced_all, forced_all_upstream)
    return execute_plan(
        the_plan,
        name
        or ", ".join(t.task_family for t in roots[:3])
        + (f" (+{len(roots) - 3})" if len(roots) > 3 else ""),
        confirm=confirm,
        workers=workers,
        abort=abort,
        execution_summary=execution_summary,
        pool=pool,
        record=record,
        reporter=reporter,
        executor=executor,
        run_id=run_id,
        job_id=job_id,
        target=target,
        attempts=attempts,
    )


def execute_plan(
    the_plan: Plan,
    name: str,
    *,
    confirm: bool = False,
    workers: int = 1,
    abort: bool = True,
    execution_summary: bool | None = None,
    pool: Any = None,
    record: bool | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    run_id: str | None = None,
    job_id: str | None = None,
    target: RunTarget | None = None,
    attempts: Mapping[str, int] | None = None,
) -> RunResult | None:
    """Run a plan from any front door: check it can run, record it, capture its output,
    print the summary. Nothing is written if the plan cannot run (missing inputs,
    resources larger than the pool)."""
    _check_workers(workers)
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
    if confirm and forced_ids:
        print("Tasks to rerun:", ", ".join(graph.tasks[t].label for t in sorted(forced_ids)))
        if not _confirm("Confirm invalidating forced tasks (y/n) "):
            return None
    the_pool = _pool(pool)
    for tid in the_plan.to_run:
        the_pool.check(graph.tasks[tid].resources, graph.tasks[tid].label)
    _check_output_folders(the_plan)
    if executor is None and workers != 1:
        _check_one_process(graph)
    ex = executor or (InlineExecutor() if workers == 1 else LocalExecutor(workers))
    store = None
    log_dir = None
    secrets: list[str] = []
    run_id = run_id or new_run_id()
    if settings.record if record is None else record:
        from dagmill.store import open_store

        store = open_store()
        if settings.capture_logs:
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
        )
    finally:
        if store is not None:
            store.close()
    result.summary_text = summary_text(result)
    show = settings.execution_summary if execution_summary is None else execution_summary
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


show = preview


def taskflow_upstream(task: Task, only_complete: bool = False) -> list[Task]:
    """``task`` and every task it needs, root first (only complete ones if asked)."""
    graph, objs = build_graph([task])
    order = list(reversed(graph.order))
    if only_complete:
        p, _ = make_plan([task])
        order = [t for t in order if not p.tasks[t].runs]
    return [objs[t] for t in order]


def taskflow_downstream(
    task: Task, task_downstream: Task, only_complete: bool = False
) -> list[Task]:
    """The tasks between ``task`` and ``task_downstream`` that depend on ``task``."""
    graph, objs = build_graph([task_downstream])
    if task.task_id not in graph:
        return []
    ids = graph.downstream_closure([task.task_id])
    if only_complete:
        p, _ = make_plan([task_downstream])
        ids = {t for t in ids if not p.tasks[t].runs}
    return [objs[t] for t in graph.order if t in ids]


def invalidate_upstream(task: Task, confirm: bool = False) -> None:
    """Delete the outputs of ``task`` and everything upstream of it."""
    graph, objs = build_graph([task])
    if confirm:
        print("Tasks to invalidate:", ", ".join(repr(objs[t]) for t in graph.order))
        if not _confirm("Confirm invalidating tasks (y/n) "):
            return
    for tid in graph.order:
        objs[tid].reset(confirm=False)


def invalidate_downstream(task: Task, task_downstream: Task, confirm: bool = False) -> bool:
    """Delete the outputs of ``task`` and of what depends on it, up to ``task_downstream``."""
    graph, objs = build_graph([task_downstream])
    if task.task_id not in graph:
        return False
    ids = graph.downstream_closure([task.task_id])
    if confirm:
        print("Tasks to invalidate:", ", ".join(repr(objs[t]) for t in sorted(ids)))
        if not _confirm("Confirm invalidating tasks (y/n) "):
            return False
    for tid in ids:
        objs[tid].reset(confirm=False)
    return True


class Workflow:
    """A task class plus parameters: preview, run, load and reset it and its upstream.

    ``Workflow(Train, {"lr": 0.1})``; methods take an optional task class to act on
    another task of the flow (with the flow's parameters).
    """

    def __init__(
        self,
        task: type[Task] | None = None,
        params: Mapping[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        env: str | None = None,
        *,
        task_cls: type[Task] | None = None,
    ) -> None:
        self.default_task = _task_class(task or task_cls, "Workflow(task=...)")
        if env is not None:
            base = path if path is not None else settings.dirpath
            path = f"{os.fspath(base)}/env={env}"
        self.path = path
        if params is not None and not isinstance(params, Mapping):
            raise FlowError(
                f"Workflow(params=...): expected a dict of parameter values, got "
                f"{type(params).__name__} {params!r}"
            )
        self.params: dict[str, Any] = dict(params or {})
        # other flows the tasks of this one can reach as self.flows[name] (d6tflow)
        self.flows: dict[str, Any] = {}
        self._checked: set[tuple[Any, ...]] = set()

    def set_default(self, task: type[Task]) -> None:
        self.default_task = _task_class(task, "set_default(task)")

    def attach_flow(self, flow: Any = None, flow_name: str = "flow") -> None:
        """Make another flow reachable from this flow's tasks as ``self.flows[flow_name]``
        (d6tflow's sub-flows: a task loads what another flow made)."""
        if not isinstance(flow, Workflow | WorkflowMulti):
            raise FlowError(
                f"attach_flow(flow, {flow_name!r}): expected a Workflow or WorkflowMulti, "
                f"got {type(flow).__name__} {flow!r}"
            )
        self.flows[flow_name] = flow

    def get_task(self, task: type[Task] | None = None) -> Task:
        """An instance of ``task`` (default: the flow's task) with the flow's parameters."""
        cls = _task_class(task, "task") or self.default_task
        if cls is None:
            raise FlowError(
                "no default task set: give it as Workflow(Task, params), with "
                "flow.set_default(Task), or name the task: flow.run(Task)"
            )
        names = set(cls.get_param_names(include_significant=True))
        inst = cls(**{k: v for k, v in self.params.items() if k in names})
        if self.path is not None:
            inst.path = self.path
        if self.flows:
            inst.flows = self.flows
        self._check_params(cls, inst)
        return inst

    def _check_params(self, cls: type[Task], inst: Task) -> None:
        """Every parameter of the flow must belong to a task of the flow: a typo would
        otherwise run everything with defaults."""
        key = (cls, self.default_task, tuple(self.params))
        if not self.params or key in self._checked:
            return
        known = _flow_param_names(inst)
        if self.default_task is not None and self.default_task is not cls:
            names = set(self.default_task.get_param_names(include_significant=True))
            try:
                root = self.default_task(**{k: v for k, v in self.params.items() if k in names})
            except DefinitionError:
                root = None  # get_task(default) reports it
            if root is not None:
                known |= _flow_param_names(root)
        unknown = [k for k in self.params if k not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            flow = cls.get_task_family()
            raise ParameterError(
                f"Workflow({flow}): unknown parameter {unknown[0]!r}{hint}; the tasks of the "
                f"flow take: {', '.join(sorted(known)) or 'no parameters'}"
            )
        self._checked.add(key)

    def _tasks(self, tasks: Any) -> list[Task]:
        if tasks is None:
            return [self.get_task()]
        items = tasks if isinstance(tasks, list | tuple) else [tasks]
        return [t if isinstance(t, Task) else self.get_task(t) for t in items]

    def preview(
        self,
        tasks: Any = None,
        indent: str = "",
        last: bool = True,
        show_params: bool = True,
        clip_params: bool = False,
    ) -> None:
        preview(self._tasks(tasks), indent, last, show_params, clip_params)

    def run(
        self,
        tasks: Any = None,
        forced: Any = None,
        forced_all: bool = False,
        forced_all_upstream: bool = False,
        confirm: bool = False,
        workers: int = 1,
        abort: bool = True,
        execution_summary: bool | None = None,
        **kwargs: Any,
    ) -> RunResult | None:
        if forced is not None:
            forced = [f if isinstance(f, Task) else self.get_task(f) for f in _seq(forced)]
        return run(
            self._tasks(tasks),
            forced,
            forced_all,
            forced_all_upstream,
            confirm,
            workers,
            abort,
            execution_summary,
            **kwargs,
        )

    def complete(self, task: type[Task] | None = None) -> bool:
        return self.get_task(task).complete()

    def output(self, task: type[Task] | None = None) -> Any:
        return self.get_task(task).output()

    def outputPath(self, task: type[Task] | None = None) -> Any:
        out = self.get_task(task).output()
        return {k: v.path for k, v in out.items()} if isinstance(out, Mapping) else out.path

    def outputLoad(
        self,
        task: type[Task] | None = None,
        keys: Any = None,
        as_dict: bool = False,
        cached: bool = False,
    ) -> Any:
        return self.get_task(task).outputLoad(keys=keys, as_dict=as_dict, cached=cached)

    def outputLoadMeta(self, task: type[Task] | None = None) -> Any:
        return self.get_task(task).outputLoadMeta()

    def outputLoadAllMeta(self, task: type[Task] | None = None) -> dict[str, Any]:
        """The metadata of the task and its upstream: ``{family: meta}``."""
        return self.get_task(task).outputLoadAllMeta()

    def outputLoadAll(
        self,
        task: type[Task] | None = None,
        keys: Any = None,
        as_dict: bool = False,
        cached: bool = False,
    ) -> dict[str, Any]:
        """Every task's output, upstream included: ``{family: data}``, root first."""
        graph, objs = build_graph([self.get_task(task)])
        return {
            objs[tid].task_family: objs[tid].outputLoad(keys=keys, as_dict=as_dict, cached=cached)
            for tid in reversed(graph.order)
        }

    def reset(self, task: type[Task] | None = None, confirm: bool = False) -> bool:
        return self.get_task(task).reset(confirm=confirm)

    def reset_upstream(self, task: type[Task] | None = None, confirm: bool = False) -> None:
        invalidate_upstream(self.get_task(task), confirm)

    def reset_downstream(
        self,
        task: type[Task] | None = None,
        task_downstream: type[Task] | None = None,
        confirm: bool = False,
    ) -> bool:
        return invalidate_downstream(self.get_task(task), self.get_task(task_downstream), confirm)


def _seq(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def _task_class(task: Any, where: str) -> type[Task] | None:
    if task is None or (isinstance(task, type) and issubclass(task, Task)):
        return task
    if isinstance(task, str):
        hint = f"pass the class itself (from your_module import {task}), not its name"
    elif isinstance(task, Task):
        hint = f"pass the class {type(task).__name__}, not an instance"
    else:
        hint = "pass a task class"
    raise FlowError(f"{where}: expected a task class, got {type(task).__name__} {task!r}: {hint}")


def _flow_param_names(root: Task) -> set[str]:
    """The parameter names of ``root`` and of every task upstream of it."""
    seen: set[str] = set()
    classes: set[type[Task]] = set()
    stack = [root]
    while stack:
        t = stack.pop()
        if t.task_id in seen:
            continue
        seen.add(t.task_id)
        classes.add(type(t))
        try:
            req = flatten(t._requires())
        except Exception:  # building the graph reports it, with the task and its place
            continue
        stack.extend(r for r in req if isinstance(r, Task) and r.task_id not in seen)
    return {n for c in classes for n in c.get_param_names(include_significant=True)}


class WorkflowMulti:
    """Several flows of one task class with different parameters (experiments).

    ``WorkflowMulti(Train, {"ols": {"model": "ols"}, "gbm": {"model": "gbm"}})``; each
    method takes ``flow=`` to act on one flow, and otherwise returns ``{flow: result}``.
    A dict of lists is expanded into every combination.
    """

    def __init__(
        self,
        task: type[Task] | None = None,
        params: Mapping[Any, Any] | Sequence[Mapping[str, Any]] | None = None,
        path: str | os.PathLike[str] | None = None,
        env: str | None = None,
        *,
        task_cls: type[Task] | None = None,
    ) -> None:
        if not params:
            raise DefinitionError(
                "WorkflowMulti needs parameters per flow, e.g. {'a': {'lr': 0.1}}; "
                "for one flow use dagmill.Workflow"
            )
        if isinstance(params, Mapping):
            first = next(iter(params.values()))
            flows: dict[Any, Any] = _grid(params) if isinstance(first, list) else dict(params)
        elif isinstance(params, list | tuple):
            flows = dict(enumerate(params))
        else:
            raise DefinitionError(
                "WorkflowMulti params must be a dict {flow name: params} or a list of params"
            )
        self.workflow_objs = {
            name: Workflow(task or task_cls, p, path, env) for name, p in flows.items()
        }

    def attach_flow(self, flow: Any = None, flow_name: str = "flow") -> None:
        """``attach_flow`` on every flow (see :meth:`Workflow.attach_flow`)."""
        for w in self.workflow_objs.values():
            w.attach_flow(flow, flow_name)

    def get_flow(self, flow: Any) -> Workflow:
        try:
            return self.workflow_objs[flow]
        except KeyError:
            names = ", ".join(map(str, self.workflow_objs))
            raise FlowError(f"no flow named {flow!r}; flows: {names}") from None

    def _each(self, flow: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if flow is not None:
            return getattr(self.get_flow(flow), method)(*args, **kwargs)
        return {n: getattr(w, method)(*args, **kwargs) for n, w in self.workflow_objs.items()}

    def set_default(self, task: type[Task]) -> None:
        for w in self.workflow_objs.values():
            w.set_default(task)

    def get_task(self, task: type[Task] | None = None, flow: Any = None) -> Any:
        return self._each(flow, "get_task", task)

    def preview(
        self,
        tasks: Any = None,
        flow: Any = None,
        indent: str = "",
        last: bool = True,
        show_params: bool = True,
        clip_params: bool = False,
    ) -> Any:
        return self._each(flow, "preview", tasks, indent, last, show_params, clip_params)

    def run(self, tasks: Any = None, flow: Any = None, **kwargs: Any) -> Any:
        return self._each(flow, "run", tasks, **kwargs)

    def outputLoad(
        self,
        task: type[Task] | None = None,
        flow: Any = None,
        keys: Any = None,
        as_dict: bool = False,
        cached: bool = False,
    ) -> Any:
        return self._each(flow, "outputLoad", task, keys, as_dict, cached)

    def outputPath(self, task: type[Task] | None = None, flow: Any = None) -> Any:
        return self._each(flow, "outputPath", task)

    def outputLoadMeta(self, task: type[Task] | None = None, flow: Any = None) -> Any:
        return self._each(flow, "outputLoadMeta", task)

    def outputLoadAllMeta(self, task: type[Task] | None = None, flow: Any = None) -> Any:
        return self._each(flow, "outputLoadAllMeta", task)

    def outputLoadAll(
        self,
        task: type[Task] | None = None,
        flow: Any = None,
        keys: Any = None,
        as_dict: bool = False,
        cached: bool = False,
    ) -> Any:
        return self._each(flow, "outputLoadAll", task, keys, as_dict, cached)

    def complete(self, task: type[Task] | None = None, flow: Any = None) -> Any:
        return self._each(flow, "complete", task)

    def reset(self, task: type[Task] | None = None, flow: Any = None, confirm: bool = False) -> Any:
        return self._each(flow, "reset", task, confirm)

    def reset_upstream(
        self, task: type[Task] | None = None, flow: Any = None, confirm: bool = False
    ) -> Any:
        return self._each(flow, "reset_upstream", task, confirm)

    def reset_downstream(
        self, task: type[Task] | None = None, flow: Any = None, confirm: bool = False
    ) -> Any:
        return self._each(flow, "reset_downstream", task, None, confirm)


def _grid(params: Mapping[str, list[Any]]) -> dict[str, dict[str, Any]]:
    keys = sorted(params)
    out = {}
    for combo in itertools.product(*(params[k] for k in keys)):
        name = "_".join(f"{k}_{v}" for k, v in zip(keys, combo))
        out[name] = dict(zip(keys, combo))
    return out
