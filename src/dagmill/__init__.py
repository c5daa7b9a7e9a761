"""dagmill: task graphs that run only what is incomplete, and say why.

    import dagmill

    class Numbers(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter(default=10)
        def run(self):
            self.save(list(range(self.n)))

    @dagmill.requires(Numbers)
    class Total(dagmill.tasks.TaskJson):
        def run(self):
            self.save(sum(self.inputLoad()))

    flow = dagmill.Workflow(Total, {"n": 100})
    flow.preview()
    flow.run()
    flow.outputLoad()   # 4950

Code written for d6tflow runs with ``import dagmill as d6tflow``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names resolve on first use (PEP 562), so `import dagmill` and `dagmill --help` stay fast
# and pandas/SQL drivers load only when a run needs them.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "": ("runs", "settings", "targets", "tasks"),
    "dagmill.engine": ("RunResult",),
    "dagmill.errors": (
        "CycleError",
        "DagmillError",
        "DefinitionError",
        "OutputError",
        "ParameterError",
        "ResourceError",
        "RunFailed",
        "StoreError",
    ),
    "dagmill.frontends.classes": ("ExternalTask", "Task", "flatten", "inherits", "requires"),
    "dagmill.model.params": (
        "BoolParameter",
        "ChoiceParameter",
        "DateHourParameter",
        "DateMinuteParameter",
        "DateParameter",
        "DateSecondParameter",
        "DateTimeParameter",
        "DictParameter",
        "EnumParameter",
        "FloatParameter",
        "IntParameter",
        "ListParameter",
        "OptionalParameter",
        "Parameter",
        "TupleParameter",
    ),
    "dagmill.workflow": (
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
    ),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dagmill' has no attribute {name!r}")
    value = (
        importlib.import_module(f"dagmill.{name}")
        if module == ""
        else getattr(importlib.import_module(module), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from dagmill import runs, settings, targets, tasks
    from dagmill.engine import RunResult
    from dagmill.errors import (
        CycleError,
        DagmillError,
        DefinitionError,
        OutputError,
        ParameterError,
        ResourceError,
        RunFailed,
        StoreError,
    )
    from dagmill.frontends.classes import ExternalTask, Task, flatten, inherits, requires
    from dagmill.model.params import (
        BoolParameter,
        ChoiceParameter,
        DateHourParameter,
        DateMinuteParameter,
        DateParameter,
        DateSecondParameter,
        DateTimeParameter,
        DictParameter,
        EnumParameter,
        FloatParameter,
        IntParameter,
        ListParameter,
        OptionalParameter,
        Parameter,
        TupleParameter,
    )
    from dagmill.workflow import (
        Workflow,
        WorkflowMulti,
        invalidate_downstream,
        invalidate_upstream,
        preview,
        run,
        set_dir,
        show,
        taskflow_downstream,
        taskflow_upstream,
    )

__version__ = "0.1.0"

__all__ = [
    "BoolParameter",
    "ChoiceParameter",
    "CycleError",
    "DagmillError",
    "DateHourParameter",
    "DateMinuteParameter",
    "DateParameter",
    "DateSecondParameter",
    "DateTimeParameter",
    "DefinitionError",
    "DictParameter",
    "EnumParameter",
    "ExternalTask",
    "FloatParameter",
    "IntParameter",
    "ListParameter",
    "OptionalParameter",
    "OutputError",
    "Parameter",
    "ParameterError",
    "ResourceError",
    "RunFailed",
    "RunResult",
    "StoreError",
    "Task",
    "TupleParameter",
    "Workflow",
    "WorkflowMulti",
    "__version__",
    "flatten",
    "inherits",
    "invalidate_downstream",
    "invalidate_upstream",
    "preview",
    "requires",
    "run",
    "runs",
    "set_dir",
    "settings",
    "show",
    "targets",
    "taskflow_downstream",
    "taskflow_upstream",
    "tasks",
]
