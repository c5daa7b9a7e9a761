"""A task runs at most once at a time, across processes: claims in the run record.

Two runs of one graph on one data folder (started together, a moment apart, a rerun of
a run still going) execute each task once: what one run executes, the other waits for
("running in run R") and then finds complete. A claim of a killed engine is taken over.
The runs happen in subprocesses (their own session, so a kill reaches only them); tasks
append a line to a file each time they execute, so the tests can count executions.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import dagmill
from dagmill.model.states import TaskRunStatus
from dagmill.store import NewRunTask, Store, open_store
from dagmill.store.claims import ClaimHolder
from helpers import wait_for

FLOW = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import dagmill

    HERE = Path(__file__).parent
    MARKS = HERE / "marks"
    PARTS = 16


    def ran(name):
        # one line per execution, appended atomically (O_APPEND), from any process
        MARKS.mkdir(exist_ok=True)
        fd = os.open(MARKS / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, b"%d\\n" % os.getpid())
        finally:
            os.close(fd)
        return len((MARKS / name).read_text().splitlines())


    class Step(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def requires(self):
            return [Step(i=self.i - 1)] if self.i else []

        def run(self):
            ran(f"Step-{self.i}")
            time.sleep(0.05)
            self.save(self.i)


    class Root(dagmill.tasks.TaskPickle):
        def run(self):
            ran("Root")
            time.sleep(0.05)
            self.save(1)


    class Part(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def requires(self):
            return Root()

        def run(self):
            ran(f"Part-{self.i}")
            time.sleep(0.05)
            self.save(self.i)


    class Join(dagmill.tasks.TaskPickle):
        def requires(self):
            return [Part(i=i) for i in range(PARTS)]

        def run(self):
            ran("Join")
            self.save(sum(self.inputLoad()))


    class Gate(dagmill.tasks.TaskPickle):
        def run(self):
            # its first execution holds until the test says go (or the engine is killed)
            if ran("Gate") == 1:
                deadline = time.monotonic() + 60
                while not (HERE / "go").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            self.save("gate")


    class Flaky(dagmill.tasks.TaskPickle):
        def run(self):
            # its first execution holds until the test says go, then fails
            if ran("Flaky") == 1:
                deadline = time.monotonic() + 60
                while not (HERE / "go").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                raise ValueError("the first attempt fails")
            self.save("flaky")


    class Late(dagmill.tasks.TaskPickle):
        def requires(self):
            return Gate()

        def run(self):
            ran("Late")
            self.save(self.inputLoad() + "+late")
    """
)


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _schema(database_url: str) -> None:
    """The record's schema exists before the runs start (two processes creating a new
    PostgreSQL database's schema at once is another matter)."""
    open_store(database_url).close()


def _start(tmp_path: Path, *args: str, log: str) -> subprocess.Popen:
    with open(tmp_path / log, "wb") as out:  # a file, not a pipe: nothing blocks on it
        return subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", *args],
            cwd=tmp_path, env=dict(os.environ), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _finish(tmp_path: Path, procs: dict[str, subprocess.Popen], timeout: float = 90) -> None:
    for log, p in procs.items():
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{log} did not finish in {timeout} s")
        text = (tmp_path / log).read_text(errors="replace")
        assert p.returncode == 0, f"{log}:\n{text}"


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _executions(tmp_path: Path) -> Counter[str]:
    marks = tmp_path / "marks"
    return Counter({p.name: len(p.read_text().splitlines()) for p in marks.iterdir()})


def _flow(tmp_path: Path) -> Path:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    return flow


def _runs() -> dict[str, Any]:
    with open_store() as s:
        return {r.id: (r, {t.family + str(t.params): t for t in s.get_run_tasks(r.id)})
                for r in s.list_runs()}  # fmt: skip


def _task_status(run_id: str, family: str) -> str | None:
    with open_store() as s:
        return next((t.status for t in s.get_run_tasks(run_id) if t.family == family), None)


# -- two runs of one graph at once --------------------------------------------------------
SHAPES = {
    "chain": ("Step", ["-p", "i=11"], {f"Step-{i}" for i in range(12)}),
    "fanout": ("Join", [], {"Root", "Join"} | {f"Part-{i}" for i in range(16)}),
}


@pytest.mark.parametrize("start", ["together", "apart"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_two_runs_of_one_graph_execute_each_task_once(
    shape: str, start: str, tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    task, params, names = SHAPES[shape]
    flow = _flow(tmp_path)
    args = ("run", f"{flow}:{task}", *params, "--workers", "2", "--quiet")
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, *args, log="first.log")
        if start == "apart":  # the second starts while the first executes its tasks
            wait_for(lambda: (tmp_path / "marks").exists(), timeout=30, what="a first task")
        procs["second.log"] = _start(tmp_path, *args, log="second.log")
        _finish(tmp_path, procs)
    finally:
        _stop(procs)

    executions = _executions(tmp_path)
    assert set(executions) == names
    twice = sorted(n for n, k in executions.items() if k > 1)
    assert not twice, f"executed more than once: {twice}"
    runs = _runs()
    assert len(runs) == 2
    for run, tasks in runs.values():
        assert run.status == "SUCCESS", run
        assert {t.status for t in tasks.values()} <= {"SUCCESS", "SKIPPED"}
    # between them, the two runs executed every task once
    succeeded = Counter(k for _, tasks in runs.values() for k, t in tasks.items()
                        if t.status == "SUCCESS")  # fmt: skip
    assert sorted(succeeded.values()) == [1] * len(names)
    with open_store() as s:
        assert s.claims_of() == {}, "a finished run left claims behind"


PIPELINE = """\
dataNodes:
  raw:
    source: raw.csv
  a:
    source: a.csv
  b:
    source: b.csv
  c:
    source: c.csv
  d:
    source: d.csv
processNodes:
  first:
    input: [raw]
    output: [a]
    processor: step
  second:
    input: [a]
    output: [b]
    processor: step
  third:
    input: [b]
    output: [c]
    processor: step
  side:
    input: [raw]
    output: [d]
    processor: step
"""
STEP = """\
import os
import time
from pathlib import Path

from dagmill import processor

(src,), (dst,) = processor.fetch_datanodes_information()
name = Path(dst).name.lstrip(".").split(".")[0]  # written at a temporary name: .a.csv...
marks = Path(__file__).parent / "marks"
marks.mkdir(exist_ok=True)
fd = os.open(marks / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(fd, b"1\\n")
os.close(fd)
time.sleep(0.2)
with open(src) as f, open(dst, "w") as g:
    g.write(f.read() + name + "\\n")
"""


def test_two_runs_of_one_pipeline_file_execute_each_node_once(
    tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "step.py").write_text(STEP)
    data = tmp_path / "d"
    data.mkdir()
    (data / "raw.csv").write_text("raw\n")
    args = ("run", "p.yaml", "--data", str(data), "--quiet")
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, *args, log="first.log")
        procs["second.log"] = _start(tmp_path, *args, log="second.log")
        _finish(tmp_path, procs, timeout=120)
    finally:
        _stop(procs)
    assert _executions(tmp_path) == Counter({"a": 1, "b": 1, "c": 1, "d": 1})
    assert (data / "c.csv").read_text() == "raw\na\nb\nc\n"
    assert {run.status for run, _ in _runs().values()} == {"SUCCESS"}


# -- what the waiting run shows, and does -------------------------------------------------
class _Seen:
    """A reporter that keeps every task change."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, TaskRunStatus, str]] = []

    def run_started(self, run_id: str, plan: Any) -> None:
        pass

    def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None:
        self.changes.append((task_id, status, detail))


def test_a_task_another_run_executes_waits_for_it_then_is_skipped(
    tmp_path: Path, data_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = _flow(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="first.log")
        wait_for(lambda: (tmp_path / "marks" / "Gate").exists(), timeout=30, what="Gate to run")
        (first_id,) = _runs()

        monkeypatch.syspath_prepend(os.fspath(tmp_path))
        module = importlib.import_module("flow")
        seen = _Seen()
        results: list[Any] = []
        second = threading.Thread(
            target=lambda: results.append(
                dagmill.run(module.Late(), reporter=seen, execution_summary=False)
            )
        )
        second.start()
        gate = module.Gate().task_id
        waiting = (gate, TaskRunStatus.WAITING, f"running in run {first_id}")
        try:
            wait_for(lambda: waiting in seen.changes, timeout=30, what="Gate to wait")
            assert _executions(tmp_path) == Counter({"Gate": 1})  # not started again

            def gate_waits_in_the_record() -> bool:  # what `runs show` prints for it
                return any(
                    t.task_id == gate
                    and t.history
                    and t.history[-1].waiting_for == f"running in run {first_id}"
                    for rid in _runs()
                    if rid != first_id
                    for t in dagmill.runs.get_run_tasks(rid)
                )

            wait_for(gate_waits_in_the_record, timeout=10, what="the record to say why")
        finally:
            (tmp_path / "go").touch()
            second.join(timeout=60)
        _finish(tmp_path, procs)
    finally:
        _stop(procs)
        sys.modules.pop("flow", None)

    (result,) = results
    assert result.ok
    # the first run made both; the second waited, found them complete, and went on
    assert set(result.statuses.values()) == {TaskRunStatus.SKIPPED}
    assert (gate, TaskRunStatus.SKIPPED, f"complete: run {first_id} made it") in seen.changes
    assert _executions(tmp_path) == Counter({"Gate": 1, "Late": 1})
    assert module.Late().outputLoad() == "gate+late"


def test_rerun_of_a_run_still_running_waits_for_it(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    flow = _flow(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="first.log")
        wait_for(lambda: (tmp_path / "marks" / "Gate").exists(), timeout=30, what="Gate to run")
        (first_id,) = _runs()
        procs["rerun.log"] = _start(tmp_path, "runs", "rerun", first_id, "-q", log="rerun.log")

        def rerun_waits() -> bool:
            others = [r for r in _runs() if r != first_id]
            return bool(others) and _task_status(others[0], "Gate") == "WAITING"

        wait_for(rerun_waits, timeout=30, what="the rerun to wait on Gate")
        assert _executions(tmp_path) == Counter({"Gate": 1})
        (tmp_path / "go").touch()
        _finish(tmp_path, procs)
    finally:
        _stop(procs)
    assert _executions(tmp_path) == Counter({"Gate": 1, "Late": 1})
    runs = _runs()
    assert {run.status for run, _ in runs.values()} == {"SUCCESS"}
    (rerun_tasks,) = [tasks for rid, (_, tasks) in runs.items() if rid != first_id]
    assert {t.status for t in rerun_tasks.values()} == {"SKIPPED"}


def test_a_killed_runs_claims_are_taken_over_by_the_waiting_run(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    flow = _flow(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="first.log")
        wait_for(lambda: (tmp_path / "marks" / "Gate").exists(), timeout=30, what="Gate to run")
        (first_id,) = _runs()
        procs["second.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="second.log")

        def second_waits() -> bool:
            others = [r for r in _runs() if r != first_id]
            return bool(others) and _task_status(others[0], "Gate") == "WAITING"

        wait_for(second_waits, timeout=30, what="the second run to wait on Gate")
        first = procs.pop("first.log")
        os.killpg(first.pid, signal.SIGKILL)  # the first engine dies holding Gate and Late
        first.wait()
        _finish(tmp_path, procs)  # the second takes both over (Gate no longer holds)
    finally:
        _stop(procs)
    # Gate: the killed attempt, then the second run's; Late: only the second run's
    assert _executions(tmp_path) == Counter({"Gate": 2, "Late": 1})
    runs = _runs()
    (second_id,) = [r for r in runs if r != first_id]
    second_run, second_tasks = runs[second_id]
    assert second_run.status == "SUCCESS"
    assert {t.status for t in second_tasks.values()} == {"SUCCESS"}
    with open_store() as s:
        assert set(s.claims_of().values()) <= {(first_id, f"{os.uname().nodename}:{first.pid}")}


def test_a_task_the_other_run_fails_is_taken_over_by_the_waiting_run(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    flow = _flow(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, "run", f"{flow}:Flaky", "-q", log="first.log")
        wait_for(lambda: (tmp_path / "marks" / "Flaky").exists(), timeout=30, what="Flaky")
        (first_id,) = _runs()
        procs["second.log"] = _start(tmp_path, "run", f"{flow}:Flaky", "-q", log="second.log")

        def second_waits() -> bool:
            others = [r for r in _runs() if r != first_id]
            return bool(others) and _task_status(others[0], "Flaky") == "WAITING"

        wait_for(second_waits, timeout=30, what="the second run to wait on Flaky")
        (tmp_path / "go").touch()
        first = procs.pop("first.log")
        assert first.wait(timeout=60) == 1  # its attempt failed
        _finish(tmp_path, procs)  # the second ran it itself, after the first failed it
    finally:
        _stop(procs)
    assert _executions(tmp_path) == Counter({"Flaky": 2})
    runs = _runs()
    (second_id,) = [r for r in runs if r != first_id]
    assert runs[first_id][0].status == "FAILED"
    assert runs[second_id][0].status == "SUCCESS"


def test_a_resume_racing_a_new_run_of_the_same_graph_executes_each_task_once(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    """`dagmill runs list` resumes a killed run while someone runs the graph again."""
    flow = _flow(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["first.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="first.log")
        wait_for(lambda: (tmp_path / "marks" / "Gate").exists(), timeout=30, what="Gate to run")
        (first_id,) = _runs()
        first = procs.pop("first.log")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        procs["resume.log"] = _start(tmp_path, "runs", "resume", first_id, "-q", log="resume.log")
        procs["again.log"] = _start(tmp_path, "run", f"{flow}:Late", "--quiet", log="again.log")
        _finish(tmp_path, procs)
    finally:
        _stop(procs)
    # Gate: the killed attempt, then one of the two; Late: once
    assert _executions(tmp_path) == Counter({"Gate": 2, "Late": 1})
    runs = _runs()
    assert {run.status for run, _ in runs.values()} == {"SUCCESS"}
    assert len(runs) == 2


# -- the store's claim functions ----------------------------------------------------------
def _run(store: Store, run_id: str, *task_ids: str) -> None:
    tasks = [NewRunTask(t, t, {}, (), "PENDING", "", {}, "WAITING") for t in task_ids]
    store.create_run(run_id, run_id, tasks, {})


def test_claims_in_the_store(database_url: str) -> None:
    a, b = open_store(database_url), open_store(database_url)
    try:
        _run(a, "run-a", "T1", "T2")
        _run(b, "run-b", "T2", "T3")
        me = f"{os.uname().nodename}:{os.getpid()}"
        keys = {"T1@/d/t1": "T1", "T2@/d/t2": "T2"}
        assert a.claim_tasks("run-a", keys, lease=60) == {}
        assert a.claim_tasks("run-a", keys, lease=60) == {}  # claiming again is harmless
        assert a.claims_of() == {k: ("run-a", me) for k in keys}

        # another run gets what is free, and is told who holds the rest
        held = b.claim_tasks("run-b", {"T2@/d/t2": "T2", "T3@/d/t3": "T3"}, lease=60)
        assert held == {"T2@/d/t2": ClaimHolder("run-a", me)}
        assert b.claims_of("run-b") == {"T3@/d/t3": ("run-b", me)}
        # the same task writing elsewhere is another task
        assert b.claim_tasks("run-b", {"T2@/e/t2": "T2"}, lease=60) == {}

        # the flush that records the task's end in its run releases it (no sooner)
        a.task_status("run-a", "T2", "RUNNING", 1)
        a.flush()
        assert b.claim_tasks("run-b", {"T2@/d/t2": "T2"}, lease=60) != {}
        a.task_status("run-a", "T2", "SUCCESS", 1)
        assert b.claim_tasks("run-b", {"T2@/d/t2": "T2"}, lease=60) != {}
        a.flush()
        assert b.claim_tasks("run-b", {"T2@/d/t2": "T2"}, lease=60) == {}
        assert b.claims_of()["T2@/d/t2"] == ("run-b", me)

        # a claim whose run ended is free, whoever's process it was
        a.finish_run("run-a", "FAILED")
        assert b.claim_tasks("run-b", {"T1@/d/t1": "T1"}, lease=60) == {}

        # a run's end removes its rows
        b.release_run_claims("run-b")
        assert b.claims_of() == {}
    finally:
        a.close()
        b.close()


def test_claims_of_dead_or_silent_owners_expire(database_url: str) -> None:
    live, other_host, dead = (open_store(database_url) for _ in range(3))
    try:
        for s, rid in ((live, "run-live"), (other_host, "run-far"), (dead, "run-dead")):
            _run(s, rid)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        other_host._owner = "another-host:4242"
        dead._owner = f"{os.uname().nodename}:{gone.pid}"  # a process of this host, gone
        assert other_host.claim_tasks("run-far", {"F@/d/f": "F"}, lease=60) == {}
        assert dead.claim_tasks("run-dead", {"D@/d/d": "D"}, lease=60) == {}

        keys = {"F@/d/f": "F", "D@/d/d": "D"}
        # the dead process's claim is free at once; another host's lives on its heartbeat
        held = live.claim_tasks("run-live", keys, lease=60)
        assert held == {"F@/d/f": ClaimHolder("run-far", "another-host:4242")}
        # ... until it misses them for longer than the lease
        assert live.claim_tasks("run-live", keys, lease=0.0) == {}
        me = f"{os.uname().nodename}:{os.getpid()}"
        assert live.claims_of() == {k: ("run-live", me) for k in keys}

        # a heartbeat keeps a claim alive: silent for long, then beating again
        live.release_run_claims("run-live")
        assert other_host.claim_tasks("run-far", {"F@/d/f": "F"}, lease=60) == {}
        other_host._execute("UPDATE task_claims SET heartbeat_at = 0")
        other_host.heartbeat_claims("run-far")
        other_host.flush()
        held = live.claim_tasks("run-live", {"F@/d/f": "F"}, lease=60)
        assert held == {"F@/d/f": ClaimHolder("run-far", "another-host:4242")}

        # a resumed run (same id, another process) takes its own claims back
        resumed = open_store(database_url)
        try:
            assert resumed.claim_tasks("run-far", {"F@/d/f": "F"}, lease=60) == {}
            assert resumed.claims_of() == {"F@/d/f": ("run-far", me)}
        finally:
            resumed.close()
    finally:
        for s in (live, other_host, dead):
            s.close()


def test_an_in_process_run_claims_its_tasks_and_releases_them(
    data_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data_dir.parent / "flow.py").write_text(FLOW)
    monkeypatch.syspath_prepend(os.fspath(data_dir.parent))
    try:
        module = importlib.import_module("flow")
        held_while_running: list[dict[str, tuple[str, str]]] = []

        class Watch(_Seen):
            def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None:
                if status is TaskRunStatus.RUNNING and not held_while_running:
                    with open_store() as s:
                        held_while_running.append(s.claims_of())

        result = dagmill.run(module.Step(i=3), reporter=Watch(), execution_summary=False)
        assert result.ok
    finally:
        sys.modules.pop("flow", None)
    (claims,) = held_while_running
    step0 = module.Step(i=0)
    assert claims[f"{step0.task_id}@{step0.output().path}"][0] == result.run_id
    assert len(claims) == 4
    with open_store() as s:
        assert s.claims_of() == {}
