"""d6tflow 0.2.8's API surface, used through ``import dagmill as d6tflow``.

Output kinds, multiple outputs, ``inputLoad``/``outputLoad`` shapes, output paths and
task ids, decorators, parameters, Workflow / WorkflowMulti and ``run``'s result.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dagmill
import dagmill as d6tflow

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return _ANSI.sub("", text)


def sample_df() -> pd.DataFrame:
    return pd.DataFrame(
        {"i": [1, 2, 3], "f": [0.5, 1.5, -2.25], "s": ["a", "b", "c"], "b": [True, False, True]}
    )


# -- output kinds ----------------------------------------------------------------------------
KINDS = [
    ("TaskCache", "cache"),
    ("TaskCachePandas", "cache"),
    ("TaskPickle", "pkl"),
    ("TaskJson", "json"),
    ("TaskCSVPandas", "csv"),
    ("TaskPqPandas", "parquet"),
]


def make_task(base_name: str, value: Any) -> type:
    base = getattr(d6tflow.tasks, base_name)

    class Out(base):
        def run(self):
            self.save(value)

    return Out


@pytest.mark.parametrize(("kind", "ext"), KINDS)
def test_every_output_kind_round_trips_a_dataframe(kind: str, ext: str, data_dir: Path):
    if kind == "TaskJson":
        value: Any = sample_df().to_dict(orient="list")  # JSON holds plain objects
    else:
        value = sample_df()
    Out = make_task(kind, value)
    assert Out().complete() is False
    d6tflow.run(Out(), execution_summary=False)
    assert Out().complete() is True
    loaded = Out().outputLoad()
    if kind == "TaskJson":
        assert loaded == value
    else:
        pd.testing.assert_frame_equal(loaded, value)
    path = Path(Out().output().path)
    assert path == data_dir / "Out" / f"Out__99914b932b-data.{ext}"
    if kind.startswith("TaskCache"):
        assert not path.exists()  # in memory only: no file
    else:
        assert path.is_file()


@pytest.mark.parametrize("kind", ["TaskCache", "TaskPickle", "TaskJson"])
@pytest.mark.parametrize(
    "value",
    [{"v": 3, "w": [1, 2]}, [1, "two", 3.0], "text", 42],
    ids=["dict", "list", "str", "int"],
)
def test_object_outputs_round_trip(kind: str, value: Any):
    Out = make_task(kind, value)
    d6tflow.run(Out(), execution_summary=False)
    assert Out().outputLoad() == value


def test_json_file_holds_data_key_like_d6tflow():
    Out = make_task("TaskJson", {"v": 3})
    d6tflow.run(Out(), execution_summary=False)
    text = Path(Out().output().path).read_text()
    assert json.loads(text) == {"data": {"v": 3}}
    assert text == '{\n    "data": {\n        "v": 3\n    }\n}'


def test_csv_is_written_without_index():
    Out = make_task("TaskCSVPandas", pd.DataFrame({"a": [1, 2]}, index=[10, 20]))
    d6tflow.run(Out(), execution_summary=False)
    assert Path(Out().output().path).read_text().splitlines() == ["a", "1", "2"]


def test_pickle_round_trips_arbitrary_objects():
    value = {"when": dt.date(2024, 1, 31), "set": {1, 2}, "tuple": (1, 2)}
    Out = make_task("TaskPickle", value)
    d6tflow.run(Out(), execution_summary=False)
    assert Out().outputLoad() == value


def test_output_load_before_run_raises_runtime_error():
    Out = make_task("TaskPickle", 1)
    with pytest.raises(RuntimeError, match="Cannot load, task not complete, run flow first"):
        Out().outputLoad()


# -- multiple outputs ----------------------------------------------------------------------
class M(d6tflow.tasks.TaskPickle):
    persist = ["a", "b"]

    def run(self):
        self.save({"a": "ma", "b": "mb"})


class M2(d6tflow.tasks.TaskPickle):
    persist = ["a", "b"]

    def run(self):
        self.save({"a": "m2a", "b": "m2b"})


class S(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save("s")


def test_multiple_outputs_save_and_load(data_dir: Path):
    d6tflow.run(M(), execution_summary=False)
    assert M().outputLoad() == ["ma", "mb"]
    assert M().outputLoad(as_dict=True) == {"a": "ma", "b": "mb"}
    assert M().outputLoad(keys=["b"]) == ["mb"]
    assert M().outputLoad(keys="b") == "mb"
    a, b = M().outputLoad()
    assert (a, b) == ("ma", "mb")
    with pytest.raises(dagmill.errors.FlowError, match=r"keys=\['c'\]\): no output 'c'"):
        M().outputLoad(keys=["c"])
    out = M().output()
    assert set(out) == {"a", "b"}
    assert Path(out["a"].path) == data_dir / "M" / "M__99914b932b-a.pkl"
    assert Path(out["b"].path) == data_dir / "M" / "M__99914b932b-b.pkl"
    assert Path(out["a"].path).is_file() and Path(out["b"].path).is_file()


def test_single_output_ignores_as_dict():
    d6tflow.run(S(), execution_summary=False)
    assert S().outputLoad() == "s"
    assert S().outputLoad(as_dict=True) == "s"


def test_multiple_outputs_save_needs_exactly_the_persist_keys():
    class Bad(d6tflow.tasks.TaskPickle):
        persist = ["a", "b"]

        def run(self):
            self.save({"a": 1})

    with pytest.raises(ValueError):
        Bad().save({"a": 1})
    with pytest.raises(ValueError):
        Bad().save({"a": 1, "b": 2, "c": 3})
    with pytest.raises(ValueError):
        Bad().save([1, 2])
    result = d6tflow.run(Bad(), abort=False, execution_summary=False)
    assert result.ok is False
    assert Bad().complete() is False


def test_persists_alias():
    class P(d6tflow.tasks.TaskPickle):
        persists = ["x", "y"]

        def run(self):
            self.save({"x": 1, "y": 2})

    d6tflow.run(P(), execution_summary=False)
    assert P().outputLoad(as_dict=True) == {"x": 1, "y": 2}


# -- inputLoad: the table of the spec (§2) -------------------------------------------------
REQUIRES = {
    "single": lambda self: S(),
    "multi": lambda self: M(),
    "dict_single": lambda self: {"i1": S(), "i2": S()},
    "dict_multi": lambda self: {"i1": M(), "i2": M2()},
    "list_single": lambda self: [S(), S()],
    "list_multi": lambda self: [M(), M2()],
}

INPUTLOAD_TABLE = [
    ("single", {}, "s"),
    ("single", {"as_dict": True}, "s"),
    ("multi", {}, ["ma", "mb"]),
    ("multi", {"as_dict": True}, {"a": "ma", "b": "mb"}),
    ("multi", {"keys": ["a"]}, ["ma"]),
    ("multi", {"keys": "a"}, "ma"),
    ("dict_single", {}, {"i1": "s", "i2": "s"}),
    ("dict_single", {"as_dict": True}, {"i1": "s", "i2": "s"}),
    ("dict_single", {"task": "i1"}, "s"),
    ("dict_multi", {}, {"i1": ["ma", "mb"], "i2": ["m2a", "m2b"]}),
    (
        "dict_multi",
        {"as_dict": True},
        {"i1": {"a": "ma", "b": "mb"}, "i2": {"a": "m2a", "b": "m2b"}},
    ),
    ("dict_multi", {"task": "i1"}, ["ma", "mb"]),
    ("dict_multi", {"task": "i1", "as_dict": True}, {"a": "ma", "b": "mb"}),
    ("list_single", {}, ["s", "s"]),
    ("list_single", {"as_dict": True}, ["s", "s"]),
    ("list_multi", {}, [["ma", "mb"], ["m2a", "m2b"]]),
    ("list_multi", {"as_dict": True}, [{"a": "ma", "b": "mb"}, {"a": "m2a", "b": "m2b"}]),
    ("list_multi", {"task": 0}, ["ma", "mb"]),
]


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    INPUTLOAD_TABLE,
    ids=[
        f"{s}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'plain'}"
        for s, kw, _ in INPUTLOAD_TABLE
    ],
)
def test_input_load_table(shape: str, kwargs: dict[str, Any], expected: Any):
    d6tflow.run([S(), M(), M2()], execution_summary=False)

    class Consumer(d6tflow.tasks.TaskPickle):
        requires = REQUIRES[shape]

        def run(self):
            self.save(self.inputLoad(**kwargs))

    assert Consumer().inputLoad(**kwargs) == expected
    # and the same from inside run()
    d6tflow.run(Consumer(), execution_summary=False)
    assert Consumer().outputLoad() == expected


def test_input_load_documented_unpacking():
    """tasks.rst: the ways to unpack inputs inside run()."""
    d6tflow.run([S(), M(), M2()], execution_summary=False)
    seen: dict[str, Any] = {}

    @d6tflow.requires(M)
    class One(d6tflow.tasks.TaskPickle):
        def run(self):
            data1, data2 = self.inputLoad()
            seen["one"] = (data1, data2)
            self.save(1)

    @d6tflow.requires({"input1": M, "input2": S})
    class Many(d6tflow.tasks.TaskPickle):
        def run(self):
            data = self.inputLoad(as_dict=True)
            seen["many_as_dict"] = data["input1"]["a"]
            data1a, data1b = self.inputLoad()["input1"]
            seen["many_unpack"] = (data1a, data1b)
            seen["many_task"] = self.inputLoad(task="input2")
            self.save(1)

    @d6tflow.requires(M, M2)
    class Listed(d6tflow.tasks.TaskPickle):
        def run(self):
            data = self.inputLoad(as_dict=True)
            seen["list_as_dict"] = data[0]["a"]
            data1a, data1b = self.inputLoad()[0]
            seen["list_unpack"] = (data1a, data1b)
            seen["list_task"] = self.inputLoad(task=1)
            self.save(1)

    d6tflow.run([One(), Many(), Listed()], execution_summary=False)
    assert seen == {
        "one": ("ma", "mb"),
        "many_as_dict": "ma",
        "many_unpack": ("ma", "mb"),
        "many_task": "s",
        "list_as_dict": "ma",
        "list_unpack": ("ma", "mb"),
        "list_task": ["m2a", "m2b"],
    }


# -- metadata --------------------------------------------------------------------------------
def test_save_meta_and_load_meta(data_dir: Path):
    class Up(d6tflow.tasks.TaskPickle):
        def run(self):
            self.save(1)
            self.saveMeta({"rows": 10})

    @d6tflow.requires({"x": Up})
    class Down(d6tflow.tasks.TaskPickle):
        def run(self):
            self.save(self.metaLoad())
            self.metaSave("down meta")

    d6tflow.run(Down(), execution_summary=False)
    assert Up().outputLoadMeta() == {"rows": 10}
    assert (data_dir / "Up" / "Up__99914b932b-meta.pickle").is_file()
    assert Down().outputLoad() == {"x": {"rows": 10}}
    assert Down().outputLoadMeta() == "down meta"
    flow = d6tflow.Workflow(Down)
    assert flow.outputLoadMeta(Up) == {"rows": 10}


def test_output_load_meta_without_meta_raises():
    Out = make_task("TaskPickle", 1)
    d6tflow.run(Out(), execution_summary=False)
    with pytest.raises(RuntimeError, match="No metadata to load for task Out"):
        Out().outputLoadMeta()


# -- task ids and paths ------------------------------------------------------------------
class Task1(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save(1)


class ModelData(d6tflow.tasks.TaskPickle):
    do_preprocess = d6tflow.BoolParameter(default=True)

    def run(self):
        self.save(self.do_preprocess)


@d6tflow.requires(ModelData)
class ModelTrain(d6tflow.tasks.TaskPickle):
    model = d6tflow.Parameter(default="ols")

    def run(self):
        self.save(self.model)


def test_task_id_and_path_without_params(data_dir: Path):
    assert Task1().task_id == "Task1__99914b932b"
    assert Task1().task_family == "Task1"
    assert Path(Task1().output().path) == data_dir / "Task1" / "Task1__99914b932b-data.pkl"
    d6tflow.run(Task1(), execution_summary=False)
    assert (data_dir / "Task1" / "Task1__99914b932b-data.pkl").is_file()


def test_task_id_and_path_with_params(data_dir: Path):
    t = ModelTrain(do_preprocess=True, model="ols")
    assert t.task_id == "ModelTrain_True_ols_23ea6043b6"
    assert ModelTrain().task_id == t.task_id  # defaults
    assert t.to_str_params() == {"do_preprocess": "True", "model": "ols"}
    assert list(ModelTrain.get_param_names()) == ["do_preprocess", "model"]
    assert repr(t) == "ModelTrain(do_preprocess=True, model=ols)"
    expected = data_dir / "ModelTrain" / "ModelTrain_True_ols_23ea6043b6-data.pkl"
    assert Path(t.output().path) == expected
    d6tflow.run(t, execution_summary=False)
    assert expected.is_file()
    assert ModelTrain(do_preprocess=False, model="gbm").task_id != t.task_id


def test_folder_is_task_id_prefix_before_underscore(data_dir: Path):
    class T_single(d6tflow.tasks.TaskPickle):  # the quirk is about the name
        def run(self):
            self.save(1)

    assert Path(T_single().output().path) == data_dir / "T" / "T_single__99914b932b-data.pkl"


def test_save_attrib_false_drops_task_id_from_file_name(data_dir: Path):
    class Plain(d6tflow.tasks.TaskPickle):
        save_attrib = False

        def run(self):
            self.save(1)

    assert Path(Plain().output().path) == data_dir / "Plain" / "data.pkl"
    d6tflow.run(Plain(), execution_summary=False)
    assert (data_dir / "Plain" / "data.pkl").is_file()
    assert Plain().outputLoad() == 1


def test_target_dir_and_path_overrides(data_dir: Path, tmp_path: Path):
    class Custom(d6tflow.tasks.TaskPickle):
        target_dir = "elsewhere"

        def run(self):
            self.save(1)

    assert Path(Custom().output().path) == data_dir / "elsewhere" / "Custom__99914b932b-data.pkl"

    class Rooted(d6tflow.tasks.TaskPickle):
        path = tmp_path / "other"

        def run(self):
            self.save(1)

    assert Path(Rooted().output().path) == tmp_path / "other" / "Rooted" / (
        "Rooted__99914b932b-data.pkl"
    )


def test_set_dir_moves_outputs(tmp_path: Path):
    new = d6tflow.set_dir(tmp_path / "elsewhere")
    assert Path(new) == tmp_path / "elsewhere"
    assert Path(d6tflow.settings.dirpath) == tmp_path / "elsewhere"
    d6tflow.run(Task1(), execution_summary=False)
    assert (tmp_path / "elsewhere" / "Task1" / "Task1__99914b932b-data.pkl").is_file()


def test_outputs_follow_each_set_dir_and_dirpath(tmp_path: Path):
    """The folder a task's outputs go to is the one set now (its text is kept per Path)."""
    d6tflow.set_dir(tmp_path / "a")
    assert Path(Task1().output().path).parent.parent == tmp_path / "a"
    d6tflow.set_dir(tmp_path / "b")
    assert Path(Task1().output().path).parent.parent == tmp_path / "b"
    d6tflow.settings.dirpath = tmp_path / "c"  # set directly, as older scripts do
    assert Path(Task1().output().path).parent.parent == tmp_path / "c"
    assert Path(Task1(path=str(tmp_path / "d")).output().path).parent.parent == tmp_path / "d"


# -- decorators ------------------------------------------------------------------------------
def test_requires_one_class_gives_one_task():
    assert ModelTrain(do_preprocess=False).requires() == ModelData(do_preprocess=False)
    assert isinstance(ModelTrain().requires(), ModelData)
    d6tflow.run(ModelTrain(do_preprocess=False, model="x"), execution_summary=False)
    assert ModelData(do_preprocess=False).outputLoad() is False
    assert ModelData(do_preprocess=True).complete() is False


def test_requires_several_classes_gives_a_list():
    @d6tflow.requires(M, M2)
    class Both(d6tflow.tasks.TaskPickle):
        def run(self):
            self.save(self.inputLoad())

    req = Both().requires()
    assert isinstance(req, list)
    assert req == [M(), M2()]
    d6tflow.run(Both(), execution_summary=False)
    assert Both().outputLoad() == [["ma", "mb"], ["m2a", "m2b"]]


def test_requires_dict_gives_a_dict_and_passes_params():
    class A(d6tflow.tasks.TaskPickle):
        x = d6tflow.IntParameter(default=1)

        def run(self):
            self.save(self.x * 10)

    class B(d6tflow.tasks.TaskPickle):
        y = d6tflow.Parameter(default="b")

        def run(self):
            self.save(self.y)

    @d6tflow.requires({"a": A, "b": B})
    class C(d6tflow.tasks.TaskPickle):
        def run(self):
            self.save(self.inputLoad())

    assert set(C.get_param_names()) == {"x", "y"}
    req = C(x=4, y="q").requires()
    assert req == {"a": A(x=4), "b": B(y="q")}
    d6tflow.run(C(x=4, y="q"), execution_summary=False)
    assert C(x=4, y="q").outputLoad() == {"a": 40, "b": "q"}
    assert A(x=4).complete() and not A().complete()


def test_inherits_passes_parameters_upstream_via_clone():
    class A(d6tflow.tasks.TaskPickle):
        x = d6tflow.IntParameter(default=1)

        def run(self):
            self.save(self.x * 10)

    @d6tflow.inherits(A)
    class B(d6tflow.tasks.TaskPickle):
        z = d6tflow.IntParameter(default=0)

        def requires(self):
            return self.clone(A)

        def run(self):
            self.save(self.inputLoad() + self.z)

    assert set(B.get_param_names()) == {"x", "z"}
    b = B(x=5, z=2)
    assert b.x == 5
    assert b.requires() == A(x=5)
    assert b.clone_parent() == A(x=5)
    d6tflow.run(b, execution_summary=False)
    assert B(x=5, z=2).outputLoad() == 52
    assert A(x=5).complete() is True
    assert A().complete() is False


def test_inherits_keeps_own_parameter_and_dict_form():
    class A(d6tflow.tasks.TaskPickle):
        x = d6tflow.IntParameter(default=1)

    @d6tflow.inherits({"a": A})
    class B(d6tflow.tasks.TaskPickle):
        x = d6tflow.IntParameter(default=7)  # the class's own definition wins

    assert B().x == 7
    assert B().clone(A) == A(x=7)


# -- parameter errors ------------------------------------------------------------------------
def test_unknown_parameter_raises_with_suggestion():
    with pytest.raises(dagmill.ParameterError, match="did you mean") as info:
        ModelTrain(modle="ols")
    assert "'model'" in str(info.value)
    assert "ModelTrain" in str(info.value)


def test_wrong_type_names_task_and_parameter():
    class Counted(d6tflow.tasks.TaskPickle):
        n = d6tflow.IntParameter(default=1)

    with pytest.raises(dagmill.ParameterError) as info:
        Counted(n="abc")
    msg = str(info.value)
    assert "Counted" in msg and "'n'" in msg and "abc" in msg
    assert isinstance(info.value, ValueError)


def test_missing_parameter_raises():
    class Needs(d6tflow.tasks.TaskPickle):
        n = d6tflow.IntParameter()

    with pytest.raises(dagmill.ParameterError, match="'n'"):
        Needs()
    assert Needs(n=2).n == 2


# -- parameter types -------------------------------------------------------------------------
class Color(enum.Enum):
    RED = 1
    BLUE = 2


PARAM_CASES = [
    # (parameter, string, parsed value, other spellings of the same value, a different value)
    (lambda: d6tflow.Parameter(), "abc", "abc", [], "abd"),
    (lambda: d6tflow.IntParameter(), "3", 3, [3, " 3"], 4),
    (lambda: d6tflow.FloatParameter(), "2.5", 2.5, [2.5, "2.50"], 2.75),
    (lambda: d6tflow.BoolParameter(), "True", True, [True, "true"], False),
    (lambda: d6tflow.BoolParameter(), "false", False, [False, "False"], True),
    (
        lambda: d6tflow.DateParameter(),
        "2024-01-31",
        dt.date(2024, 1, 31),
        [dt.date(2024, 1, 31)],
        dt.date(2024, 2, 1),
    ),
    (
        lambda: d6tflow.DateTimeParameter(),
        "2024-01-31T120000",
        dt.datetime(2024, 1, 31, 12, 0, 0),
        [dt.datetime(2024, 1, 31, 12, 0, 0), "2024-01-31T12:00:00"],
        dt.datetime(2024, 1, 31, 12, 0, 1),
    ),
    (lambda: d6tflow.EnumParameter(enum=Color), "RED", Color.RED, [Color.RED], Color.BLUE),
    (lambda: d6tflow.ListParameter(), "[1, 2]", (1, 2), [[1, 2], (1, 2), "[1,2]"], [2, 1]),
    (
        lambda: d6tflow.DictParameter(),
        '{"a": 1, "b": 2}',
        {"a": 1, "b": 2},
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}, '{"b":2,"a":1}'],
        {"a": 1, "b": 3},
    ),
]


@pytest.mark.parametrize(
    ("make", "text", "value", "same", "other"),
    PARAM_CASES,
    ids=[
        "str",
        "int",
        "float",
        "bool_true",
        "bool_false",
        "date",
        "datetime",
        "enum",
        "list",
        "dict",
    ],
)
def test_parameter_parses_strings_and_has_a_canonical_form(make, text, value, same, other):
    class P(d6tflow.tasks.TaskPickle):
        p = make()

        def run(self):
            self.save(self.p)

    from_text = P(p=text)
    if isinstance(value, dict):
        assert dict(from_text.p) == value
    elif isinstance(value, tuple):
        assert tuple(from_text.p) == value
    else:
        assert from_text.p == value
        assert type(from_text.p) is type(value)
    for spelling in same:
        assert P(p=spelling).task_id == from_text.task_id, spelling
        assert P(p=spelling).to_str_params() == from_text.to_str_params(), spelling
    assert P(p=other).task_id != from_text.task_id
    # the canonical string parses back to the same task
    canonical = from_text.to_str_params()["p"]
    assert P(p=canonical).task_id == from_text.task_id
    # a task built from strings runs and finds its own output again
    d6tflow.run(P(p=text), execution_summary=False)
    assert P(p=value).complete() is True


def test_parameter_default_and_workflow_strings():
    class P(d6tflow.tasks.TaskPickle):
        n = d6tflow.IntParameter(default=2)
        when = d6tflow.DateParameter(default=dt.date(2010, 1, 1))

        def run(self):
            self.save((self.n, self.when))

    assert P().n == 2 and P().when == dt.date(2010, 1, 1)
    flow = d6tflow.Workflow(P, {"n": "5", "when": "2011-02-03"})
    flow.run(execution_summary=False)
    assert flow.outputLoad() == (5, dt.date(2011, 2, 3))
    assert P(n=5, when=dt.date(2011, 2, 3)).complete() is True


def test_list_and_dict_params_are_hashable_and_usable():
    class P(d6tflow.tasks.TaskJson):
        items = d6tflow.ListParameter(default=[1, 2])
        opts = d6tflow.DictParameter(default={"k": "v"})

        def run(self):
            self.save({"items": list(self.items), "opts": dict(self.opts)})

    t = P()
    assert hash(t) == hash(P(items=(1, 2), opts={"k": "v"}))
    d6tflow.run(t, execution_summary=False)
    assert P().outputLoad() == {"items": [1, 2], "opts": {"k": "v"}}


# -- Workflow --------------------------------------------------------------------------------
class WGet(d6tflow.tasks.TaskPickle):
    def run(self):
        self.save([1, 2, 3])


@d6tflow.requires(WGet)
class WPrep(d6tflow.tasks.TaskPickle):
    scale = d6tflow.IntParameter(default=1)

    def run(self):
        self.save([x * self.scale for x in self.inputLoad()])


@d6tflow.requires(WPrep)
class WTrain(d6tflow.tasks.TaskPickle):
    persist = ["model", "score"]

    def run(self):
        data = self.inputLoad()
        self.save({"model": sum(data), "score": len(data)})


def test_workflow_get_task_complete_output_and_load(data_dir: Path):
    flow = d6tflow.Workflow(WTrain, {"scale": 10})
    assert flow.get_task() == WTrain(scale=10)
    assert flow.get_task(WPrep) == WPrep(scale=10)
    assert flow.get_task(WGet) == WGet()  # the flow's extra params are not WGet's
    assert flow.complete() is False
    with pytest.raises(RuntimeError):
        flow.outputLoad()

    flow.run(execution_summary=False)
    assert flow.complete() is True
    assert flow.complete(WGet) is True

    tid = WTrain(scale=10).task_id
    paths = flow.outputPath()
    assert {k: Path(v) for k, v in paths.items()} == {
        "model": data_dir / "WTrain" / f"{tid}-model.pkl",
        "score": data_dir / "WTrain" / f"{tid}-score.pkl",
    }
    assert Path(flow.outputPath(WGet)) == data_dir / "WGet" / "WGet__99914b932b-data.pkl"
    out = flow.output()
    assert set(out) == {"model", "score"} and out["model"].exists()
    assert Path(flow.output(WPrep).path).is_file()

    assert flow.outputLoad() == [60, 3]
    assert flow.outputLoad(as_dict=True) == {"model": 60, "score": 3}
    assert flow.outputLoad(keys="score") == 3
    assert flow.outputLoad(WPrep) == [10, 20, 30]

    everything = flow.outputLoadAll()
    assert list(everything) == ["WTrain", "WPrep", "WGet"]
    assert everything == {"WTrain": [60, 3], "WPrep": [10, 20, 30], "WGet": [1, 2, 3]}
    assert flow.outputLoadAll(WPrep) == {"WPrep": [10, 20, 30], "WGet": [1, 2, 3]}


def test_workflow_preview_and_run_other_task(capsys):
    flow = d6tflow.Workflow(WTrain, {"scale": 2})
    flow.run(WPrep, execution_summary=False)
    assert flow.complete(WPrep) is True and flow.complete() is False
    capsys.readouterr()
    assert flow.preview() is None
    nodes = [ln for ln in plain(capsys.readouterr().out).splitlines() if "--[" in ln]
    assert nodes == [
        "└─--[WTrain-{'scale': '2'} (PENDING)]",
        "   └─--[WPrep-{'scale': '2'} (COMPLETE)]",
        "      └─--[WGet-{} (COMPLETE)]",
    ]


def test_workflow_reset(data_dir: Path):
    flow = d6tflow.Workflow(WTrain, {"scale": 3})
    flow.run(execution_summary=False)
    assert flow.reset() is True
    assert flow.complete() is False
    assert flow.complete(WPrep) is True and flow.complete(WGet) is True
    assert not Path(flow.outputPath()["model"]).exists()

    flow.run(execution_summary=False)
    assert flow.reset(WGet) is True
    assert flow.complete(WGet) is False
    assert Path(flow.outputPath(WPrep)).exists()  # reset deletes only that task's output


def test_workflow_reset_upstream():
    flow = d6tflow.Workflow(WTrain, {"scale": 3})
    flow.run(execution_summary=False)
    flow.reset_upstream(confirm=False)
    for cls in (WTrain, WPrep, WGet):
        assert flow.complete(cls) is False
        for p in flow.output(cls).values() if cls is WTrain else [flow.output(cls)]:
            assert not p.exists()


def test_workflow_reset_downstream():
    flow = d6tflow.Workflow(WTrain, {"scale": 3})
    flow.run(execution_summary=False)
    flow.reset_downstream(WPrep, confirm=False)  # down to the flow's task
    assert flow.output(WGet).exists()
    assert not flow.output(WPrep).exists()
    assert not flow.output()["model"].exists()
    flow.run(execution_summary=False)
    flow.reset_downstream(WGet, WPrep, confirm=False)  # stop at WPrep
    assert not flow.output(WGet).exists() and not flow.output(WPrep).exists()
    assert flow.output()["model"].exists()


def test_workflow_reset_with_confirm_declined(monkeypatch: pytest.MonkeyPatch, capsys):
    flow = d6tflow.Workflow(WGet)
    flow.run(execution_summary=False)
    monkeypatch.setattr("builtins.input", lambda *a: "n")
    flow.reset(confirm=True)
    assert flow.complete() is True
    monkeypatch.setattr("builtins.input", lambda *a: "y")
    flow.reset(confirm=True)
    assert flow.complete() is False


def test_workflow_set_default_and_no_default():
    flow = d6tflow.Workflow()
    # d6tflow raises a bare RuntimeError; dagmill's is a DefinitionError (CLI exit code 2)
    with pytest.raises(dagmill.DefinitionError, match="no default task"):
        flow.get_task()
    flow.set_default(WGet)
    assert flow.get_task() == WGet()


# -- WorkflowMulti ---------------------------------------------------------------------------
class Grid(d6tflow.tasks.TaskPickle):
    a = d6tflow.IntParameter()
    b = d6tflow.Parameter()

    def run(self):
        self.save(f"{self.a}-{self.b}")


def test_workflow_multi_dict_of_lists_is_a_grid():
    flow = d6tflow.WorkflowMulti(Grid, {"a": [1, 2], "b": ["x", "y"]})
    tasks = flow.get_task()
    assert list(tasks) == ["a_1_b_x", "a_1_b_y", "a_2_b_x", "a_2_b_y"]
    assert tasks["a_2_b_x"] == Grid(a=2, b="x")
    results = flow.run(execution_summary=False)
    assert set(results) == set(tasks)
    assert all(r.ok for r in results.values())
    assert flow.outputLoad() == {
        "a_1_b_x": "1-x",
        "a_1_b_y": "1-y",
        "a_2_b_x": "2-x",
        "a_2_b_y": "2-y",
    }
    assert flow.outputLoad(flow="a_1_b_y") == "1-y"
    assert flow.get_flow("a_1_b_x").get_task() == Grid(a=1, b="x")


def test_workflow_multi_list_and_named_flows():
    flow = d6tflow.WorkflowMulti(Grid, [{"a": 1, "b": "p"}, {"a": 2, "b": "q"}])
    assert flow.get_task() == {0: Grid(a=1, b="p"), 1: Grid(a=2, b="q")}
    flow.run(flow=1, execution_summary=False)
    assert flow.complete() == {0: False, 1: True}
    assert flow.outputLoad(flow=1) == "2-q"
    paths = flow.outputPath()
    assert Path(paths[1]).is_file() and not Path(paths[0]).exists()
    flow.run(execution_summary=False)
    assert flow.outputLoadAll() == {0: {"Grid": "1-p"}, 1: {"Grid": "2-q"}}
    flow.reset(flow=0)
    assert flow.complete() == {0: False, 1: True}


def test_workflow_multi_needs_params():
    with pytest.raises(Exception, match=r"(?i)param"):
        d6tflow.WorkflowMulti(Grid, {})
    with pytest.raises(Exception, match=r"(?i)param"):
        d6tflow.WorkflowMulti(Grid, None)


# -- run -------------------------------------------------------------------------------------
def test_run_without_summary_returns_result(capsys):
    result = dagmill.run([WTrain(scale=4)], execution_summary=False)
    assert result is not None
    assert result.ok is True
    assert result.scheduling_succeeded is True
    assert "Scheduled" not in capsys.readouterr().out
    assert WTrain(scale=4).complete()


def test_run_summary_setting_and_result_text(capsys):
    d6tflow.settings.execution_summary = False
    result = dagmill.run(WGet())
    assert "Scheduled" not in capsys.readouterr().out
    assert "Scheduled 1 tasks of which:" in result.summary_text
    assert "* 1 ran successfully:" in result.summary_text
    d6tflow.settings.execution_summary = True
    dagmill.run(WGet())
    assert "Did not run any tasks" in plain(capsys.readouterr().out)


def test_run_failure_result_and_downstream_not_run():
    class Boom(d6tflow.tasks.TaskPickle):
        def run(self):
            raise KeyError("nope")

    @d6tflow.requires(Boom)
    class After(d6tflow.tasks.TaskPickle):
        def run(self):
            self.save(1)

    result = dagmill.run(After(), abort=False, execution_summary=False)
    assert result.ok is False and result.scheduling_succeeded is False
    assert "* 1 failed:" in result.summary_text
    assert "    - 1 Boom()" in result.summary_text
    assert "This progress looks :( because there were failed tasks" in result.summary_text
    assert After().complete() is False
    with pytest.raises(RuntimeError):
        dagmill.run(After(), execution_summary=False)


# -- more d6tflow behaviours -----------------------------------------------------------------
def test_workflow_env_and_path_put_every_task_of_the_flow_there(data_dir: Path, tmp_path: Path):
    flow = d6tflow.Workflow(WPrep, {"scale": 2}, env="dev")
    flow.run(execution_summary=False)
    tid = WPrep(scale=2).task_id
    assert Path(flow.outputPath()) == data_dir / "env=dev" / "WPrep" / f"{tid}-data.pkl"
    assert (
        Path(flow.outputPath(WGet)) == data_dir / "env=dev" / "WGet" / "WGet__99914b932b-data.pkl"
    )
    assert Path(flow.outputPath()).is_file()
    assert (data_dir / "env=dev" / "WGet" / "WGet__99914b932b-data.pkl").is_file()
    assert not (data_dir / "WGet").exists()  # upstream went to the env folder too
    assert flow.outputLoad() == [2, 4, 6]

    other = d6tflow.Workflow(WPrep, path=tmp_path / "other")
    other.run(execution_summary=False)
    assert (tmp_path / "other" / "WGet" / "WGet__99914b932b-data.pkl").is_file()
    assert (tmp_path / "other" / "WPrep" / f"{WPrep().task_id}-data.pkl").is_file()
    assert other.complete() is True
    assert WPrep().complete() is False  # the default folder has nothing


def test_save_with_param_false(data_dir: Path):
    d6tflow.settings.save_with_param = False
    assert Path(Task1().output().path) == data_dir / "Task1" / "data.pkl"
    assert Path(M().output()["a"].path) == data_dir / "M" / "a.pkl"


def test_preview_show_params_false_and_clip_params(capsys):
    d6tflow.preview(ModelTrain(), show_params=False)
    nodes = [ln for ln in plain(capsys.readouterr().out).splitlines() if "--[" in ln]
    assert nodes == ["└─--[ModelTrain- (PENDING)]", "   └─--[ModelData- (PENDING)]"]
    d6tflow.preview(ModelTrain(), clip_params=True)
    nodes = [ln for ln in plain(capsys.readouterr().out).splitlines() if "--[" in ln]
    assert nodes[0] == "└─--[ModelTrain-{'do_preprocess': 'True'}[more] (PENDING)]"


# Computed with d6tflow 0.2.8 / luigi 3.8.1: a data folder written by d6tflow is found again.
D6TFLOW_IDS = [
    (lambda: d6tflow.IntParameter(), 3, "P_3_df738b2c0e"),
    (lambda: d6tflow.FloatParameter(), 2.5, "P_2_5_753e13cc27"),
    (lambda: d6tflow.BoolParameter(), True, "P_True_244fd6fd50"),
    (lambda: d6tflow.Parameter(), "a b", "P_a_b_e9a45267ac"),
    (lambda: d6tflow.DateParameter(), dt.date(2024, 1, 31), "P_2024_01_31_4dfabded29"),
    (
        lambda: d6tflow.DateTimeParameter(),
        dt.datetime(2024, 1, 31, 12, 0, 0),
        "P_2024_01_31T120000_1724e24391",  # luigi's DateSecondParameter
    ),
    (lambda: d6tflow.EnumParameter(enum=Color), Color.RED, "P_RED_1a0217dd17"),
    (lambda: d6tflow.ListParameter(), [1, 2], "P__1__2__00972330f7"),
    (lambda: d6tflow.DictParameter(), {"a": 1, "b": 2}, "P___a___1___b___2__df3a0e9eb5"),
]


@pytest.mark.parametrize(
    ("make", "value", "expected"),
    D6TFLOW_IDS,
    ids=["int", "float", "bool", "str", "date", "datetime", "enum", "list", "dict"],
)
def test_task_ids_match_d6tflow(make, value, expected):
    class P(d6tflow.tasks.TaskPickle):
        p = make()

    assert P(p=value).task_id == expected


def test_summary_groups_instances_of_one_family(capsys):
    class A(d6tflow.tasks.TaskPickle):
        x = d6tflow.IntParameter()

        def run(self):
            self.save(self.x)

    d6tflow.run([A(x=i) for i in range(1, 6)])
    assert "    - 5 A(x=1...5)" in plain(capsys.readouterr().out).splitlines()
    d6tflow.run([A(x=i) for i in (1, 3, 7)])
    lines = plain(capsys.readouterr().out).splitlines()
    assert "* 2 complete ones were encountered:" in lines
    assert "    - 2 A(x=1,3)" in lines
    assert "* 1 ran successfully:" in lines
    assert "    - 1 A(x=7)" in lines


def test_json_output_refuses_objects_json_cannot_hold():
    """d6tflow's json.dump raises TypeError; the object must not be saved as its str()."""

    class J(d6tflow.tasks.TaskJson):
        def run(self):
            self.save({"s": {1, 2}})

    result = d6tflow.run(J(), abort=False, execution_summary=False)
    assert result.ok is False
    assert J().complete() is False


def test_run_confirm_declined_leaves_everything(monkeypatch: pytest.MonkeyPatch, capsys):
    calls: list[str] = []

    class A(d6tflow.tasks.TaskPickle):
        def run(self):
            calls.append("A")
            self.save(1)

    d6tflow.run(A(), execution_summary=False)
    monkeypatch.setattr("builtins.input", lambda *a: "n")
    assert d6tflow.run(A(), forced=A(), confirm=True, execution_summary=False) is None
    assert calls == ["A"] and A().complete()
    monkeypatch.setattr("builtins.input", lambda *a: "y")
    result = d6tflow.run(A(), forced=A(), confirm=True, execution_summary=False)
    assert result is not None and result.ok
    assert calls == ["A", "A"]
