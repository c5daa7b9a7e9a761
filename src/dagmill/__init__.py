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

from dagmill import settings, targets, tasks
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
    DateParameter,
    DateTimeParameter,
    DictParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    Parameter,
)
from dagmill.workflow import (
    Workflow,
    WorkflowMulti,
    invalidate_downstream,
    invalidate_upstream,
    preview,
    run,
    set_dir,
)

__version__ = "0.1.0"

__all__ = [
    "BoolParameter",
    "CycleError",
    "DagmillError",
    "DateParameter",
    "DateTimeParameter",
    "DefinitionError",
    "DictParameter",
    "EnumParameter",
    "ExternalTask",
    "FloatParameter",
    "IntParameter",
    "ListParameter",
    "OutputError",
    "Parameter",
    "ParameterError",
    "ResourceError",
    "RunFailed",
    "RunResult",
    "StoreError",
    "Task",
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
    "set_dir",
    "settings",
    "targets",
    "tasks",
]
