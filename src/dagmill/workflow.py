"""The Python API's facade: preview, run and reset task classes in d6tflow's words
(``Workflow``, ``run``, ``preview``, ``invalidate_*``), over :mod:`dagmill.services`.

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

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagmill import settings
from dagmill.engine import RunResult
from dagmill.errors import DefinitionError, FlowError, ParameterError
from dagmill.frontends.classes import Task, build_graph, flatten
from dagmill.services.execution import ask
from dagmill.services.tasks import make_plan, preview_text, run_tasks, set_dir

__all__ = [
    "Workflow",
    "WorkflowMulti",
    "invalidate_downstream",
    "invalidate_upstream",
    "preview",
    "run",
    "set_dir",
    "show",
    "taskflow_downstream",
    "taskflow_upstream",
]


def preview(
    tasks: Any,
    indent: str = "",
    last: bool = True,
    show_params: bool = True,
    clip_params: bool = False,
) -> None:
    """Print the tree of ``tasks`` and their upstream with COMPLETE / PENDING / STALE."""
    color = os.isatty(1) and "NO_COLOR" not in os.environ
    text = preview_text(tasks, show_params=show_params, clip_params=clip_params, color=color)
    print("\n ===== Execution Preview ===== \n")
    if indent:
        text = "\n".join(indent + line for line in text.splitlines())
    print(text)
    print("\n ===== Execution Preview ===== \n")


# dagmill.run: the d6tflow entry point is the service itself
run = run_tasks


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
        if not ask("Confirm invalidating tasks (y/n) "):
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
        if not ask("Confirm invalidating tasks (y/n) "):
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
