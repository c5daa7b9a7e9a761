"""Bad input to the Python front door: one clear error naming the task and the setting or
parameter, raised before anything runs or is recorded, never a raw TypeError/AttributeError.

Checks mirror the YAML front door's (``frontends/pipeline/spec.py``: ``retries >= 0``,
``timeout > 0``, resources in Kubernetes quantities).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import dagmill
from dagmill.errors import DefinitionError, FlowError, ParameterError, ResourceError
from dagmill.services.tasks import make_plan

BAD_SETTINGS = Path(__file__).parent / "flows" / "bad_settings.py"


class Numbers(dagmill.tasks.TaskPickle):
    n = dagmill.IntParameter(default=3)

    def run(self):
        self.save(list(range(self.n)))


@dagmill.requires(Numbers)
class Total(dagmill.tasks.TaskJson):
    def run(self):
        self.save(sum(self.inputLoad()))


def quiet_run(task: Any, **kwargs: Any) -> Any:
    return dagmill.run(task, execution_summary=False, **kwargs)


def nothing_recorded(root: Path) -> bool:
    return not (root / ".dagmill").exists() and not (root / "data").exists()


# -- resources ---------------------------------------------------------------------------
class Sized(dagmill.tasks.TaskPickle):
    big = dagmill.BoolParameter(default=False)

    @property
    def resources(self) -> dict[str, Any]:  # type: ignore[override]
        # luigi allows resources to depend on parameters
        return {"cpu": 2 if self.big else 1, "memory": "1Gi" if self.big else "256Mi"}

    def run(self):
        self.save(self.big)


def test_resources_may_be_a_property_of_the_parameters():
    plan, _ = make_plan([Sized(big=True), Sized(big=False)])
    by_big = {s.params: s.resources for s in plan.graph.tasks.values()}
    assert by_big[(("big", "True"),)].cpu_milli == 2000
    assert by_big[(("big", "False"),)].cpu_milli == 1000
    assert by_big[(("big", "False"),)].memory_bytes == 256 * 2**20
    assert quiet_run(Sized(big=True), pool={"cpu": 4, "memory": "4Gi"}).ok
    assert Sized(big=True).outputLoad() is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", r"Wrong.resources: expected a dict like \{'cpu': 2"),
        (["cpu", 2], r"Wrong.resources: expected a dict"),
        ({"cpu": "two"}, r"Wrong.resources: cpu: expected a number like 2 or '500m', got 'two'"),
        ({"disk": "1Gi"}, r"Wrong.resources: unknown resource 'disk'"),
    ],
    ids=["string", "list", "bad-cpu", "unknown-key"],
)
def test_wrong_resources_name_the_task(value: Any, message: str, isolated: Path):
    class Wrong(dagmill.tasks.TaskPickle):
        @property
        def resources(self) -> Any:  # type: ignore[override]
            return value

        def run(self):
            self.save(0)

    with pytest.raises(ResourceError, match=message):
        quiet_run(Wrong())
    assert nothing_recorded(isolated.parent)


def test_a_resources_property_that_raises_names_the_task():
    class Raises(dagmill.tasks.TaskPickle):
        @property
        def resources(self) -> Any:  # type: ignore[override]
            raise KeyError("gpu_count")

        def run(self):
            self.save(0)

    with pytest.raises(DefinitionError, match=r"Raises\(\).resources raised KeyError"):
        make_plan([Raises()])


# -- retries, timeout --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("timeout", "soon", r"Bad.timeout: expected a number of seconds greater than 0 .* "
                            r"got 'soon'"),
        ("timeout", 0, r"Bad.timeout: expected a number of seconds greater than 0"),
        ("timeout", True, r"Bad.timeout: .* got True"),
        ("retries", -3, r"Bad.retries: expected a whole number >= 0 .* got -3"),
        ("retries", "2", r"Bad.retries: expected a whole number >= 0 .* got '2'"),
        ("retry_delay", "1s", r"Bad.retry_delay: expected a number of seconds >= 0, got '1s'"),
    ],
    ids=["timeout-str", "timeout-zero", "timeout-bool", "retries-negative", "retries-str",
         "delay-str"],
)  # fmt: skip
def test_wrong_run_settings_fail_before_anything_runs(
    name: str, value: Any, message: str, isolated: Path
):
    ran: list[str] = []
    Bad = type(
        "Bad", (dagmill.tasks.TaskPickle,), {name: value, "run": lambda self: ran.append("x")}
    )
    with pytest.raises(DefinitionError, match=message):
        quiet_run(Bad())
    assert ran == []
    assert nothing_recorded(isolated.parent)


def test_valid_run_settings_reach_the_task_spec():
    class Good(dagmill.tasks.TaskPickle):
        timeout = 30
        retries = 2
        retry_delay = 0.5

        def run(self):
            self.save(0)

    spec = next(iter(make_plan([Good()])[0].graph.tasks.values()))
    assert (spec.timeout, spec.retries, spec.retry_delay) == (30.0, 2, 0.5)


def test_cli_run_with_a_wrong_setting_exits_2_and_records_nothing(tmp_path: Path):
    env = {**os.environ, "DAGMILL_HOME": os.fspath(tmp_path / ".dagmill"), "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", "run", f"{BAD_SETTINGS}:Soon"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Soon.timeout: expected a number of seconds greater than 0" in out.stderr
    assert "bad_settings.py:" in out.stderr  # where the class is
    assert "Traceback" not in out.stderr
    assert nothing_recorded(tmp_path)


# -- parameters of a flow ------------------------------------------------------------------
def test_unknown_flow_parameter_is_an_error_with_a_suggestion(isolated: Path):
    flow = dagmill.Workflow(Total, {"nn": 100})
    with pytest.raises(ParameterError, match=r"Workflow\(Total\): unknown parameter 'nn' "
                                             r"\(did you mean 'n'\?\)"):  # fmt: skip
        flow.run(execution_summary=False)
    with pytest.raises(ParameterError, match="unknown parameter 'nn'"):
        flow.preview()
    assert nothing_recorded(isolated.parent)


class Up(dagmill.tasks.TaskPickle):
    size = dagmill.IntParameter(default=1)

    def run(self):
        self.save(self.size)


class Down(dagmill.tasks.TaskPickle):
    def requires(self):
        return Up()

    def run(self):
        self.save(self.inputLoad())


def test_a_flow_parameter_of_an_upstream_task_is_not_unknown():
    flow = dagmill.Workflow(Down, {"size": 5})
    flow.run(execution_summary=False)
    assert flow.outputLoad() == 1  # Down's requires() makes its own Up(): d6tflow's rule
    assert flow.get_task(Up).size == 5  # the flow hands it to Up when asked for Up


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dagmill.Workflow("Total"), r"Workflow\(task=...\): expected a task class, "
                                            r"got str 'Total': pass the class itself"),
        (lambda: dagmill.Workflow(Total()), r"pass the class Total, not an instance"),
        (lambda: dagmill.Workflow(Total).get_task("Numbers"), r"task: expected a task class"),
        (lambda: dagmill.Workflow(Total).set_default(42), r"set_default\(task\): expected a "
                                                          r"task class, got int 42"),
        (lambda: dagmill.Workflow(Total, ["n", 3]), r"params=...\): expected a dict"),
        (lambda: dagmill.Workflow(Total).attach_flow("other"), r"expected a Workflow"),
        (lambda: dagmill.WorkflowMulti(Total, {"a": {}}).get_flow("b"), r"no flow named 'b'"),
    ],
    ids=["name", "instance", "get-task-name", "set-default", "params-list", "attach",
         "no-flow"],
)  # fmt: skip
def test_workflow_misuse_is_a_flow_error(make: Any, message: str):
    with pytest.raises(FlowError, match=message) as e:
        make()
    assert isinstance(e.value, RuntimeError)  # d6tflow code that catches it keeps working


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": "two"}, r"workers: expected a whole number .* got 'two'"),
        ({"workers": 0}, r"workers: expected a whole number .* got 0"),
        ({"forced": Numbers}, r"forced: expected task instances, .* pass Numbers\(\) rather "
                              r"than Numbers"),
    ],
    ids=["workers-str", "workers-zero", "forced-class"],
)  # fmt: skip
def test_run_arguments_are_checked(kwargs: dict[str, Any], message: str, isolated: Path):
    with pytest.raises(DefinitionError, match=message):
        quiet_run(Total(), **kwargs)
    assert nothing_recorded(isolated.parent)


def test_run_given_a_class_says_to_pass_an_instance():
    with pytest.raises(DefinitionError, match=r"pass Total\(\) rather than Total"):
        quiet_run(Total)


def test_a_bad_parameter_default_names_the_class_and_parameter():
    with pytest.raises(ParameterError, match=r"Counted: the default of parameter 'n' is wrong: "
                                             r"expects an integer, got 'x' \(.*"
                                             r"test_python_errors.py:\d+\)"):  # fmt: skip

        class Counted(dagmill.tasks.TaskPickle):
            n = dagmill.IntParameter(default="x")

    with pytest.raises(ParameterError, match=r"IntParameter\(default='x'\): expects an integer"):
        dagmill.IntParameter(default="x")


def test_output_load_of_an_unknown_key_names_the_task():
    with pytest.raises(FlowError, match=r"Total.outputLoad\(keys=\['nope'\]\): no output "
                                        r"'nope'; its outputs \(persist\) are: data"):  # fmt: skip
        Total().outputLoad(keys=["nope"])
    with pytest.raises(FlowError, match=r"expected an output key or a list"):
        Total().outputLoad(keys=3)


def test_a_pool_that_is_not_a_dict_is_a_resource_error(isolated: Path):
    with pytest.raises(ResourceError, match=r"resource pool 'lots': expected a dict like"):
        quiet_run(Total(), pool="lots")
    assert nothing_recorded(isolated.parent)
