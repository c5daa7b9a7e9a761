"""Python task classes, the d6tflow/luigi way, compiled to a model graph.

    >>> import dagmill
    >>> class Numbers(dagmill.tasks.TaskPickle):
    ...     n = dagmill.IntParameter(default=3)
    ...     def run(self):
    ...         self.save(list(range(self.n)))
    >>> Numbers(n=2).task_id
    'Numbers_2_a5ba1c3a2f'

A task's identity is its family (class name) and its significant parameters; its
outputs are targets under ``settings.dirpath/<Family>/<task_id>-<key>.<ext>``.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, TypeVar

from dagmill import settings
from dagmill.errors import DefinitionError, FlowError, OutputError, ParameterError, ResourceError
from dagmill.frontends.code import class_code, class_location
from dagmill.io import targets as T
from dagmill.io.atomic import atomic_path
from dagmill.model.graph import Graph
from dagmill.model.ids import task_id as make_task_id
from dagmill.model.params import Parameter, ParameterValueError
from dagmill.model.resources import Resources
from dagmill.model.task import OutputRef, TaskSpec

__all__ = [
    "ExternalTask",
    "Task",
    "TaskCSVPandas",
    "TaskCache",
    "TaskCachePandas",
    "TaskData",
    "TaskJson",
    "TaskPickle",
    "TaskPqPandas",
    "build_graph",
    "flatten",
    "inherits",
    "requires",
]

TaskT = TypeVar("TaskT", bound="Task")


def flatten(struct: Any) -> list[Any]:
    """A task, list/tuple or dict of tasks (nested) as a flat list; None is empty."""
    if struct is None:
        return []
    if isinstance(struct, Mapping):
        return [x for v in struct.values() for x in flatten(v)]
    if isinstance(struct, list | tuple | set | frozenset):
        return [x for v in struct for x in flatten(v)]
    return [struct]


def _map_struct(fn: Callable[[Any], Any], struct: Any) -> Any:
    if isinstance(struct, Mapping):
        return {k: _map_struct(fn, v) for k, v in struct.items()}
    if isinstance(struct, list | tuple):
        return [_map_struct(fn, v) for v in struct]
    return fn(struct)


class Task:
    """Base of all task classes: parameters, ``requires()``, ``run()``, outputs.

    Class attributes a task may set: ``persist`` (output keys), ``resources``
    (``{"cpu": 2, "memory": "4Gi", "gpu": 1}``), ``retries``, ``retry_delay`` (seconds,
    doubled each retry), ``timeout`` (seconds), ``version`` (an explicit code version:
    when set, only a change of it makes the task STALE), ``path`` (output root),
    ``target_dir``, ``save_attrib``, ``external``.
    """

    persist: ClassVar[list[str]] = ["data"]
    target_class: ClassVar[type[T.Target]] = T.DataTarget
    target_ext: ClassVar[str] = "ext"
    resources: ClassVar[Mapping[str, Any]] = {}
    retries: ClassVar[int] = 0
    retry_delay: ClassVar[float] = 0.0
    timeout: ClassVar[float | None] = None
    version: ClassVar[str | None] = None
    external: ClassVar[bool] = False
    path: str | os.PathLike[str] | None = None
    metadata: Any = None

    # -- parameters and identity ---------------------------------------------------
    @classmethod
    def get_params(cls) -> list[tuple[str, Parameter]]:
        """(name, Parameter) of every parameter, in declaration order."""
        cached = cls.__dict__.get("_dm_params")
        if cached is not None:
            return list(cached)
        found: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for name, obj in vars(klass).items():
                if isinstance(obj, Parameter):
                    found[name] = obj
                elif type(obj).__module__.startswith("luigi.") and name[:1] != "_":
                    kind = type(obj).__name__
                    if kind.endswith("Parameter"):
                        raise DefinitionError(
                            f"{cls.__name__}.{name} is a luigi.{kind}, which dagmill does not "
                            f"read: write `import dagmill as luigi` instead of `import luigi` "
                            f"(or use dagmill.{kind}) ({_source(cls)})"
                        )
                elif name in found and not isinstance(obj, Parameter):
                    del found[name]  # a subclass replaced the parameter with a plain value
        params = sorted(found.items(), key=lambda kv: kv[1]._order)
        cls._dm_params = tuple(params)  # type: ignore[attr-defined]
        return params

    @classmethod
    def get_param_names(cls, include_significant: bool = False) -> list[str]:
        return [n for n, p in cls.get_params() if include_significant or p.significant]

    @classmethod
    def get_task_family(cls) -> str:
        return cls.__name__

    @property
    def task_family(self) -> str:
        return type(self).get_task_family()

    def __init__(
        self,
        *args: Any,
        path: str | os.PathLike[str] | None = None,
        flows: Any = None,
        **kwargs: Any,
    ) -> None:
        cls = type(self)
        params = cls.get_params()
        family = cls.get_task_family()
        if len(args) > len(params):
            raise ParameterError(
                f"{family}: takes {len(params)} parameters, got {len(args)} positional values"
            )
        names = {n for n, _ in params}
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(names)) or "none"
            raise ParameterError(
                f"{family}: unknown parameter {unknown[0]!r}{hint}; its parameters are: {known}"
            )
        values: dict[str, Any] = {}
        str_params: dict[str, str] = {}
        for i, (name, p) in enumerate(params):
            if i < len(args):
                raw = args[i]
            elif name in kwargs:
                raw = kwargs[name]
            elif p.has_default:
                raw = p.default
            else:
                raise ParameterError(
                    f"{family}: missing parameter {name!r} ({p.type_name}); pass {name}=..."
                )
            try:
                value = p.normalize(raw) if raw is not p.default else raw
            except ParameterValueError as e:
                raise ParameterError(f"{family}: parameter {name!r} {e}") from None
            values[name] = value
            object.__setattr__(self, name, value)
            if p.significant:
                # luigi writes a missing optional value as "None"
                str_params[name] = "None" if value is None else p.serialize(value)
        self.param_kwargs = values
        self._str_params = str_params
        self.task_id = make_task_id(family, str_params)
        self.path = path if path is not None else cls.path
        self.flows = flows
        if hasattr(self, "persists"):
            self.persist = list(self.persists)  # type: ignore[misc]
        self._outputs: tuple[str, Any] | None = None

    def to_str_params(self, only_significant: bool = True) -> dict[str, str]:
        """Canonical strings of the parameters (task identity is made of these)."""
        if only_significant:
            return dict(self._str_params)
        return {n: p.canonical(self.param_kwargs[n]) for n, p in type(self).get_params()}

    def clone(self, cls: type[TaskT] | None = None, **kwargs: Any) -> TaskT:
        """An instance of ``cls`` (default: this class) with the parameters they share."""
        target: type[Any] = cls or type(self)
        names = set(target.get_param_names(include_significant=True))
        args = {n: v for n, v in self.param_kwargs.items() if n in names}
        args.update(kwargs)
        out: TaskT = target(**args)
        if self.path is not None and out.path is None:
            out.path = self.path
        if self.flows is not None and out.flows is None:
            out.flows = self.flows  # d6tflow hands a flow's attached flows to every task
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self._str_params.items())
        return f"{self.task_family}({params})"

    def __reduce__(self) -> tuple[Any, ...]:
        # the output root travels with the task, so a worker writes where the parent reads
        root = os.fspath(self.path) if self.path is not None else os.fspath(settings.dirpath)
        if self.flows is not None:
            return (_restore, (type(self), self.param_kwargs, root, self.flows))
        return (_restore, (type(self), self.param_kwargs, root))

    # -- the user's part -----------------------------------------------------------
    def requires(self) -> Any:
        """The tasks this task needs: a task, a list or a dict of tasks."""
        return []

    def run(self) -> None:
        """Do the work and ``self.save(...)`` the outputs."""

    # -- outputs -----------------------------------------------------------------------
    def _root(self) -> str:
        root = self.path if self.path is not None else settings.dirpath
        if isinstance(root, str):
            return root
        # settings.dirpath is a Path (immutable): its str is kept, not rebuilt per output()
        last = _last_root[0]
        if last[0] is root:
            return last[1]
        text = os.fspath(root)
        if isinstance(root, PurePath):
            _last_root[0] = (root, text)
        return text

    def _getpath(self, key: str, root: str | None = None) -> str:
        folder = getattr(self, "target_dir", None) or self.task_id.split("_")[0]
        with_id = settings.save_with_param and getattr(self, "save_attrib", True)
        name = f"{self.task_id}-{key}" if with_id else key
        return os.path.join(root or self._root(), folder, f"{name}.{self.target_ext}")

    def output(self) -> Any:
        """The target, or ``{key: target}`` when ``persist`` names several outputs."""
        root = self._root()
        if self._outputs is not None and self._outputs[0] == root:
            return self._outputs[1]
        if list(self.persist) == ["data"]:
            out: Any = self.target_class(self._getpath("data", root))
        else:
            out = {k: self.target_class(self._getpath(k, root)) for k in self.persist}
        self._outputs = (root, out)
        return out

    def _requires(self) -> Any:
        # requires() is a pure function of the parameters: ask it once per instance
        try:
            return self.__dict__["_dm_requires"]
        except KeyError:
            req = self.__dict__["_dm_requires"] = self.requires()
            return req

    def input(self) -> Any:
        """The outputs of ``requires()``, in the same shape."""
        return _map_struct(lambda t: t.output(), self._requires())

    def save(self, data: Any, **kwargs: Any) -> None:
        """Save the output(s): one object, or ``{key: object}`` for every key of ``persist``."""
        if list(self.persist) == ["data"]:
            self.output().save(data, **kwargs)
            return
        if not isinstance(data, Mapping) or set(data) != set(self.persist):
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(
                f"{self.task_family}.save() needs a dict with exactly the keys of persist "
                f"{list(self.persist)}, got {got}"
            )
        targets = self.output()
        for k, v in data.items():
            targets[k].save(v, **kwargs)

    def inputLoad(
        self,
        keys: Any = None,
        task: Any = None,
        cached: bool = False,
        as_dict: bool = False,
    ) -> Any:
        """Load the outputs of ``requires()`` (see d6tflow's ``inputLoad``)."""
        try:
            return self._input_load(keys, task, cached, as_dict)
        except OutputError as e:
            missing = [t for t in flatten(self._requires()) if not _outputs_exist(t)]
            if not missing:
                raise
            raise OutputError(
                f"{self!r}.inputLoad(): input {missing[0]!r} has no output at "
                f"{_first_location(missing[0])}: its run() finished without saving it (see the "
                "warning) or it was reset since; check that its run() calls self.save(...)"
            ) from e

    def _input_load(self, keys: Any, task: Any, cached: bool, as_dict: bool) -> Any:
        inputs = self.input()[task] if task is not None else self.input()
        requires_dict = isinstance(self._requires(), Mapping)
        cached = cached or settings.cached

        def load_one(v: Any) -> Any:
            if isinstance(v, Mapping):
                return (
                    {k2: v2.load(cached) for k2, v2 in v.items()}
                    if as_dict
                    else [v2.load(cached) for v2 in v.values()]
                )
            return v.load(cached)

        if isinstance(inputs, Mapping):
            wanted = inputs.keys() if keys is None else ([keys] if isinstance(keys, str) else keys)
            data = {k: load_one(v) for k, v in inputs.items() if k in wanted}
            if isinstance(keys, str) and not as_dict:
                return data[keys]
            if (not requires_dict or task is not None) and not as_dict:
                return list(data.values())
            return data
        if isinstance(inputs, list):
            return [load_one(t) for t in inputs]
        return inputs.load(cached)

    def _output_keys(self, keys: Any, method: str) -> list[str]:
        persist = list(self.persist)
        wanted = persist if keys is None else ([keys] if isinstance(keys, str) else keys)
        if not isinstance(wanted, list | tuple | set | frozenset):
            raise FlowError(
                f"{self.task_family}.{method}(keys={keys!r}): expected an output key or a "
                f"list of them; its outputs are: {', '.join(persist)}"
            )
        unknown = [k for k in wanted if k not in persist]
        if unknown:
            import difflib

            close = difflib.get_close_matches(str(unknown[0]), persist, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FlowError(
                f"{self.task_family}.{method}(keys={keys!r}): no output {unknown[0]!r}{hint}; "
                f"its outputs (persist) are: {', '.join(persist)}"
            )
        return list(wanted)

    def outputLoad(self, keys: Any = None, as_dict: bool = False, cached: bool = False) -> Any:
        """Load this task's output(s)."""
        wanted = self._output_keys(keys, "outputLoad")
        if not _outputs_exist(self):
            raise OutputError(
                f"Cannot load, task not complete, run flow first: {self!r} has no output at "
                f"{_first_location(self)}"
            )
        if list(self.persist) == ["data"]:
            return self.output().load(cached)
        data = {k: v.load(cached) for k, v in self.output().items() if k in wanted}
        if isinstance(keys, str):
            return data[keys]
        return data if as_dict else list(data.values())

    # -- metadata ------------------------------------------------------------------------
    def _meta_path(self) -> Path:
        return Path(self._getpath("meta")).with_suffix(".pickle")

    def saveMeta(self, data: Any) -> None:
        """Save small metadata (scores, counts) beside the outputs."""
        import pickle

        self.metadata = data
        with atomic_path(self._meta_path()) as tmp, open(tmp, "wb") as f:
            pickle.dump(data, f)

    metaSave = saveMeta

    def outputLoadMeta(self) -> Any:
        """Load the metadata this task saved."""
        import pickle

        try:
            with open(self._meta_path(), "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise OutputError(
                f"No metadata to load for task {self.task_family}: run it first, and call "
                "self.saveMeta(...) in its run()"
            ) from None

    def metaLoad(self) -> Any:
        """Load the metadata of the required tasks, in the shape of ``requires()``."""
        return _map_struct(lambda t: t.outputLoadMeta(), self._requires())

    loadMeta = metaLoad

    def outputLoadAllMeta(self) -> dict[str, Any]:
        """The metadata of this task and of every complete task upstream that saved some:
        ``{family: meta}``, in ``taskflow_upstream`` order (d6tflow's ``outputLoadAllMeta``)."""
        if not _outputs_exist(self):
            raise OutputError(
                f"Cannot load, task not complete, run flow first: {self!r} has no output at "
                f"{_first_location(self)}"
            )
        from dagmill.io.records import RecordBook
        from dagmill.plan.planner import PlanOptions, plan

        graph, objs = build_graph([self])
        opts = PlanOptions(settings.check_dependencies, settings.detect_changes)
        done = plan(graph, RecordBook(), opts).tasks
        return {
            objs[t].task_family: objs[t].outputLoadMeta()
            for t in reversed(graph.order)
            if not done[t].runs and objs[t]._meta_path().exists()
        }

    # -- state ---------------------------------------------------------------------------
    def complete(self) -> bool:
        """True when this task (and, with ``check_dependencies``, its upstream) is complete."""
        from dagmill.io.records import RecordBook
        from dagmill.plan.planner import PlanOptions, plan

        graph, _ = build_graph([self])
        opts = PlanOptions(settings.check_dependencies, settings.detect_changes)
        return not plan(graph, RecordBook(), opts).tasks[self.task_id].runs

    def reset(self, confirm: bool = True) -> bool:
        """Delete this task's outputs (asks first unless ``confirm=False``)."""
        if confirm:
            try:
                answer = input(
                    f"Confirm invalidating task: {type(self).__qualname__} (y/n). "
                    "PS You can disable this message by passing confirm=False "
                )
            except EOFError:
                answer = ""
            if answer.strip().lower() != "y":
                print("Nothing deleted.")
                return False
        for target in flatten(self.output()):
            target.invalidate()
        meta = self._meta_path()
        if meta.exists():
            meta.unlink()
        return True

    invalidate = reset

    # -- compilation -------------------------------------------------------------------
    def to_spec(self, upstream: tuple[str, ...]) -> TaskSpec:
        cls = type(self)
        outputs = tuple(OutputRef(k, t.location, t.kind) for k, t in _output_items(self.output()))
        if cls.version is not None:
            code: tuple[tuple[str, str], ...] = (("version", str(cls.version)),)
        else:
            code = class_code(cls, _FRAMEWORK)
        external = cls.external or isinstance(self, ExternalTask)
        own_complete = cls.complete is not Task.complete
        run = _run_settings(self)
        return TaskSpec(
            id=self.task_id,
            family=cls.get_task_family(),
            params=tuple(self._str_params.items()),
            upstream=upstream,
            outputs=outputs,
            code=code,
            action=None if external else self.run,
            complete_check=self.complete if own_complete else None,
            resources=run.resources,
            retries=run.retries,
            retry_delay=run.retry_delay,
            timeout=run.timeout,
            source=_source(cls),
            extra=_EXTRA,
        )


def _restore(cls: type[Task], params: Mapping[str, Any], root: str, flows: Any = None) -> Task:
    task = cls(**params)
    if task.path is None:
        task.path = root
    task.flows = flows
    return task


def _output_items(out: Any) -> list[tuple[str, T.Target]]:
    if isinstance(out, Mapping):
        return [(str(k), v) for k, v in out.items()]
    if isinstance(out, list | tuple):
        return [(str(i), v) for i, v in enumerate(out)]
    if out is None:
        return []
    return [("data", out)]


def _outputs_exist(task: Task) -> bool:
    return all(t.exists() for _, t in _output_items(task.output()))


def _first_location(task: Task) -> str:
    items = _output_items(task.output())
    return items[0][1].location if items else "(no outputs)"


# luigi's check_complete_on_run is off: a run() that saves nothing is a warning and the
# task stays incomplete (the engine reads this; other front doors keep it an error)
_EXTRA: dict[str, Any] = {"missing_output": "warn"}
_SETTINGS = ("resources", "retries", "retry_count", "retry_delay", "timeout")


@dataclass(frozen=True, slots=True)
class _RunSettings:
    """A task class's run settings, checked like the YAML front door checks them."""

    resources: Resources
    retries: int
    retry_delay: float
    timeout: float | None


_settings_cache: dict[type, _RunSettings] = {}
# the last Path a task's outputs were found under, and its str (Task._root)
_last_root: list[tuple[PurePath | None, str]] = [(None, "")]
_source_cache: dict[type, str | None] = {}


def _run_settings(task: Task) -> _RunSettings:
    cls = type(task)
    found = _settings_cache.get(cls)
    if found is not None:
        return found
    found = _check_settings(task)
    # settings written as properties may depend on parameters: those are read per task
    if not any(
        isinstance(inspect.getattr_static(cls, n, None), property | functools.cached_property)
        for n in _SETTINGS
    ):
        _settings_cache[cls] = found
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_settings(task: Task) -> _RunSettings:
    cls = type(task)
    where = f" ({_source(cls)})"

    def read(name: str, default: Any) -> Any:
        try:
            return getattr(task, name, default)
        except Exception as e:
            raise DefinitionError(f"{task!r}.{name} raised {type(e).__name__}: {e}{where}") from e

    spec = read("resources", None)
    if spec is not None and not isinstance(spec, Mapping):
        raise ResourceError(
            f"{cls.__name__}.resources: expected a dict like {{'cpu': 2, 'memory': '4Gi', "
            f"'gpu': 1}}, got {type(spec).__name__} {spec!r}{where}"
        )
    try:
        resources = Resources.parse(spec)
    except ValueError as e:
        raise ResourceError(f"{cls.__name__}.resources: {e}{where}") from None
    retries = read("retries", 0) or read("retry_count", 0) or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise DefinitionError(
            f"{cls.__name__}.retries: expected a whole number >= 0 (attempts after a "
            f"failure), got {retries!r}{where}"
        )
    delay = read("retry_delay", 0.0)
    delay = 0.0 if delay is None else delay
    if not _number(delay) or delay < 0:
        raise DefinitionError(
            f"{cls.__name__}.retry_delay: expected a number of seconds >= 0, got {delay!r}{where}"
        )
    timeout = read("timeout", None)
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        raise DefinitionError(
            f"{cls.__name__}.timeout: expected a number of seconds greater than 0 (or None "
            f"for no timeout), got {timeout!r}{where}"
        )
    return _RunSettings(
        resources, retries, float(delay), None if timeout is None else float(timeout)
    )


def _source(cls: type) -> str | None:
    if cls not in _source_cache:
        _source_cache[cls] = class_location(cls)
    return _source_cache[cls]


class ExternalTask(Task):
    """Data that comes from outside: complete when its outputs exist; never runs."""

    external = True


class TaskData(Task):
    """A task whose outputs are files in a format (the base of the output kinds)."""


class TaskCache(Task):
    """Outputs kept in memory: fast, gone with the process, ``workers=1`` only."""

    target_class = T.CacheTarget
    target_ext = "cache"


class TaskCachePandas(TaskCache):
    """A pandas DataFrame kept in memory."""

    target_class = T.PdCacheTarget


class TaskPickle(TaskData):
    """Any Python object, pickled."""

    target_class = T.PickleTarget
    target_ext = "pkl"


class TaskJson(TaskData):
    """A JSON-able object, as JSON."""

    target_class = T.JsonTarget
    target_ext = "json"


class TaskCSVPandas(TaskData):
    """A pandas DataFrame as CSV."""

    target_class = T.CSVPandasTarget
    target_ext = "csv"


class TaskCSVGZPandas(TaskData):
    """A pandas DataFrame as gzipped CSV."""

    target_class = T.CSVGZPandasTarget
    target_ext = "csv.gz"


class TaskExcelPandas(TaskData):
    """A pandas DataFrame as an Excel sheet (needs openpyxl)."""

    target_class = T.ExcelPandasTarget
    target_ext = "xlsx"


class TaskPqPandas(TaskData):
    """A pandas DataFrame as Parquet."""

    target_class = T.PqPandasTarget
    target_ext = "parquet"


# the framework's own classes: the code of a task is what the user wrote below them
_FRAMEWORK: tuple[type, ...] = tuple(
    c
    for c in list(globals().values())
    if isinstance(c, type) and issubclass(c, Task) and c.__module__ == __name__
)


# -- decorators ---------------------------------------------------------------------------
def _copy_params(target: type[Task], parents: Iterable[type[Task]]) -> None:
    for parent in parents:
        for name, p in parent.get_params():
            if not hasattr(target, name):
                setattr(target, name, p)
    target._dm_params = None  # type: ignore[attr-defined]
    if "_dm_params" in target.__dict__:
        delattr(target, "_dm_params")


def inherits(*tasks: Any) -> Callable[[type[TaskT]], type[TaskT]]:
    """Copy the parameters of ``tasks`` onto the decorated class (luigi/d6tflow).

    A dict ``{key: Task}`` works too. Adds ``clone_parent()`` / ``clone_parents()``.
    """
    parents: list[type[Task]] = (
        list(tasks[0].values()) if tasks and isinstance(tasks[0], Mapping) else list(tasks)
    )
    if not parents or not all(isinstance(p, type) and issubclass(p, Task) for p in parents):
        raise DefinitionError("@inherits(...) takes task classes (or a dict of task classes)")

    def decorate(cls: type[TaskT]) -> type[TaskT]:
        _copy_params(cls, parents)

        def clone_parent(self: Task, **kwargs: Any) -> Task:
            return self.clone(parents[0], **kwargs)

        def clone_parents(self: Task, **kwargs: Any) -> list[Task]:
            return [self.clone(p, **kwargs) for p in parents]

        cls.clone_parent = clone_parent  # type: ignore[attr-defined]
        cls.clone_parents = clone_parents  # type: ignore[attr-defined]
        return cls

    return decorate


def requires(*tasks: Any) -> Callable[[type[TaskT]], type[TaskT]]:
    """Depend on ``tasks`` and take their parameters (luigi/d6tflow ``@requires``).

    One class → ``requires()`` returns one task; several → a list; a dict
    ``{key: Task}`` → a dict, so ``self.inputLoad(task=key)`` works.
    """
    if tasks and isinstance(tasks[0], Mapping):
        mapping: dict[Any, type[Task]] = dict(tasks[0])

        def decorate_dict(cls: type[TaskT]) -> type[TaskT]:
            inherits(mapping)(cls)

            def requires_(self: Task) -> dict[Any, Task]:
                return {k: self.clone(c) for k, c in mapping.items()}

            cls.requires = requires_  # type: ignore[method-assign]
            return cls

        return decorate_dict

    def decorate(cls: type[TaskT]) -> type[TaskT]:
        inherits(*tasks)(cls)

        def requires_(self: Task) -> Any:
            if len(tasks) == 1:
                return self.clone(tasks[0])
            return [self.clone(t) for t in tasks]

        cls.requires = requires_  # type: ignore[method-assign]
        return cls

    return decorate


# -- compilation ----------------------------------------------------------------------
def build_graph(roots: Iterable[Task]) -> tuple[Graph, dict[str, Task]]:
    """Walk ``requires()`` from the roots and compile every task to a TaskSpec."""
    roots = list(roots)
    for r in roots:
        if not isinstance(r, Task):
            raise DefinitionError(
                f"expected task instances, got {type(r).__name__} {r!r}: "
                "pass Train() rather than Train"
            )
    tasks: dict[str, Task] = {}
    deps: dict[str, tuple[str, ...]] = {}
    stack = list(reversed(roots))
    while stack:
        t = stack.pop()
        if t.task_id in tasks:
            continue
        tasks[t.task_id] = t
        try:
            req = flatten(t._requires())
        except DefinitionError:
            raise
        except Exception as e:
            raise DefinitionError(
                f"{t!r}.requires() raised {type(e).__name__}: {e} ({_source(type(t))})"
            ) from e
        for r in req:
            if not isinstance(r, Task):
                raise DefinitionError(
                    f"{t!r}.requires() returned {type(r).__name__} {r!r}: return a task, "
                    f"a list or a dict of tasks ({_source(type(t))})"
                )
        deps[t.task_id] = tuple(dict.fromkeys(r.task_id for r in req))
        stack.extend(reversed([r for r in req if r.task_id not in tasks]))
    specs = [t.to_spec(deps[tid]) for tid, t in tasks.items()]
    graph = Graph.build(specs, targets=list(dict.fromkeys(r.task_id for r in roots)))
    return graph, tasks
