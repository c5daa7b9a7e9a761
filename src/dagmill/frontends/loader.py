"""Resolve ``MODULE:Task`` (a dotted module or a path to a .py file) to a task class."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any

from dagmill.errors import DefinitionError, ParameterError, TaskLoadError
from dagmill.model.params import ParameterValueError
from dagmill.model.runs import RunTarget

if TYPE_CHECKING:
    from dagmill.frontends.classes import Task


def module_file(target: str) -> str | None:
    """The source file behind ``MODULE:Task`` (None for a module without one)."""
    module_ref = target.rpartition(":")[0]
    if module_ref.endswith(".py") or os.sep in module_ref:
        return os.path.abspath(module_ref)
    try:
        spec = importlib.util.find_spec(module_ref)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin != "built-in" else None


def _importable_elsewhere(name: str, path: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin != path


def load_task(target: str) -> type[Task]:

    module_ref, sep, name = target.rpartition(":")
    if not sep or not module_ref or not name:
        raise TaskLoadError(
            f"{target!r}: expected MODULE:TASK, e.g. pipeline.py:Train or my_pkg.flows:Train"
        )
    if module_ref.endswith(".py") or os.sep in module_ref:
        path = os.path.abspath(module_ref)
        if not os.path.isfile(path):
            raise TaskLoadError(f"{module_ref}: no such file")
        mod_name = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.dirname(path)
        if folder not in sys.path:
            # appended, so that the module's neighbours import, but never in place of a
            # library module of the same name (a flows file called numbers.py, say)
            sys.path.append(folder)
        loaded = sys.modules.get(mod_name)
        if loaded is not None and getattr(loaded, "__file__", None) == path:
            return _task_in(loaded, module_ref, name, target)
        if loaded is not None or _importable_elsewhere(mod_name, path):
            mod_name = f"dagmill_user_{mod_name}"
            loaded = sys.modules.get(mod_name)
            if loaded is not None and getattr(loaded, "__file__", None) == path:
                return _task_in(loaded, module_ref, name, target)
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise TaskLoadError(f"{module_ref}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise TaskLoadError(
                f"{module_ref}: importing it failed: {type(e).__name__}: {e}"
            ) from e
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_ref)
        except ImportError as e:
            raise TaskLoadError(f"{module_ref}: cannot import it ({e})") from e
    return _task_in(module, module_ref, name, target)


def _task_in(module: Any, module_ref: str, name: str, target: str) -> type[Task]:
    from dagmill.frontends.classes import Task

    obj = getattr(module, name, None)
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        tasks = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, Task) and v.__module__ == module.__name__
        )
        close = difflib.get_close_matches(name, tasks, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = "is not a task class" if obj is not None else "is not defined there"
        raise TaskLoadError(
            f"{target}: {name!r} {what}{hint}; tasks in {module_ref}: {', '.join(tasks) or 'none'}"
        )
    return obj


def target_task(target: RunTarget) -> Task:
    """The task a run target names, with its parameters, writing under its data folder."""
    from pathlib import Path

    from dagmill import settings

    if target.kind != "python":
        raise TaskLoadError(f"cannot run a {target.kind!r} target with this dagmill")
    if target.data:
        settings.dir = target.data
        settings.dirpath = Path(target.data)
    cls = load_task(target.ref)
    params: dict[str, Any] = dict(target.params)
    if target.slot is not None:
        # the scheduler binds a job's --slot-param by giving it the slot itself: that
        # parameter takes the slot's local date or time (its type says which), not a parse
        # of the ISO string as a value typed on a command line would get
        declared = dict(cls.get_params())
        for name, value in target.params.items():
            if value == target.slot and name in declared:
                try:
                    params[name] = declared[name].from_slot(target.slot)
                except ParameterValueError as e:
                    raise ParameterError(
                        f"{cls.get_task_family()}: parameter {name!r} is bound to the slot but {e}"
                    ) from None
    return cls(**params)


_SAMPLE_SLOT = "2022-03-01T10:05:00+01:00"


def check_slot_param(target: RunTarget, name: str) -> None:
    """Check that the task a job runs can take its slot in parameter ``name`` (a job's
    ``--slot-param``); raise DefinitionError saying what is wrong and how to fix it.

    A date parameter takes the slot's local date, a date-time one its local wall-clock
    time (at its precision), a string parameter the ISO string; other types cannot."""
    if target.kind == "yaml":
        raise DefinitionError(
            f"{target.ref}: --slot-param {name}: a pipeline file gets its slot as "
            "processor.slot() (and DAGMILL_SLOT) in its modules and {slot:...} in data node "
            "sources; --slot-param is for Python tasks"
        )
    if target.kind != "python":
        raise DefinitionError(f"--slot-param {name}: not for a {target.kind!r} target")
    cls = load_task(target.ref)
    family = cls.get_task_family()
    declared = dict(cls.get_params())
    if name not in declared:
        close = difflib.get_close_matches(name, list(declared), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(declared) or "none"
        raise ParameterError(f"{family} has no parameter {name!r}{hint}; its parameters: {known}")
    param = declared[name]
    if not param.significant:
        raise ParameterError(
            f"{family}: parameter {name!r} is not significant (significant=False): every "
            "slot would be one task with one output, so only the first slot would run; "
            "make it significant to get a task (and an output) per slot"
        )
    try:
        param.from_slot(_SAMPLE_SLOT)
    except ParameterValueError:
        raise ParameterError(
            f"{family}: parameter {name!r} is "
            f"{'an' if param.type_name[:1] in 'aeiou' else 'a'} {param.type_name} parameter "
            f"({type(param).__name__}): it cannot take the slot, a date-time like "
            f"{_SAMPLE_SLOT}; bind a DateParameter (the slot's local date), a "
            "DateTimeParameter or DateHourParameter (its local time), or a plain Parameter "
            "(the ISO string)"
        ) from None
