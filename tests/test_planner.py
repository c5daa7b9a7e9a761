"""The planner: when a task is COMPLETE, PENDING or STALE, and the reason it gives."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import dagmill
from dagmill import settings
from dagmill.model.states import PlanState, TaskRunStatus
from dagmill.services.tasks import make_plan

# -- loading task modules from source text ------------------------------------------------
# The code version is a hash of the normalised *source*, so every variant of a task module
# is written to its own file and imported under a fresh module name.

_module_numbers = itertools.count()


@pytest.fixture
def load_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src_dir = tmp_path / "src"
    src_dir.mkdir()

    def load(source: str) -> ModuleType:
        name = f"dagmill_planner_case_{next(_module_numbers)}"
        path = src_dir / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


TRAIN = """
import dagmill

class Train(dagmill.tasks.TaskPickle):
    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        self.save({"lr": self.lr, "model": "linear"})
"""

TRAIN_CODE_CHANGED = """
import dagmill

class Train(dagmill.tasks.TaskPickle):
    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        self.save({"lr": self.lr, "model": "forest"})
"""

TRAIN_COMMENTS = """
import dagmill

# a comment above the class


class Train(dagmill.tasks.TaskPickle):
    lr = dagmill.FloatParameter(default=0.1)  # learning rate

    def run(self):
        # train the model

        self.save(
            {"lr": self.lr,   "model": "linear"},  # same thing, other layout
        )

"""

TRAIN_DOCSTRINGS = '''
import dagmill

class Train(dagmill.tasks.TaskPickle):
    """Train a model (a class docstring added)."""

    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        """Fit and save (a method docstring added)."""
        self.save({"lr": self.lr, "model": "linear"})
'''

VERSIONED = """
import dagmill

class Train(dagmill.tasks.TaskPickle):
    version = "{version}"
    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        self.save({{"lr": self.lr, "model": "{model}"}})
"""

FIXED_LOCATION = """
import dagmill

class Train(dagmill.tasks.TaskPickle):
    save_attrib = False  # the output file name does not include the task id
    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        self.save({"lr": self.lr})
"""


def plan_of(task: dagmill.Task):
    p, _ = make_plan([task])
    return p.tasks[task.task_id]


def run_quietly(tasks, **kwargs) -> dagmill.RunResult:
    kwargs.setdefault("execution_summary", False)
    result = dagmill.run(tasks, **kwargs)
    assert result is not None
    return result


def preview_text(capsys: pytest.CaptureFixture[str], cls, params=None) -> str:
    capsys.readouterr()
    dagmill.Workflow(cls, params or {}).preview()
    return capsys.readouterr().out


# -- completion ----------------------------------------------------------------------------
def test_pending_before_and_complete_after_a_run(load_module, capsys) -> None:
    mod = load_module(TRAIN)
    task = mod.Train()
    assert plan_of(task).state is PlanState.PENDING
    assert "(PENDING)" in preview_text(capsys, mod.Train)

    result = run_quietly(task)
    assert result.statuses[task.task_id] is TaskRunStatus.SUCCESS

    assert plan_of(task).state is PlanState.COMPLETE
    assert task.complete()
    assert "(COMPLETE)" in preview_text(capsys, mod.Train)
    again = run_quietly(task)
    assert again.statuses[task.task_id] is TaskRunStatus.SKIPPED


# -- parameters ----------------------------------------------------------------------------
def test_param_change_at_fixed_location_is_stale_with_old_and_new_value(
    load_module, capsys
) -> None:
    mod = load_module(FIXED_LOCATION)
    run_quietly(mod.Train(lr=0.1))
    assert mod.Train(lr=0.1).output().path == mod.Train(lr=0.01).output().path

    tp = plan_of(mod.Train(lr=0.01))
    assert tp.state is PlanState.STALE
    assert "param lr changed 0.1→0.01" in tp.reason
    out = preview_text(capsys, mod.Train, {"lr": 0.01})
    assert "(STALE)" in out
    assert " => param lr changed 0.1→0.01" in out

    result = run_quietly(mod.Train(lr=0.01))
    assert result.statuses[mod.Train(lr=0.01).task_id] is TaskRunStatus.SUCCESS
    assert mod.Train(lr=0.01).outputLoad() == {"lr": 0.01}
    assert plan_of(mod.Train(lr=0.01)).state is PlanState.COMPLETE


# -- code ----------------------------------------------------------------------------------
def test_code_change_of_run_is_stale(load_module, capsys) -> None:
    run_quietly(load_module(TRAIN).Train())
    changed = load_module(TRAIN_CODE_CHANGED)

    tp = plan_of(changed.Train())
    assert tp.state is PlanState.STALE
    assert "code of Train.run changed" in tp.reason
    assert "param" not in tp.reason
    assert " => code of Train.run changed" in preview_text(capsys, changed.Train)

    result = run_quietly(changed.Train())
    assert result.statuses[changed.Train().task_id] is TaskRunStatus.SUCCESS
    assert changed.Train().outputLoad()["model"] == "forest"


@pytest.mark.parametrize(
    "variant", [TRAIN_COMMENTS, TRAIN_DOCSTRINGS], ids=["comments-blank-lines", "docstrings"]
)
def test_comment_blank_line_and_docstring_changes_keep_it_complete(
    load_module, variant: str
) -> None:
    run_quietly(load_module(TRAIN).Train())
    same = load_module(variant)
    tp = plan_of(same.Train())
    assert tp.state is PlanState.COMPLETE, tp.reason
    assert run_quietly(same.Train()).statuses[same.Train().task_id] is TaskRunStatus.SKIPPED


def test_explicit_version_change_is_stale(load_module, capsys) -> None:
    run_quietly(load_module(VERSIONED.format(version="1", model="linear")).Train())
    v2 = load_module(VERSIONED.format(version="2", model="linear"))
    tp = plan_of(v2.Train())
    assert tp.state is PlanState.STALE
    assert "version changed 1→2" in tp.reason
    assert " => version changed 1→2" in preview_text(capsys, v2.Train)


def test_code_change_under_the_same_explicit_version_is_not_stale(load_module) -> None:
    run_quietly(load_module(VERSIONED.format(version="1", model="linear")).Train())
    same_version = load_module(VERSIONED.format(version="1", model="forest"))
    tp = plan_of(same_version.Train())
    assert tp.state is PlanState.COMPLETE, tp.reason


def test_detect_changes_off_is_parameter_only_identity(load_module) -> None:
    run_quietly(load_module(TRAIN).Train())
    settings.detect_changes = False
    changed = load_module(TRAIN_CODE_CHANGED)
    assert plan_of(changed.Train()).state is PlanState.COMPLETE
    assert changed.Train().complete()
    result = run_quietly(changed.Train())
    assert result.statuses[changed.Train().task_id] is TaskRunStatus.SKIPPED
    assert changed.Train().outputLoad()["model"] == "linear"


# -- inputs --------------------------------------------------------------------------------
class Raw(dagmill.ExternalTask):
    """An input file from outside: ``raw.csv`` in the data folder."""

    def output(self):
        return dagmill.targets.TextTarget(settings.dirpath / "raw.csv")


@dagmill.requires(Raw)
class Clean(dagmill.tasks.TaskPickle):
    def run(self):
        self.save(self.input().load().upper())


@dagmill.requires(Clean)
class Report(dagmill.tasks.TaskJson):
    def run(self):
        self.save({"n": len(self.inputLoad())})


class Prepare(dagmill.tasks.TaskPickle):
    n = dagmill.IntParameter(default=3)

    def run(self):
        self.save(list(range(self.n)))


@dagmill.requires(Prepare)
class Fit(dagmill.tasks.TaskPickle):
    def run(self):
        self.save(sum(self.inputLoad()))


class Lookup(dagmill.tasks.TaskPickle):
    def run(self):
        self.save({"a": 1})


@dagmill.requires(Fit, Lookup)
class Score(dagmill.tasks.TaskJson):
    def run(self):
        total, lookup = self.inputLoad()
        self.save({"score": total + lookup["a"]})


def write_raw(text: str) -> Path:
    path = settings.dirpath / "raw.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_upstream_output_rewritten_makes_only_the_downstream_stale(capsys) -> None:
    score = Score()
    run_quietly(score)
    prep, fit, lookup = Prepare(), Fit(), Lookup()

    prep.output().save([10, 20, 30, 40])  # someone rewrote the upstream data

    p, _ = make_plan([score])
    assert p.tasks[prep.task_id].state is PlanState.COMPLETE
    assert p.tasks[lookup.task_id].state is PlanState.COMPLETE
    assert p.tasks[fit.task_id].state is PlanState.STALE
    assert "input Prepare" in p.tasks[fit.task_id].reason
    assert "changed" in p.tasks[fit.task_id].reason
    assert p.tasks[score.task_id].state is PlanState.STALE
    assert " => input Prepare" in preview_text(capsys, Score)

    result = run_quietly(score)
    assert result.statuses[prep.task_id] is TaskRunStatus.SKIPPED
    assert result.statuses[lookup.task_id] is TaskRunStatus.SKIPPED
    assert result.statuses[fit.task_id] is TaskRunStatus.SUCCESS
    assert result.statuses[score.task_id] is TaskRunStatus.SUCCESS
    assert fit.outputLoad() == 100
    assert score.outputLoad() == {"score": 101}


def test_external_input_touched_makes_downstream_stale(capsys) -> None:
    path = write_raw("a,b\n1,2\n")
    run_quietly(Clean())
    assert plan_of(Clean()).state is PlanState.COMPLETE

    path.write_text("a,b\n1,2\n3,4\n")  # new size and mtime
    tp = plan_of(Clean())
    assert tp.state is PlanState.STALE
    assert "input raw.csv changed" in tp.reason
    assert " => input raw.csv changed" in preview_text(capsys, Clean)

    result = run_quietly(Clean())
    assert result.statuses[Raw().task_id] is TaskRunStatus.SKIPPED
    assert result.statuses[Clean().task_id] is TaskRunStatus.SUCCESS
    assert Clean().outputLoad() == "A,B\n1,2\n3,4\n"


def test_external_input_same_size_new_mtime_is_a_change() -> None:
    path = write_raw("x\n")
    run_quietly(Clean())
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    tp = plan_of(Clean())
    assert tp.state is PlanState.STALE
    assert "input raw.csv changed" in tp.reason


def test_stale_upstream_makes_downstream_stale_with_check_dependencies() -> None:
    path = write_raw("x\n")
    run_quietly(Report())
    path.write_text("xyz\n")
    settings.check_dependencies = True
    p, _ = make_plan([Report()])
    assert p.tasks[Clean().task_id].state is PlanState.STALE
    report = p.tasks[Report().task_id]
    assert report.state is PlanState.STALE
    assert "upstream Clean" in report.reason
    assert "will run" in report.reason


def test_without_check_dependencies_a_stale_upstream_leaves_downstream_complete() -> None:
    path = write_raw("x\n")
    run_quietly(Report())
    path.write_text("xyz\n")
    settings.check_dependencies = False
    p, _ = make_plan([Report()])
    assert p.tasks[Clean().task_id].state is PlanState.STALE
    assert p.tasks[Report().task_id].state is PlanState.COMPLETE


def test_outputs_without_a_record_are_stale_no_fingerprint(capsys) -> None:
    Prepare().output().save([1, 2, 3])  # written by hand (or by d6tflow): no record
    tp = plan_of(Prepare())
    assert tp.state is PlanState.STALE
    assert "no fingerprint" in tp.reason
    assert "(STALE)" in preview_text(capsys, Prepare)
    assert run_quietly(Prepare()).statuses[Prepare().task_id] is TaskRunStatus.SUCCESS
    assert plan_of(Prepare()).state is PlanState.COMPLETE


# -- bad graphs ----------------------------------------------------------------------------
class Egg(dagmill.tasks.TaskPickle):
    def requires(self):
        return Chicken()

    def run(self):
        self.save("egg")


class Chicken(dagmill.tasks.TaskPickle):
    def requires(self):
        return Egg()

    def run(self):
        self.save("chicken")


def test_cycle_raises_cycle_error_showing_the_cycle(data_dir: Path) -> None:
    with pytest.raises(dagmill.CycleError) as info:
        make_plan([Egg()])
    msg = str(info.value)
    assert Egg().task_id in msg and Chicken().task_id in msg
    assert "->" in msg
    assert set(info.value.cycle) == {Egg().task_id, Chicken().task_id}
    assert isinstance(info.value, dagmill.DefinitionError)
    with pytest.raises(dagmill.CycleError):
        dagmill.run(Chicken(), execution_summary=False)
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


class Shared(dagmill.tasks.TaskPickle):
    save_attrib = False  # both parameter values write the same file
    x = dagmill.IntParameter()

    def run(self):
        self.save(self.x)


class UsesBoth(dagmill.tasks.TaskPickle):
    def requires(self):
        return [Shared(x=1), Shared(x=2)]

    def run(self):
        self.save(self.inputLoad())


def test_two_tasks_writing_one_output_is_a_definition_error(data_dir: Path) -> None:
    with pytest.raises(dagmill.DefinitionError, match="written twice") as info:
        dagmill.run(UsesBoth(), execution_summary=False)
    assert Shared(x=1).task_id in str(info.value)
    assert Shared(x=2).task_id in str(info.value)
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


def test_missing_external_input_fails_before_anything_runs(isolated: Path) -> None:
    tp = plan_of(Raw())
    assert tp.state is PlanState.PENDING
    assert "raw.csv" in tp.reason
    with pytest.raises(dagmill.DefinitionError, match=r"raw\.csv"):
        dagmill.run(Report(), execution_summary=False)
    data_dir = isolated
    assert not data_dir.exists() or not any(data_dir.rglob("*"))
    db = Path(os.environ["DAGMILL_HOME"]) / "dagmill.db"
    if db.exists():
        from dagmill.store import open_store

        store = open_store()
        try:
            assert store.list_runs() == []
        finally:
            store.close()


# -- records live with the data ------------------------------------------------------------
def test_records_live_beside_outputs_and_travel_with_the_data(tmp_path: Path) -> None:
    path = write_raw("a\n")
    run_quietly(Score())
    run_quietly(Clean())
    original = settings.dirpath
    for task in (Prepare(), Fit(), Lookup(), Score(), Clean()):
        folder = Path(task.output().path).parent
        records = folder / ".dagmill-records.jsonl"
        assert records.exists(), f"no records file in {folder}"
        assert Path(task.output().path).name in records.read_text()
    assert path.exists()

    copy = tmp_path / "elsewhere" / "data-copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    dagmill.set_dir(copy)

    p, _ = make_plan([Score(), Clean()])
    assert {t: tp.state for t, tp in p.tasks.items()} == dict.fromkeys(p.tasks, PlanState.COMPLETE)
    result = run_quietly([Score(), Clean()])
    assert set(result.statuses.values()) == {TaskRunStatus.SKIPPED}
    assert Score().outputLoad() == {"score": 4}


def test_a_module_rewritten_in_place_and_reloaded_is_hashed_from_its_new_source(tmp_path, data_dir):
    """A notebook or `importlib.reload` re-imports the same file: the new code counts."""
    import importlib
    import sys as _sys

    mod_file = tmp_path / "reloaded_flow.py"
    body = (
        "import dagmill\n\n\nclass Reloaded(dagmill.tasks.TaskPickle):\n"
        "    def run(self):\n        self.save({value})\n"
    )
    mod_file.write_text(body.format(value=1))
    _sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("reloaded_flow")
        dagmill.run(mod.Reloaded(), execution_summary=False)
        mod_file.write_text(body.format(value=2) + "\n")  # other size: a new mtime/size key
        mod = importlib.reload(mod)
        plan, _ = make_plan([mod.Reloaded()])
        tp = plan.tasks[mod.Reloaded().task_id]
        assert tp.state.value == "STALE"
        assert "code of Reloaded.run changed" in tp.reason
    finally:
        _sys.path.remove(str(tmp_path))
        _sys.modules.pop("reloaded_flow", None)
