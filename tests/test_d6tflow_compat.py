"""d6tflow code that runs unchanged: behaviours its own test suite relies on.

Each test follows a file of d6tflow (github.com/d6t/d6tflow), named in its docstring; the
tasks are written the way those tests write them, through ``import dagmill as d6tflow``.
"""

from __future__ import annotations

import logging
from pathlib import Path, PosixPath
from typing import Any

import pandas as pd
import pytest

import dagmill
import dagmill as d6tflow
import dagmill as luigi
from dagmill.errors import OutputError, ParameterError


def quiet(task: Any, **kwargs: Any) -> Any:
    return d6tflow.run(task, execution_summary=False, **kwargs)


def frame(col: str = "a") -> pd.DataFrame:
    return pd.DataFrame({col: range(3)})


# -- a run() that saves nothing ----------------------------------------------------------
class NoSave(d6tflow.tasks.TaskPickle):
    def run(self):
        pass


@d6tflow.requires(NoSave)
class NeedsNoSave(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save(self.inputLoad())


def test_a_run_that_saves_nothing_warns_and_stays_incomplete(caplog: pytest.LogCaptureFixture):
    """luigi's ``check_complete_on_run`` is off by default, so d6tflow runs tasks whose
    run() saves nothing (tests/test_meta.py: ``MetaLoad`` only checks its input)."""
    with caplog.at_level(logging.WARNING, logger="dagmill"):
        result = quiet(NoSave())
    assert result.ok
    assert "NoSave-{}: run() finished without saving output data: the task stays incomplete" in (
        caplog.text
    )
    assert not NoSave().complete()
    assert not Path(NoSave().output().path).exists()
    # incomplete, so it runs again next time (luigi does the same)
    again = quiet(NoSave())
    assert [s.value for s in again.statuses.values()] == ["SUCCESS"]


def test_a_dependent_of_a_task_that_saved_nothing_fails_with_a_clear_error():
    with pytest.raises(dagmill.RunFailed) as e:
        quiet(NeedsNoSave())
    assert e.value.failed == [NeedsNoSave().task_id]
    assert "NeedsNoSave().inputLoad(): input NoSave() has no output at " in str(e.value)
    assert "its run() finished without saving it" in str(e.value)


class CacheNoSave(d6tflow.tasks.TaskCache):
    def run(self):
        pass


class CacheSaves(d6tflow.tasks.TaskCache):
    def run(self):
        self.save(1)


def test_in_memory_outputs_lost_in_a_worker_process_stay_an_error():
    """With workers, an in-memory output is saved in the worker and lost: that is not a
    run() that saved nothing, so it stays an error that says what to do."""
    assert quiet(CacheNoSave()).ok  # inline: nothing saved, a warning
    result = quiet([CacheSaves()], workers=2, abort=False)
    assert not result.ok
    assert "in-memory outputs stay in the worker process" in str(
        result.errors[CacheSaves().task_id]
    )


# -- RuntimeError where d6tflow raises one -----------------------------------------------
class Task1(d6tflow.tasks.TaskCache):
    param1 = d6tflow.IntParameter(default=0)

    def run(self):
        self.save({"hello": self.param1})


def test_no_default_task_is_a_runtime_error():
    """tests/test_workflow.py and tests/test_workflowMulti.py ``test_no_default_expect_error``:
    ``Workflow.get_task`` raises ``RuntimeError('no default tasks set')``."""
    with pytest.raises(RuntimeError, match="no default task set"):
        d6tflow.Workflow(params={"param1": 1}).run()
    with pytest.raises(RuntimeError, match="no default task set"):
        d6tflow.WorkflowMulti(params={"e1": {"param1": 1}, "e2": {"param1": 2}}).run()


def test_loading_before_running_is_a_runtime_error():
    """d6tflow/tasks/__init__.py: outputLoad, outputLoadMeta and outputLoadAllMeta raise
    ``RuntimeError('Cannot load, task not complete, run flow first')``."""
    for load in (Task1().outputLoad, Task1().outputLoadAllMeta):
        with pytest.raises(RuntimeError, match="Cannot load, task not complete, run flow first"):
            load()
    with pytest.raises(RuntimeError, match="No metadata to load for task Task1"):
        Task1().outputLoadMeta()


# -- sub-flows --------------------------------------------------------------------------
class Prices(d6tflow.tasks.TaskPickle):
    scale = d6tflow.IntParameter(default=1)

    def run(self):
        self.save([p * self.scale for p in (1, 2, 3)])


class Features(d6tflow.tasks.TaskPickle):
    def run(self):
        # reaches the attached flow from an upstream task, too
        self.save(sum(self.flows["prices"].outputLoad()))


@d6tflow.requires(Features)
class Report(d6tflow.tasks.TaskJson):
    def run(self):
        self.save({"features": self.inputLoad(), "flows": sorted(self.flows)})


def test_attach_flow_gives_every_task_of_the_flow_the_other_flow():
    """d6tflow/__init__.py ``Workflow.attach_flow(flow, flow_name='flow')`` adds the flow
    to ``params['flows']``, and ``run`` sets ``task.flows`` on the task and its upstream."""
    prices = d6tflow.Workflow(Prices, {"scale": 10})
    prices.run(execution_summary=False)
    report = d6tflow.Workflow(Report)
    report.attach_flow(prices, "prices")
    report.run(execution_summary=False)
    assert report.outputLoad() == {"features": 60, "flows": ["prices"]}
    assert report.get_task(Features).flows["prices"] is prices


def test_attach_flow_on_a_multi_flow_reaches_each_flow():
    prices = d6tflow.WorkflowMulti(Prices, {"small": {"scale": 1}, "big": {"scale": 100}})
    prices.run(execution_summary=False)
    multi = d6tflow.WorkflowMulti(Report, [{}, {}])
    multi.attach_flow(prices.get_flow("big"), "prices")
    assert multi.get_task(flow=1).flows["prices"].outputLoad() == [100, 200, 300]


def test_attached_flows_travel_to_worker_processes():
    prices = d6tflow.Workflow(Prices, {"scale": 2})
    prices.run(execution_summary=False)
    report = d6tflow.Workflow(Report)
    report.attach_flow(prices, "prices")
    report.run(workers=2, execution_summary=False)
    assert report.outputLoad()["features"] == 12


# -- metadata ---------------------------------------------------------------------------
class MetaSave(d6tflow.tasks.TaskCache):
    def run(self):
        df = frame()
        self.save(df)
        self.metaSave({"metadata": df})


class MetaSave2(MetaSave):
    pass


def check_meta(meta: Any) -> None:
    assert meta["metadata"].equals(frame())


@d6tflow.requires(MetaSave)
class MetaLoadSingle(d6tflow.tasks.TaskCache):
    def run(self):
        check_meta(self.metaLoad())


@d6tflow.requires({"upstream1": MetaSave, "upstream2": MetaSave2})
class MetaLoadDict(d6tflow.tasks.TaskCache):
    def run(self):
        meta = self.metaLoad()
        check_meta(meta["upstream1"])
        check_meta(meta["upstream2"])


@d6tflow.requires(MetaSave, MetaSave2)
class MetaLoadList(d6tflow.tasks.TaskCache):
    def run(self):
        meta = self.metaLoad()
        check_meta(meta[0])
        check_meta(meta[1])


class MetaLoadTuple(d6tflow.tasks.TaskCache):
    def requires(self):
        return (MetaSave(), MetaSave2())

    def run(self):
        meta = self.metaLoad()
        check_meta(meta[0])
        check_meta(meta[1])


@pytest.mark.parametrize("task", [MetaLoadSingle, MetaLoadDict, MetaLoadList, MetaLoadTuple])
def test_meta_load_in_every_shape_of_requires(task: type):
    """tests/test_meta.py: ``test_metaLoad_single_input``, ``_multiple_input``,
    ``_multiple_input_tuple``. The loading tasks save nothing, as there."""
    assert quiet(task()).ok


def test_meta_persists_after_run_and_on_the_object(data_dir: Path):
    """tests/test_meta.py ``test_metaSave_persists_after_run``: on disk and ``.metadata``;
    the file is the task's path with key ``meta`` and suffix .pickle (tasks/__init__.py
    ``_get_meta_path``)."""
    ms = MetaSave()
    quiet(ms)
    check_meta(ms.metadata)
    check_meta(ms.outputLoadMeta())
    assert (data_dir / "MetaSave" / "MetaSave__99914b932b-meta.pickle").is_file()
    check_meta(d6tflow.Workflow(MetaSave).outputLoadMeta())


class A(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save(1)
        self.saveMeta({"rows": 1})


@d6tflow.requires(A)
class B(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save(2)  # no metadata: left out


@d6tflow.requires(B)
class C(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save(3)
        self.saveMeta({"score": 0.9})


def test_output_load_all_meta_is_keyed_by_family():
    """d6tflow/tasks/__init__.py ``outputLoadAllMeta``: the metadata of the complete tasks
    of ``taskflow_upstream`` (the task first), ``{task_family: meta}``, tasks without
    metadata left out."""
    quiet(C())
    meta = C().outputLoadAllMeta()
    assert meta == {"A": {"rows": 1}, "C": {"score": 0.9}}
    assert list(meta) == ["C", "A"]
    assert d6tflow.Workflow(C).outputLoadAllMeta() == meta
    assert d6tflow.WorkflowMulti(C, [{}]).outputLoadAllMeta(flow=0) == meta


# -- inputLoad ---------------------------------------------------------------------------
class Single(d6tflow.tasks.TaskPqPandas):
    def run(self):
        self.save(frame("a"))


class Single1(d6tflow.tasks.TaskPqPandas):
    def run(self):
        self.save(frame("b"))


class Single2(d6tflow.tasks.TaskPqPandas):
    def run(self):
        self.save(frame("c"))


class Multiple(d6tflow.tasks.TaskPqPandas):
    persist = ["output1", "output2"]

    def run(self):
        self.save({"output1": frame("ax"), "output2": frame("ay")})


class Multiple1(Multiple):
    pass


class Multiple2(Multiple):
    pass


@d6tflow.requires(Single)
class SingleSingle(d6tflow.tasks.TaskCache):
    def run(self):
        assert self.inputLoad().equals(frame("a"))


@d6tflow.requires(Multiple)
class SingleMultiple(d6tflow.tasks.TaskCache):
    def run(self):
        output1, output2 = self.inputLoad()
        assert output1.equals(frame("ax")) and output2.equals(frame("ay"))
        as_dict = self.inputLoad(as_dict=True)
        assert as_dict["output1"].equals(frame("ax")) and as_dict["output2"].equals(frame("ay"))
        assert self.inputLoad(keys=["output2"])[0].equals(frame("ay"))


@d6tflow.requires({"input1": Single1, "input2": Single2})
class MultipleSingle(d6tflow.tasks.TaskCache):
    def run(self):
        assert self.inputLoad()["input1"].equals(frame("b"))
        assert self.inputLoad()["input2"].equals(frame("c"))
        assert self.inputLoad(task="input2").equals(frame("c"))


@d6tflow.requires({"input1": Multiple1, "input2": Multiple2})
class MultipleMultiple(d6tflow.tasks.TaskCache):
    def run(self):
        data = self.inputLoad(as_dict=True)
        assert data["input1"]["output1"].equals(data["input2"]["output1"])
        assert data["input1"]["output2"].equals(data["input2"]["output2"])
        data1a, data1b = self.inputLoad()["input1"]
        data2a, data2b = self.inputLoad()["input2"]
        assert data1a.equals(data2a) and data1b.equals(data2b)
        data1a, data1b = self.inputLoad(task="input1")
        assert data1a.equals(frame("ax")) and data1b.equals(frame("ay"))
        data1 = self.inputLoad(task="input1", as_dict=True)
        assert data1["output1"].equals(frame("ax")) and data1["output2"].equals(frame("ay"))


@d6tflow.requires(Single, Single)
class ListOfOne(d6tflow.tasks.TaskCache):
    def run(self):
        data = self.inputLoad()
        assert data[0].equals(data[1])


@d6tflow.requires({1: Single, 2: Single})
class IntKeys(d6tflow.tasks.TaskCache):
    def run(self):
        data = self.inputLoad()
        assert data[1].equals(data[2])


@d6tflow.requires(Multiple, Single)
class ListMixed(d6tflow.tasks.TaskCache):
    def run(self):
        data = self.inputLoad(as_dict=True)
        assert data[0]["output1"].equals(frame("ax"))
        assert data[1].equals(frame("a"))
        (out1, out2), single = self.inputLoad()
        assert out1.equals(frame("ax")) and out2.equals(frame("ay")) and single.equals(frame("a"))


class TupleRequires(d6tflow.tasks.TaskCache):
    def requires(self):
        return (Single(), Multiple())

    def run(self):
        single, (out1, out2) = self.inputLoad()
        assert single.equals(frame("a")) and out1.equals(frame("ax")) and out2.equals(frame("ay"))
        assert self.inputLoad(as_dict=True)[1]["output2"].equals(frame("ay"))


@pytest.mark.parametrize(
    "task",
    [SingleSingle, SingleMultiple, MultipleSingle, MultipleMultiple, ListOfOne, IntKeys,
     ListMixed, TupleRequires],
)  # fmt: skip
def test_input_load_in_every_documented_shape(task: type):
    """tests/test_inputLoad.py (single/multiple dependencies x single/multiple outputs,
    ``as_dict``, ``task=``) and tests/test_main.py ``test_tasks`` /
    ``test_multiple_deps_on_input_load`` (``@requires(T, T)``, ``{1: T, 2: T}``)."""
    result = quiet(task(), abort=False)
    assert result.ok, result.errors


# -- output paths -----------------------------------------------------------------------
class PathTask1(d6tflow.tasks.TaskCache):
    def run(self):
        self.save(frame())


@d6tflow.requires(PathTask1)
class PathTask2(d6tflow.tasks.TaskPqPandas):
    path = "data/data2_changed"

    def run(self):
        self.save(self.inputLoad() * 2)


@d6tflow.requires(PathTask2)
class PathTask3(d6tflow.tasks.TaskPqPandas):
    factor = d6tflow.IntParameter(default=3)

    def run(self):
        self.save(self.inputLoad() * self.factor)


class PathTaskMultiOutput(d6tflow.tasks.TaskPqPandas):
    persist = ["xx", "yy"]

    def run(self):
        self.save({"xx": frame("x"), "yy": frame("y")})


def test_output_paths_as_d6tflow_gives_them(isolated: Path):
    """tests/test_workflowMulti.py ``test_workflow_multi_outputPath``: an in-memory output's
    path is a string, a file's a PosixPath; ``WorkflowMulti.outputPath`` is keyed by flow."""
    d6tflow.set_dir("data/")  # relative, as there (the test runs in its own folder)
    flows = d6tflow.WorkflowMulti(
        params={"experiment1": {"factor": 2}, "experiment2": {"factor": 3}}, task=PathTask3
    )
    flows.run(execution_summary=False)
    assert PathTask1().output().path == "data/PathTask1/PathTask1__99914b932b-data.cache"
    assert flows.outputPath(PathTask1) == {
        "experiment1": "data/PathTask1/PathTask1__99914b932b-data.cache",
        "experiment2": "data/PathTask1/PathTask1__99914b932b-data.cache",
    }
    assert flows.outputPath(PathTask2) == {
        "experiment1": PosixPath("data/data2_changed/PathTask2/PathTask2__99914b932b-data.parquet"),
        "experiment2": PosixPath("data/data2_changed/PathTask2/PathTask2__99914b932b-data.parquet"),
    }
    assert flows.outputPath(PathTask3, flow="experiment1") != flows.outputPath(
        PathTask3, flow="experiment2"
    )
    multi = d6tflow.WorkflowMulti(params={"e1": {}, "e2": {}}, task=PathTaskMultiOutput)
    multi.run(execution_summary=False)
    expected = {
        key: PosixPath(f"data/PathTaskMultiOutput/PathTaskMultiOutput__99914b932b-{key}.parquet")
        for key in ("xx", "yy")
    }
    assert multi.outputPath() == {"e1": expected, "e2": expected}
    assert (isolated.parent / expected["xx"]).is_file()


def test_a_flow_parameter_no_task_of_the_flow_has_is_an_error():
    """Departure: d6tflow drops parameters no task declares (its test_workflowMulti.py passes
    ``do_preprocess`` to PathTask3, which has none); dagmill names them, so a typo does not
    run everything with defaults."""
    with pytest.raises(ParameterError, match=r"Workflow\(PathTask3\): unknown parameter "
                                             r"'do_preprocess'; the tasks of the flow take: "
                                             r"factor"):  # fmt: skip
        d6tflow.WorkflowMulti(params={"e1": {"do_preprocess": True}}, task=PathTask3).run()


# -- luigi's parameters -----------------------------------------------------------------
class TaskParam(d6tflow.tasks.TaskCache):
    nrows = luigi.IntParameter(default=10)
    flag = luigi.BoolParameter(default=True)
    label = luigi.OptionalParameter()
    shape = luigi.TupleParameter(default=(2, 3))
    how = luigi.ChoiceParameter(default="mean", choices=["mean", "median"])
    limit = luigi.IntParameter(default=None)

    def run(self):
        self.save(pd.DataFrame({"a": range(self.nrows)}))


def test_luigi_parameters_through_import_dagmill_as_luigi():
    """tests/test_main.py ``test_params``: ``nrows = luigi.IntParameter(default=10)`` on a
    d6tflow task; d6tflow re-exports luigi's parameters, TupleParameter, OptionalParameter
    and ChoiceParameter among them, and luigi takes ``default=None`` for any type."""
    t1, t2 = TaskParam(), TaskParam(nrows=20)
    assert not t1.complete() and not t2.complete()
    quiet(t1)
    assert t1.complete() and not t2.complete()
    assert t1.to_str_params()["limit"] == "None" and t1.label is None
    assert t1.shape == (2, 3) and TaskParam(shape=[1, 2]).shape == (1, 2)
    assert TaskParam(how="median").how == "median"
    with pytest.raises(ParameterError, match=r"'how' expects one of 'mean', 'median', got 'max'"):
        TaskParam(how="max")


def test_a_parameter_of_the_real_luigi_says_how_to_switch():
    FakeLuigiParameter = type("IntParameter", (), {"__module__": "luigi.parameter"})

    class Mixed(d6tflow.tasks.TaskCache):
        nrows = FakeLuigiParameter()

    with pytest.raises(dagmill.DefinitionError, match=r"Mixed.nrows is a luigi.IntParameter, "
                                                      r"which dagmill does not read: write "
                                                      r"`import dagmill as luigi`"):  # fmt: skip
        Mixed()


def test_output_error_is_still_a_runtime_error():
    assert issubclass(OutputError, RuntimeError)
