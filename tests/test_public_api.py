"""The public API is a literal ``__all__``, pinned here; importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import dagmill

PINNED = [
    "BoolParameter", "ChoiceParameter", "CycleError", "DagmillError", "DateHourParameter",
    "DateMinuteParameter", "DateParameter", "DateSecondParameter", "DateTimeParameter",
    "DefinitionError", "DictParameter", "EnumParameter", "ExternalTask", "FloatParameter",
    "IntParameter", "ListParameter", "OptionalParameter", "OutputError", "Parameter",
    "ParameterError", "ResourceError", "RunFailed", "RunResult", "StoreError", "Task",
    "TupleParameter", "Workflow", "WorkflowMulti", "__version__", "flatten", "inherits",
    "invalidate_downstream", "invalidate_upstream", "preview", "requires", "run", "runs",
    "set_dir", "settings", "show", "targets", "taskflow_downstream", "taskflow_upstream", "tasks",
]  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(dagmill.__all__) == sorted(PINNED)
    for name in dagmill.__all__:
        assert getattr(dagmill, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        dagmill.Wrokflow  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "Wrokflow" in str(e)
    else:
        raise AssertionError("dagmill.Wrokflow should not exist")


def test_import_loads_no_pandas_no_sql_and_no_rich() -> None:
    code = (
        "import json, sys, dagmill;"
        "print(json.dumps(sorted(m for m in ('pandas', 'pyarrow', 'sqlalchemy', 'sqlite3',"
        " 'rich', 'numpy') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_defining_and_planning_tasks_needs_no_pandas() -> None:
    code = (
        "import json, sys, dagmill\n"
        "class A(dagmill.tasks.TaskPickle):\n"
        "    def run(self): self.save(1)\n"
        "from dagmill.services.tasks import make_plan\n"
        "make_plan([A()])\n"
        "heavy = ('pandas', 'pyarrow', 'sqlalchemy')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_exception_tree() -> None:
    for name in ("ParameterError", "ResourceError", "CycleError"):
        assert issubclass(getattr(dagmill, name), dagmill.DefinitionError)
    assert issubclass(dagmill.DefinitionError, dagmill.DagmillError)
    # d6tflow code catches RuntimeError around runs and loads
    assert issubclass(dagmill.RunFailed, RuntimeError)
    assert issubclass(dagmill.OutputError, RuntimeError)
