"""d6tflow 0.2.8's documentation examples, run with ``import dagmill as d6tflow``.

Each test is a documented example (README, docs/example-minimal.py, docs/example-ml.md,
run.rst) with the documented output asserted. Deviations that are forced by today's
libraries: sklearn's ``load_boston`` is gone (``load_diabetes`` is used), and pandas 3
needs ``drop('y', axis=1)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sklearn.datasets
import sklearn.ensemble
import sklearn.linear_model
import sklearn.preprocessing

import dagmill as d6tflow

# the minimal example's verbatim df.join(lsuffix=, rsuffix=) is deprecated in pandas 3
pytestmark = pytest.mark.filterwarnings("ignore:The 'lsuffix' and 'rsuffix' keywords")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return _ANSI.sub("", text)


def out_of(capsys: pytest.CaptureFixture[str]) -> str:
    return plain(capsys.readouterr().out)


def tree_lines(text: str) -> list[str]:
    """The lines of a preview tree (the lines that draw a node)."""
    return [ln for ln in text.splitlines() if "--[" in ln]


def assert_lines_in_order(text: str, expected: list[str]) -> None:
    """Every expected line is a whole line of ``text``, in this order."""
    lines = text.splitlines()
    pos = 0
    for want in expected:
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            raise AssertionError(f"line {want!r} not found (in order) in output:\n{text}") from None


def assert_tree(text: str, expected: list[str]) -> None:
    """The preview draws exactly these nodes; a node may carry a trailing ``=> reason``."""
    got = tree_lines(text)
    assert len(got) == len(expected), "expected tree:\n" + "\n".join(expected) + f"\ngot:\n{text}"
    for line, want in zip(got, expected):
        assert line == want or line.startswith(want + " => "), (
            f"expected node {want!r}, got {line!r}; whole tree:\n" + "\n".join(got)
        )


# -- docs/example-minimal.py ---------------------------------------------------------------
def minimal_tasks() -> tuple[Any, Any, Any]:
    # define 2 tasks that load raw data
    class Task1(d6tflow.tasks.TaskCache):
        def run(self):
            df = pd.DataFrame({"a": range(3)})
            self.save(df)  # quickly save dataframe

    class Task2(Task1):
        pass

    # define another task that depends on data from task1 and task2
    @d6tflow.requires({"input1": Task1, "input2": Task2})
    class Task3(d6tflow.tasks.TaskCache):
        multiplier = d6tflow.IntParameter(default=2)

        def run(self):
            df1 = self.input()["input1"].load()  # quickly load input data
            df2 = self.input()["input2"].load()  # quickly load input data
            df = df1.join(df2, lsuffix="1", rsuffix="2")
            df["b"] = df["a1"] * self.multiplier  # use task parameter
            self.save(df)

    return Task1, Task2, Task3


def test_minimal_example_runs_and_loads_the_documented_dataframe(capsys):
    Task1, _Task2, Task3 = minimal_tasks()

    flow = d6tflow.Workflow(Task3)
    flow.run()
    out = out_of(capsys)
    assert_lines_in_order(
        out,
        [
            "Scheduled 3 tasks of which:",
            "* 3 ran successfully:",
            "    - 1 Task1()",
            "    - 1 Task2()",
            "    - 1 Task3(multiplier=2)",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )
    assert "failed" not in out.replace("there were no failed tasks", "")

    df = flow.outputLoad()
    expected = pd.DataFrame({"a1": [0, 1, 2], "a2": [0, 1, 2], "b": [0, 2, 4]})
    pd.testing.assert_frame_equal(df.reset_index(drop=True), expected, check_dtype=False)
    assert list(df.columns) == ["a1", "a2", "b"]
    # "Task1().outputLoad() also works"
    pd.testing.assert_frame_equal(
        Task1().outputLoad(), pd.DataFrame({"a": range(3)}), check_dtype=False
    )


def test_minimal_example_rerun_with_changed_parameter(capsys):
    _Task1, _Task2, Task3 = minimal_tasks()
    d6tflow.Workflow(Task3).run()
    capsys.readouterr()

    # Intelligently rerun workflow after changing parameters
    flow2 = d6tflow.Workflow(Task3, {"multiplier": 3})
    assert flow2.preview() is None
    out = out_of(capsys)
    assert_tree(
        out,
        [
            "└─--[Task3-{'multiplier': '3'} (PENDING)]",
            "   |--[Task1-{} (COMPLETE)]",
            "   └─--[Task2-{} (COMPLETE)]",
        ],
    )

    flow2.run()
    out = out_of(capsys)
    assert_lines_in_order(
        out,
        [
            "Scheduled 3 tasks of which:",
            "* 2 complete ones were encountered:",
            "    - 1 Task1()",
            "    - 1 Task2()",
            "* 1 ran successfully:",
            "    - 1 Task3(multiplier=3)",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )
    assert flow2.outputLoad()["b"].tolist() == [0, 3, 6]
    # the first flow's output is still there, unchanged
    assert d6tflow.Workflow(Task3).outputLoad()["b"].tolist() == [0, 2, 4]

    # everything is complete now: only the root is scheduled, nothing runs
    flow2.run()
    out = out_of(capsys)
    assert_lines_in_order(
        out,
        [
            "Scheduled 1 tasks of which:",
            "* 1 complete ones were encountered:",
            "    - 1 Task3(multiplier=3)",
            "Did not run any tasks",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )
    assert "ran successfully" not in out


# -- docs/example-ml.md (0.2.5+, WorkflowMulti) -------------------------------------------
def ml_tasks() -> tuple[Any, Any, Any]:
    class GetData(d6tflow.tasks.TaskPqPandas):  # save dataframe as parquet
        def run(self):
            ds = sklearn.datasets.load_diabetes()
            df_train = pd.DataFrame(ds.data, columns=ds.feature_names)
            df_train["y"] = ds.target
            self.save(df_train)  # quickly save dataframe

    @d6tflow.requires(GetData)  # define dependency
    class ModelData(d6tflow.tasks.TaskPqPandas):
        do_preprocess = d6tflow.BoolParameter(default=True)  # parameter for preprocessing

        def run(self):
            df_train = self.input().load()  # quickly load required data
            if self.do_preprocess:
                df_train.iloc[:, :-1] = sklearn.preprocessing.scale(df_train.iloc[:, :-1])
            self.save(df_train)

    @d6tflow.requires(ModelData)  # automatically pass parameters upstream
    class ModelTrain(d6tflow.tasks.TaskPickle):  # save output as pickle
        model = d6tflow.Parameter(default="ols")  # parameter for model selection

        def run(self):
            df_train = self.input().load()
            if self.model == "ols":
                model = sklearn.linear_model.LinearRegression()
            elif self.model == "gbm":
                model = sklearn.ensemble.GradientBoostingRegressor(n_estimators=20)
            else:
                raise ValueError("invalid model selection")
            model.fit(df_train.drop("y", axis=1), df_train["y"])
            self.save(model)
            self.saveMeta({"score": model.score(df_train.drop("y", axis=1), df_train["y"])})

    return GetData, ModelData, ModelTrain


def test_ml_example_with_workflow_multi(capsys):
    _GetData, ModelData, ModelTrain = ml_tasks()
    params_model1 = {"do_preprocess": True, "model": "ols"}
    params_model2 = {"do_preprocess": False, "model": "gbm"}

    flow = d6tflow.WorkflowMulti(ModelTrain, {"ols": params_model1, "gbm": params_model2})
    flow.reset_upstream(confirm=False)  # force re-run
    capsys.readouterr()
    flow.preview(flow="ols")  # the docs' flow.preview('ols') fails in d6tflow 0.2.8 too
    out = out_of(capsys)
    nodes = tree_lines(out)
    assert nodes, out
    assert nodes[0].startswith("└─--[ModelTrain-{'do_preprocess': 'True', 'model': 'ols'} ("), out
    assert len(nodes) == 3, out
    assert "ModelData" in nodes[1] and "GetData" in nodes[2], out
    assert all("(PENDING)" in n for n in nodes), out

    results = flow.run()
    assert set(results) == {"ols", "gbm"}
    out = out_of(capsys)
    first, _, second = _split_two(out)
    assert_lines_in_order(
        first,
        [
            "Scheduled 3 tasks of which:",
            "* 3 ran successfully:",
            "    - 1 GetData()",
            "    - 1 ModelData(do_preprocess=True)",
            "    - 1 ModelTrain(do_preprocess=True, model=ols)",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )
    # To run 2nd model, don't need to re-run all tasks, only the ones that changed
    assert_lines_in_order(
        second,
        [
            "Scheduled 3 tasks of which:",
            "* 1 complete ones were encountered:",
            "    - 1 GetData()",
            "* 2 ran successfully:",
            "    - 1 ModelData(do_preprocess=False)",
            "    - 1 ModelTrain(do_preprocess=False, model=gbm)",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )

    data = flow.outputLoadAll()
    assert set(data) == {"ols", "gbm"}
    assert list(data["ols"]) == ["ModelTrain", "ModelData", "GetData"]
    assert isinstance(data["ols"]["ModelTrain"], sklearn.linear_model.LinearRegression)
    assert isinstance(data["gbm"]["ModelTrain"], sklearn.ensemble.GradientBoostingRegressor)
    assert data["ols"]["GetData"].shape == (442, 11)

    scores = flow.outputLoadMeta()
    assert set(scores) == {"ols", "gbm"}
    for name in ("ols", "gbm"):
        assert set(scores[name]) == {"score"}
        assert isinstance(scores[name]["score"], float)
        assert 0 < scores[name]["score"] <= 1
    assert scores["gbm"]["score"] > scores["ols"]["score"]

    # get training data and models
    data_train = flow.outputLoad(task=ModelData)
    models = flow.outputLoad(task=ModelTrain)
    for name in ("ols", "gbm"):
        df = data_train[name]
        score = models[name].score(df.drop("y", axis=1), df["y"])
        assert score == pytest.approx(scores[name]["score"])
    # do_preprocess=True scaled the features; do_preprocess=False left GetData's data as is
    assert data_train["ols"]["bmi"].mean() == pytest.approx(0, abs=1e-9)
    assert data_train["ols"]["bmi"].std(ddof=0) == pytest.approx(1)
    pd.testing.assert_frame_equal(data_train["gbm"], data["gbm"]["GetData"])


def _split_two(out: str) -> tuple[str, str, str]:
    """The two execution summaries WorkflowMulti.run() printed, one per flow."""
    starts = [m.start() for m in re.finditer(r"^Scheduled ", out, flags=re.M)]
    assert len(starts) == 2, f"expected two summaries, got:\n{out}"
    return out[starts[0] : starts[1]], "", out[starts[1] :]


def test_ml_example_preview_after_partial_run(capsys):
    _GetData, _ModelData, ModelTrain = ml_tasks()
    flow = d6tflow.WorkflowMulti(
        ModelTrain,
        {"ols": {"do_preprocess": True, "model": "ols"}, "gbm": {"do_preprocess": False}},
    )
    flow.run(flow="ols")
    capsys.readouterr()
    assert flow.complete() == {"ols": True, "gbm": False}
    flow.preview(flow="gbm")
    out = out_of(capsys)
    assert_tree(
        out,
        [
            "└─--[ModelTrain-{'do_preprocess': 'False', 'model': 'ols'} (PENDING)]",
            "   └─--[ModelData-{'do_preprocess': 'False'} (PENDING)]",
            "      └─--[GetData-{} (COMPLETE)]",
        ],
    )
    tasks = flow.get_task()
    assert repr(tasks["ols"]) == "ModelTrain(do_preprocess=True, model=ols)"
    assert repr(tasks["gbm"]) == "ModelTrain(do_preprocess=False, model=ols)"


# -- README: model comparison ----------------------------------------------------------------
def test_readme_model_comparison(capsys):
    # get training data and save it
    class GetData(d6tflow.tasks.TaskPqPandas):
        persist = ["x", "y"]

        def run(self):
            ds = sklearn.datasets.load_diabetes()
            df_trainX = pd.DataFrame(ds.data, columns=ds.feature_names)
            df_trainY = pd.DataFrame(ds.target, columns=["target"])
            self.save({"x": df_trainX, "y": df_trainY})  # persist/cache training data

    # train different models to compare
    @d6tflow.requires(GetData)  # define dependency
    class ModelTrain(d6tflow.tasks.TaskPickle):
        model = d6tflow.Parameter()  # parameter for model selection

        def run(self):
            df_trainX, df_trainY = self.inputLoad()  # quickly load input data

            if self.model == "ols":  # select model based on parameter
                model = sklearn.linear_model.LinearRegression()
            elif self.model == "gbm":
                model = sklearn.ensemble.GradientBoostingRegressor(n_estimators=20)

            # fit and save model with training score
            model.fit(df_trainX, df_trainY["target"])
            self.save(model)  # persist/cache model
            self.saveMeta({"score": model.score(df_trainX, df_trainY)})  # save model score

    # goal: compare performance of two models
    flow = d6tflow.WorkflowMulti(
        ModelTrain, {"model1": {"model": "ols"}, "model2": {"model": "gbm"}}
    )
    flow.reset_upstream(confirm=False)  # DEMO ONLY: force re-run
    flow.run()  # execute model training including all dependencies
    out = out_of(capsys)
    first, _, second = _split_two(out)
    assert_lines_in_order(
        first,
        [
            "Scheduled 2 tasks of which:",
            "* 2 ran successfully:",
            "    - 1 GetData()",
            "    - 1 ModelTrain(model=ols)",
            "This progress looks :) because there were no failed tasks or missing dependencies",
        ],
    )
    assert_lines_in_order(
        second,
        [
            "Scheduled 2 tasks of which:",
            "* 1 complete ones were encountered:",
            "    - 1 GetData()",
            "* 1 ran successfully:",
            "    - 1 ModelTrain(model=gbm)",
        ],
    )

    scores = flow.outputLoadMeta()  # load model scores
    assert set(scores) == {"model1", "model2"}
    assert all(set(s) == {"score"} and isinstance(s["score"], float) for s in scores.values())
    x, y = GetData().outputLoad()
    assert x.shape == (442, 10) and list(y.columns) == ["target"]
    assert GetData().outputLoad(as_dict=True).keys() == {"x", "y"}


# -- run.rst ---------------------------------------------------------------------------------
def runrst_tasks(calls: list[str], fail: dict[str, bool] | None = None) -> tuple[Any, Any, Any]:
    """The older example-ml tasks that run.rst refers to (small data, so it is fast)."""
    fail = fail if fail is not None else {}

    class TaskGetData(d6tflow.tasks.TaskPqPandas):
        def run(self):
            calls.append("TaskGetData")
            self.save(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.1, 5.9, 8.0]}))

    @d6tflow.requires(TaskGetData)
    class TaskPreprocess(d6tflow.tasks.TaskPqPandas):
        do_preprocess = d6tflow.BoolParameter(default=True)

        def run(self):
            calls.append("TaskPreprocess")
            df = self.inputLoad()
            if self.do_preprocess:
                df["x"] = (df["x"] - df["x"].mean()) / df["x"].std()
            self.save(df)

    @d6tflow.requires(TaskPreprocess)
    class TaskTrain(d6tflow.tasks.TaskPickle):
        def run(self):
            calls.append("TaskTrain")
            if fail.get("train"):
                raise ValueError("training blew up")
            df = self.inputLoad()
            model = sklearn.linear_model.LinearRegression().fit(df[["x"]], df["y"])
            self.save(model)

    return TaskGetData, TaskPreprocess, TaskTrain


def test_run_rst_preview_complete_and_output_path(capsys, data_dir: Path):
    calls: list[str] = []
    _TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks(calls)

    assert TaskTrain().complete() is False
    d6tflow.preview(TaskTrain())
    out = out_of(capsys)
    assert_tree(
        out,
        [
            "└─--[TaskTrain-{'do_preprocess': 'True'} (PENDING)]",
            "   └─--[TaskPreprocess-{'do_preprocess': 'True'} (PENDING)]",
            "      └─--[TaskGetData-{} (PENDING)]",
        ],
    )
    d6tflow.preview([TaskPreprocess(), TaskTrain()])
    assert len(tree_lines(out_of(capsys))) == 5

    d6tflow.run(TaskTrain())
    assert calls == ["TaskGetData", "TaskPreprocess", "TaskTrain"]
    assert TaskTrain().complete() is True
    path = TaskTrain().output().path
    tid = TaskTrain().task_id
    assert tid.startswith("TaskTrain_True_")
    assert Path(path) == data_dir / "TaskTrain" / f"{tid}-data.pkl"
    assert Path(path).is_file()
    assert isinstance(TaskTrain().outputLoad(), sklearn.linear_model.LinearRegression)

    d6tflow.preview(TaskTrain(do_preprocess=False))
    assert_tree(
        out_of(capsys),
        [
            "└─--[TaskTrain-{'do_preprocess': 'False'} (PENDING)]",
            "   └─--[TaskPreprocess-{'do_preprocess': 'False'} (PENDING)]",
            "      └─--[TaskGetData-{} (COMPLETE)]",
        ],
    )


def test_run_rst_forced_reruns_task_and_its_downstream(capsys):
    calls: list[str] = []
    TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks(calls)
    d6tflow.run(TaskTrain())
    calls.clear()

    d6tflow.run([TaskTrain()])  # complete: nothing runs
    assert calls == []
    capsys.readouterr()

    d6tflow.run([TaskTrain()], forced=[TaskGetData()])
    assert calls == ["TaskGetData", "TaskPreprocess", "TaskTrain"]
    out = out_of(capsys)
    assert "* 3 ran successfully:" in out.splitlines(), out

    calls.clear()
    d6tflow.run([TaskTrain()], forced=TaskPreprocess())  # a single task works too
    assert calls == ["TaskPreprocess", "TaskTrain"]

    calls.clear()
    d6tflow.run(TaskTrain(), forced_all=True)  # reruns the given task only
    assert calls == ["TaskTrain"]

    calls.clear()
    d6tflow.run(TaskTrain(), forced_all_upstream=True)  # reruns everything
    assert calls == ["TaskGetData", "TaskPreprocess", "TaskTrain"]


def test_run_rst_invalidate(capsys):
    calls: list[str] = []
    TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks(calls)
    d6tflow.run(TaskTrain())
    paths = {
        t.task_family: Path(t.output().path) for t in (TaskGetData(), TaskPreprocess(), TaskTrain())
    }
    assert all(p.exists() for p in paths.values())

    # a task: only its own output goes; with check_dependencies the downstream is incomplete
    TaskGetData().invalidate(confirm=False)
    assert not paths["TaskGetData"].exists()
    assert paths["TaskPreprocess"].exists() and paths["TaskTrain"].exists()
    assert TaskGetData().complete() is False
    assert TaskTrain().complete() is False
    calls.clear()
    d6tflow.run(TaskTrain())
    assert calls == ["TaskGetData", "TaskPreprocess", "TaskTrain"]
    assert TaskTrain().complete() is True

    # downstream: from TaskPreprocess to TaskTrain, TaskGetData stays
    d6tflow.invalidate_downstream(TaskPreprocess(), TaskTrain())
    assert paths["TaskGetData"].exists()
    assert not paths["TaskPreprocess"].exists() and not paths["TaskTrain"].exists()
    calls.clear()
    d6tflow.run(TaskTrain())
    assert calls == ["TaskPreprocess", "TaskTrain"]

    # upstream: the task and everything it needs
    d6tflow.invalidate_upstream(TaskTrain())
    assert not any(p.exists() for p in paths.values())
    assert TaskGetData().complete() is False
    capsys.readouterr()


def _trained_then_getdata_reset(capsys: pytest.CaptureFixture[str]) -> tuple[Any, Any, Any]:
    TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks([])
    d6tflow.run(TaskTrain())
    TaskGetData().invalidate(confirm=False)
    capsys.readouterr()
    return TaskGetData, TaskPreprocess, TaskTrain


def test_run_rst_check_dependencies_true_preview(capsys):
    _TaskGetData, TaskPreprocess, TaskTrain = _trained_then_getdata_reset(capsys)
    d6tflow.settings.check_dependencies = True  # default
    assert TaskTrain().complete() is False
    assert TaskPreprocess().complete() is False
    d6tflow.preview(TaskTrain())
    # d6tflow prints PENDING for tasks that ran before; dagmill says STALE and why
    assert_tree(
        out_of(capsys),
        [
            "└─--[TaskTrain-{'do_preprocess': 'True'} (STALE)] => upstream "
            "TaskPreprocess-{'do_preprocess': 'True'} will run",
            "   └─--[TaskPreprocess-{'do_preprocess': 'True'} (STALE)] => upstream "
            "TaskGetData-{} will run",
            "      └─--[TaskGetData-{} (PENDING)]",
        ],
    )


def test_run_rst_check_dependencies_false_preview(capsys):
    TaskGetData, TaskPreprocess, TaskTrain = _trained_then_getdata_reset(capsys)
    d6tflow.settings.check_dependencies = False
    assert TaskTrain().complete() is True
    assert TaskPreprocess().complete() is True
    assert TaskGetData().complete() is False
    d6tflow.preview(TaskTrain())
    assert_tree(
        out_of(capsys),
        [
            "└─--[TaskTrain-{'do_preprocess': 'True'} (COMPLETE)]",
            "   └─--[TaskPreprocess-{'do_preprocess': 'True'} (COMPLETE)]",
            "      └─--[TaskGetData-{} (PENDING)]",
        ],
    )


def test_run_rst_failing_task_abort_true_raises(capsys):
    calls: list[str] = []
    fail = {"train": True}
    _TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks(calls, fail)
    d6tflow.run(TaskPreprocess())
    capsys.readouterr()

    with pytest.raises(RuntimeError) as info:
        d6tflow.run(TaskTrain())
    assert isinstance(info.value, d6tflow.RunFailed)
    assert "training blew up" in str(info.value)
    assert TaskTrain().complete() is False
    assert TaskPreprocess().complete() is True

    # the flow recovers once the problem is fixed
    fail["train"] = False
    calls.clear()
    d6tflow.run(TaskTrain())
    assert calls == ["TaskTrain"]
    assert TaskTrain().complete() is True


def test_run_rst_failing_task_abort_false_returns_failed_summary(capsys):
    calls: list[str] = []
    _TaskGetData, TaskPreprocess, TaskTrain = runrst_tasks(calls, {"train": True})
    d6tflow.run(TaskPreprocess())
    capsys.readouterr()

    result = d6tflow.run(TaskTrain(), abort=False)
    assert result is not None
    assert result.ok is False
    assert result.scheduling_succeeded is False
    expected = [
        "Scheduled 2 tasks of which:",
        "* 1 complete ones were encountered:",
        "    - 1 TaskPreprocess(do_preprocess=True)",
        "* 1 failed:",
        "    - 1 TaskTrain(do_preprocess=True)",
        "This progress looks :( because there were failed tasks",
    ]
    assert_lines_in_order(plain(result.summary_text), expected)
    assert_lines_in_order(out_of(capsys), expected)  # and it was printed
