"""Jobs and the run record from the command line: build a pipeline once (validated, its
definition pinned), run it many times (here or in the background), and manage its runs:
list, show, cancel, delete, rerun, expire (TTL gc).

Every CLI call is a fresh `python -m dagmill.cli.main` in a subprocess, as a user types it.
The flow file is written into the test's own folder, so a test may edit it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dagmill
import dagmill.runs
from dagmill.errors import DefinitionError
from dagmill.services.execution import RunOptions
from dagmill.services.jobs import build_job, run_job, start_job
from dagmill.store import open_store
from dagmill.store.migrate import LATEST
from helpers import wait_for

FLOW = textwrap.dedent(
    '''
    """Tasks the job tests build into jobs."""
    import os
    import subprocess
    import time
    from pathlib import Path

    import dagmill

    HERE = Path(__file__).parent
    if (HERE / "block-import").exists():  # a slow import (pandas, torch ...), on demand
        (HERE / "importing").write_text(str(os.getpid()))
        deadline = time.time() + 20
        while (HERE / "block-import").exists() and time.time() < deadline:
            time.sleep(0.02)


    def _ran(name):
        with open(HERE / f"ran-{name}", "a") as f:
            f.write("ran\\n")


    class Numbers(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter(default=5)

        def run(self):
            _ran("Numbers")
            self.save(list(range(self.n)))


    @dagmill.requires(Numbers)
    class Total(dagmill.tasks.TaskJson):
        def run(self):
            _ran("Total")
            if (HERE / "fail-total").exists():
                raise ValueError("told to fail by fail-total")
            self.save({"total": sum(self.inputLoad())})


    @dagmill.requires(Numbers)
    class Broken(dagmill.tasks.TaskJson):
        def run(self):
            raise ValueError("the numbers do not add up")


    class CycA(dagmill.tasks.TaskPickle):
        def requires(self):
            return CycB()

        def run(self):
            self.save(1)


    class CycB(dagmill.tasks.TaskPickle):
        def requires(self):
            return CycA()

        def run(self):
            self.save(1)


    class Sleepy(dagmill.tasks.TaskPickle):
        def run(self):
            child = subprocess.Popen(["sleep", "60"])
            tmp = HERE / "sleepy-pids.tmp"
            tmp.write_text(f"{child.pid} {os.getpid()}")
            tmp.rename(HERE / "sleepy-pids")
            time.sleep(60)
            self.save(1)
    '''
)


# -- helpers ----------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250"}
    env.pop("PYTHONUNBUFFERED", None)  # as on a user's machine
    return env


def dagmill_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`dagmill ARGS` as a user runs it (DAGMILL_HOME and the database from the fixtures)."""
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def ok(*args: str, cwd: Path) -> str:
    out = dagmill_cli(*args, cwd=cwd)
    assert out.returncode == 0, (
        f"dagmill {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    )
    return out.stdout


def run_status(run_id: str) -> str:
    return dagmill.runs.get_run(run_id).status


def wait_until_ended(run_id: str, timeout: float = 30) -> str:
    wait_for(
        lambda: run_status(run_id) in ("SUCCESS", "FAILED", "CANCELLED"),
        timeout,
        f"run {run_id} to end",
    )
    return run_status(run_id)


def ran(tmp_path: Path, family: str) -> int:
    """How many times the task's run() ran (the flow appends a line each time)."""
    f = tmp_path / f"ran-{family}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def jobs_json(tmp_path: Path) -> list[dict[str, Any]]:
    return json.loads(ok("jobs", "list", "--json", cwd=tmp_path))


def runs_of(job_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    return json.loads(ok("runs", "list", "--job", job_id, "--json", cwd=tmp_path))


def run_id_from_summary(stdout: str) -> str:
    """The run id from the last line `run ID: STATUS` that `dagmill run` prints."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("run ")]
    assert lines, stdout
    return lines[-1].split()[1].rstrip(":")


def logs_dir(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / ".dagmill" / "logs" / run_id


def _proc_alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has stopped


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "jobflow.py"
    path.write_text(FLOW)
    return path


# -- build ------------------------------------------------------------------------------
def test_build_prints_a_job_id_and_the_job_is_listed_ready(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    out = ok("jobs", "build", f"{flow}:Total", "-p", "n=7", "--data", "out", cwd=tmp_path)
    job_id = out.strip()
    assert job_id and len(out.splitlines()) == 1, out

    table = ok("jobs", "list", cwd=tmp_path)
    row = next(line for line in table.splitlines() if job_id in line)
    assert "READY" in row and "Total" in row, table
    wide = ok("jobs", "list", "--wide", cwd=tmp_path)  # with what it runs
    assert f"{flow}:Total -p n=7" in next(x for x in wide.splitlines() if job_id in x), wide

    (job,) = jobs_json(tmp_path)
    assert job["id"] == job_id
    assert job["name"] == "Total"
    assert job["status"] == "READY" and job["last_run_id"] is None
    assert job["params"] == {"n": "7"}
    assert job["data_dir"] == os.fspath(tmp_path / "out")
    assert job["ref"] == f"{flow}:Total"
    assert job["version"].startswith("sha256:")
    # building validates, it does not run anything
    assert not (tmp_path / "out").exists() and ran(tmp_path, "Numbers") == 0
    assert runs_of(job_id, tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        ([":Totl"], "did you mean 'Total'"),
        ([":Total", "-p", "m=3"], "unknown parameter 'm'"),
        ([":Total", "-p", "n=three"], "'n' expects an integer"),
        ([":CycA"], "the task graph has a cycle"),
    ],
    ids=["unknown-task", "unknown-param", "bad-param-value", "cycle"],
)
def test_bad_input_to_build_exits_2_and_records_no_job(
    flow: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = dagmill_cli("jobs", "build", f"{flow}{args[0]}", *args[1:], cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    assert jobs_json(tmp_path) == []


# -- run --------------------------------------------------------------------------------
def test_run_a_job_here_then_in_the_background(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    job_id = ok("jobs", "build", f"{flow}:Total", "-p", "n=7", "--data", "out", cwd=tmp_path)
    job_id = job_id.strip()

    waited = dagmill_cli("jobs", "run", job_id, "--wait", cwd=tmp_path)
    assert waited.returncode == 0, waited.stderr
    first = run_id_from_summary(waited.stdout)
    assert waited.stdout.rstrip().endswith(f"run {first}: SUCCESS")
    assert run_status(first) == "SUCCESS"
    assert dagmill.runs.get_run(first).job_id == job_id
    totals = list((tmp_path / "out" / "Total").glob("*.json"))
    assert len(totals) == 1 and json.loads(totals[0].read_text()) == {"data": {"total": 21}}
    (job,) = jobs_json(tmp_path)
    assert (job["status"], job["last_run_id"]) == ("SUCCESS", first)

    # in the background: the command prints the run id at once, the run goes on without it
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            f.unlink()  # so the background run has work to do
    started = time.monotonic()
    out = ok("jobs", "run", job_id, cwd=tmp_path)
    assert time.monotonic() - started < 10
    second = out.strip()
    assert len(out.splitlines()) == 1 and second != first
    assert dagmill.runs.get_run(second).job_id == job_id
    assert wait_until_ended(second) == "SUCCESS"
    assert ran(tmp_path, "Total") == 2
    assert {t.family: t.status for t in dagmill.runs.get_run_tasks(second)} == {
        "Numbers": "SUCCESS",
        "Total": "SUCCESS",
    }
    (job,) = jobs_json(tmp_path)
    assert (job["status"], job["last_run_id"]) == ("SUCCESS", second)

    # jobs show, and runs list --job: the recent runs, newest first
    shown = json.loads(ok("jobs", "show", job_id, "--json", cwd=tmp_path))
    assert shown["job"]["id"] == job_id
    assert [r["id"] for r in shown["runs"]] == [second, first]
    assert all(r["status"] == "SUCCESS" for r in shown["runs"])
    text = ok("jobs", "show", job_id, cwd=tmp_path)
    assert job_id in text and first in text and second in text and "n=7" in text
    assert [r["id"] for r in runs_of(job_id, tmp_path)] == [second, first]
    table = ok("runs", "list", "--job", job_id, cwd=tmp_path)
    assert first in table and second in table


def test_a_background_job_run_with_json_prints_its_run_as_json(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    # it printed the bare run id, which no JSON reader takes
    job_id = ok("jobs", "build", f"{flow}:Total", cwd=tmp_path).strip()
    run = json.loads(ok("jobs", "run", job_id, "--json", cwd=tmp_path))
    assert run["job_id"] == job_id and run["status"] in ("PENDING", "RUNNING", "SUCCESS")
    assert run["created_at_iso"].endswith("+00:00")
    assert wait_until_ended(run["id"]) == "SUCCESS"


def test_a_background_run_stopped_by_bad_input_ends_failed_with_the_message(
    tmp_path: Path,
) -> None:
    # its missing input was found in the background process: the queued run stayed
    # RUNNING, and each `dagmill runs ...` started a "resume" that failed the same way
    (tmp_path / "mover.py").write_text("from dagmill import processor\n")
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n  raw: {source: raw.csv}\n  out: {source: out.csv}\n"
        "processNodes:\n  move: {input: [raw], output: [out], processor: mover}\n"
    )
    job_id = ok("jobs", "build", "p.yaml", cwd=tmp_path).strip()
    run_id = ok("jobs", "run", job_id, cwd=tmp_path).strip()
    assert wait_until_ended(run_id) == "FAILED"
    error = dagmill.runs.get_run(run_id).error or ""
    assert error.startswith("missing inputs: raw.csv: external input "), error
    listed = dagmill_cli("runs", "list", cwd=tmp_path)
    assert "resuming" not in listed.stderr, listed.stderr


def test_resuming_a_run_that_bad_input_stops_ends_it_failed(tmp_path: Path) -> None:
    # a resume that found the input gone left the run RUNNING: resumed again and again
    (tmp_path / "mover.py").write_text("from dagmill import processor\n")
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n  raw: {source: raw.csv}\n  out: {source: out.csv}\n"
        "processNodes:\n  move: {input: [raw], output: [out], processor: mover}\n"
    )
    run_id = "20261121-101500-dddddd"
    died = subprocess.run(  # a run whose engine (this short process) is gone
        [sys.executable, "-c", textwrap.dedent(f"""
            from dagmill.model.runs import RunTarget
            from dagmill.store import NewRunTask, open_store
            s = open_store()
            target = RunTarget("yaml", {str(tmp_path / "p.yaml")!r}, {{}}, {str(tmp_path)!r})
            task = NewRunTask("move", "move", {{}}, [], "PENDING", "", {{}}, "WAITING")
            s.create_run({run_id!r}, "p", [task], target=target)
            s.close()
        """)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert died.returncode == 0, died.stderr
    out = dagmill_cli("runs", "resume", run_id, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "missing inputs: raw.csv" in out.stderr and "Traceback" not in out.stderr
    info = dagmill.runs.get_run(run_id)
    assert info.status == "FAILED" and (info.error or "").startswith("missing inputs: raw.csv")


def test_a_resume_runs_with_the_workers_the_run_had(tmp_path: Path, flow: Path) -> None:
    # the automatic resume (and `runs resume` without -w) ran a 2-worker run on one
    run_id = "20261121-101500-eeeeee"
    died = subprocess.run(  # a run whose engine (this short process) is gone
        [sys.executable, "-c", textwrap.dedent(f"""
            from dagmill.model.runs import RunTarget
            from dagmill.store import NewRunTask, open_store
            s = open_store()
            target = RunTarget("python", {f"{flow}:Total"!r}, {{}}, {str(tmp_path / "out")!r})
            task = NewRunTask("t", "Total", {{}}, [], "PENDING", "", {{}}, "WAITING")
            s.create_run({run_id!r}, "Total", [task], {{"workers": 2}}, target=target)
            s.close()
        """)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert died.returncode == 0, died.stderr
    out = dagmill_cli("runs", "resume", run_id, "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    info = dagmill.runs.get_run(run_id)
    assert info.status == "SUCCESS" and info.options["workers"] == 2, info.options


def test_a_failing_job_is_failed(database_url: str, flow: Path, tmp_path: Path) -> None:
    job_id = ok("jobs", "build", f"{flow}:Broken", cwd=tmp_path).strip()
    out = dagmill_cli("jobs", "run", job_id, "--wait", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the numbers do not add up" in out.stderr
    run_id = run_id_from_summary(out.stdout)
    assert run_status(run_id) == "FAILED"
    assert "the numbers do not add up" in (dagmill.runs.get_run(run_id).error or "")
    (job,) = jobs_json(tmp_path)
    assert (job["status"], job["last_run_id"]) == ("FAILED", run_id)

    background = ok("jobs", "run", job_id, cwd=tmp_path).strip()
    assert wait_until_ended(background) == "FAILED"
    (job,) = jobs_json(tmp_path)
    assert (job["status"], job["last_run_id"]) == ("FAILED", background)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace('raise ValueError("the numbers', 'raise KeyError("the numbers'),
        lambda s: s + "\n# only a comment\n",
    ],
    ids=["code-change", "comment-only"],
)
def test_a_job_whose_flow_file_changed_refuses_to_run(
    flow: Path, tmp_path: Path, edit: Callable[[str], str]
) -> None:
    job_id = ok("jobs", "build", f"{flow}:Total", cwd=tmp_path).strip()
    before = flow.read_text()
    flow.write_text(edit(before))
    assert flow.read_text() != before

    for args in (["--wait"], []):
        out = dagmill_cli("jobs", "run", job_id, *args, cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "build a new job" in out.stderr and job_id in out.stderr
        assert "Traceback" not in out.stderr
    assert runs_of(job_id, tmp_path) == []
    assert ran(tmp_path, "Total") == 0

    # a job built from the changed file runs
    new_id = ok("jobs", "build", f"{flow}:Total", cwd=tmp_path).strip()
    assert new_id != job_id
    assert dagmill_cli("jobs", "run", new_id, "--wait", cwd=tmp_path).returncode == 0


def test_a_changed_job_names_the_build_command_with_its_params_and_data(
    flow: Path, tmp_path: Path
) -> None:
    # the command it suggested dropped -p and --data: the new job ran with defaults
    job_id = ok("jobs", "build", f"{flow}:Total", "-p", "n=7", "--data", "my out", cwd=tmp_path)
    flow.write_text(flow.read_text() + "\n# changed\n")
    out = dagmill_cli("jobs", "run", job_id.strip(), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    data = tmp_path / "my out"
    assert f"(`dagmill jobs build {flow}:Total -p n=7 --data '{data}'`)" in out.stderr


def test_unknown_job_exits_2(tmp_path: Path) -> None:
    for args in (["run", "jnope"], ["run", "jnope", "--wait"], ["show", "jnope"],
                 ["delete", "jnope", "-y"]):  # fmt: skip
        out = dagmill_cli("jobs", *args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "no job 'jnope'" in out.stderr


# -- delete -----------------------------------------------------------------------------
def test_delete_a_job_removes_it_its_runs_and_their_logs(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    job_id = build_job(f"{flow}:Total", {}, data_dir="out").id
    other = build_job(f"{flow}:Total", {}, data_dir="out2").id

    def run(job: str) -> str:
        result = run_job(job, options=RunOptions(execution_summary=False))
        assert result is not None
        return result.run_id

    mine = [run(job_id), run(job_id)]
    kept = run(other)
    assert all(logs_dir(tmp_path, r).is_dir() for r in [*mine, kept])

    out = ok("jobs", "delete", job_id, "-y", cwd=tmp_path)
    assert f"deleted job {job_id} and 2 runs" in out
    assert [j["id"] for j in jobs_json(tmp_path)] == [other]
    assert runs_of(job_id, tmp_path) == []
    for run_id in mine:
        with pytest.raises(DefinitionError):
            dagmill.runs.get_run(run_id)
        assert not logs_dir(tmp_path, run_id).exists()
        assert dagmill_cli("runs", "show", run_id, cwd=tmp_path).returncode == 2
    # the other job, its run and its logs are untouched; so is the data the runs wrote
    assert [r["id"] for r in runs_of(other, tmp_path)] == [kept]
    assert logs_dir(tmp_path, kept).is_dir()
    assert list((tmp_path / "out" / "Total").glob("*.json"))
    assert dagmill_cli("jobs", "show", job_id, cwd=tmp_path).returncode == 2


def test_deleting_a_job_whose_run_is_running_leaves_nothing_running_untracked(
    flow: Path, tmp_path: Path
) -> None:
    """Either the delete is refused (the run can still be cancelled), or the run is stopped:
    never a run that goes on with no record to see or cancel it by."""
    job_id = ok("jobs", "build", f"{flow}:Sleepy", cwd=tmp_path).strip()
    run_id = ok("jobs", "run", job_id, cwd=tmp_path).strip()
    pids: list[int] = []
    try:
        wait_for((tmp_path / "sleepy-pids").exists, 20, "the Sleepy task to start")
        engine = int(str(dagmill.runs.get_run(run_id).owner).rpartition(":")[2])
        pids = [*map(int, (tmp_path / "sleepy-pids").read_text().split()), engine]

        out = dagmill_cli("jobs", "delete", job_id, "-y", cwd=tmp_path)
        if out.returncode == 2:  # refused, with the way out
            assert "cancel" in out.stderr, out.stderr
            assert run_status(run_id) == "RUNNING"
            assert [j["id"] for j in jobs_json(tmp_path)] == [job_id]
        else:
            assert out.returncode == 0, out.stdout + out.stderr
            for pid in pids:
                wait_for(
                    lambda pid=pid: not _proc_alive(pid),
                    5,
                    f"process {pid} of the deleted job's run {run_id} to stop "
                    "(it runs on with no record: `dagmill runs cancel` cannot reach it)",
                )
    finally:
        for pid in pids:
            if _proc_alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- cancel and delete runs -------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])
def test_cancel_a_background_run_stops_it_and_what_it_started(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    job_id = ok("jobs", "build", f"{flow}:Sleepy", cwd=tmp_path).strip()
    run_id = ok("jobs", "run", job_id, "--workers", str(workers), cwd=tmp_path).strip()
    pids_file = tmp_path / "sleepy-pids"
    child = task_pid = engine = None
    try:
        wait_for(pids_file.exists, 20, "the Sleepy task to start")
        child, task_pid = map(int, pids_file.read_text().split())
        info = dagmill.runs.get_run(run_id)
        assert info.status == "RUNNING"
        engine = int(str(info.owner).rpartition(":")[2])
        assert _proc_alive(child) and _proc_alive(engine)

        # a running run cannot be deleted
        refused = dagmill_cli("runs", "delete", run_id, "-y", cwd=tmp_path)
        assert refused.returncode == 2
        assert "cancel it first" in refused.stderr
        assert run_status(run_id) == "RUNNING"

        began = time.monotonic()
        out = ok("runs", "cancel", run_id, cwd=tmp_path)
        assert f"cancelled run {run_id}" in out
        assert time.monotonic() - began < 10
        assert run_status(run_id) == "CANCELLED"
        tasks = dagmill.runs.get_run_tasks(run_id)
        assert [(t.family, t.status) for t in tasks] == [("Sleepy", "CANCELLED")]
        assert tasks[0].history[-1].status == "CANCELLED"
        for pid, what in ((child, "the task's `sleep 60`"), (task_pid, "the task's process"),
                          (engine, "the engine")):  # fmt: skip
            wait_for(lambda pid=pid: not _proc_alive(pid), 5, f"{what} ({pid}) to stop")
        assert not list((tmp_path / "data").rglob("*.pkl"))

        # cancelled: now it can be deleted, with its logs
        assert logs_dir(tmp_path, run_id).is_dir()
        out = ok("runs", "delete", run_id, "-y", cwd=tmp_path)
        assert f"deleted run {run_id}" in out
        with pytest.raises(DefinitionError):
            dagmill.runs.get_run(run_id)
        assert not logs_dir(tmp_path, run_id).exists()
        assert runs_of(job_id, tmp_path) == []
    finally:
        for pid in (child, task_pid, engine):
            if pid is not None and _proc_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_cancel_while_the_engine_starts_up_is_not_lost(flow: Path, tmp_path: Path) -> None:
    """A run is cancelled in the second or so its engine spends importing the flow (after it
    took the queued run): it must end CANCELLED and its tasks must not run later."""
    job_id = build_job(f"{flow}:Total", {}, data_dir="out").id
    (tmp_path / "block-import").write_text("")
    run_id = ok("jobs", "run", job_id, cwd=tmp_path).strip()
    try:
        wait_for((tmp_path / "importing").exists, 20, "the engine to import the flow")
        assert run_status(run_id) == "RUNNING"  # the engine has taken the run
        message = dagmill.runs.cancel_run(run_id, wait=3)
        status_after_cancel = run_status(run_id)
        ok("runs", "list", cwd=tmp_path)  # what any later `runs` command does first
        (tmp_path / "block-import").unlink()
        wait_for(
            lambda: run_status(run_id) != "RUNNING" and not _pids_running(run_id),
            10,
            f"run {run_id} to end",
        )
        outcome = {
            "cancel said it cancelled": message.startswith("cancelled"),
            "status after cancel": status_after_cancel,
            "final status": run_status(run_id),
            "tasks ran": ran(tmp_path, "Numbers") + ran(tmp_path, "Total"),
        }
        assert outcome == {
            "cancel said it cancelled": True,
            "status after cancel": "CANCELLED",
            "final status": "CANCELLED",
            "tasks ran": 0,
        }
    finally:
        (tmp_path / "block-import").unlink(missing_ok=True)
        for pid in _pids_running(run_id):
            os.kill(pid, signal.SIGKILL)


def test_cancel_a_queued_run(database_url: str, flow: Path, tmp_path: Path) -> None:
    job = build_job(f"{flow}:Total", {}, data_dir=os.fspath(tmp_path / "out"))
    run_id = "20260101-000000-abc123"
    store = open_store()
    try:
        store.queue_run(run_id, job.name, job.id, job.target())
    finally:
        store.close()
    assert run_status(run_id) == "PENDING"
    (listed,) = jobs_json(tmp_path)
    assert listed["status"] == "PENDING"

    out = ok("runs", "cancel", run_id, cwd=tmp_path)
    assert "before it started" in out
    assert run_status(run_id) == "CANCELLED"
    # the process that was to start it finds it cancelled and runs nothing
    late = dagmill_cli("jobs", "run", job.id, "--wait", "--run-id", run_id, cwd=tmp_path)
    assert late.returncode == 130, late.stdout + late.stderr
    assert "cancelled before it started" in late.stderr
    assert run_status(run_id) == "CANCELLED"
    assert ran(tmp_path, "Numbers") == 0 and ran(tmp_path, "Total") == 0
    # ended runs are left alone by a second cancel
    assert "already ended: CANCELLED" in ok("runs", "cancel", run_id, cwd=tmp_path)


def test_cancel_right_after_start_job(flow: Path, tmp_path: Path) -> None:
    job = build_job(f"{flow}:Sleepy", {})
    run_id = start_job(job.id)
    message = dagmill.runs.cancel_run(run_id)
    assert "cancelled" in message, message
    assert wait_until_ended(run_id, timeout=15) == "CANCELLED"
    engine_log = logs_dir(tmp_path, run_id) / "engine.log"
    # the background engine ends by itself (it finds its run cancelled, or is stopped)
    wait_for(
        lambda: not _pids_running(run_id),
        15,
        f"the engine of {run_id} to exit ({engine_log.read_text() if engine_log.exists() else ''})",
    )
    pids_file = tmp_path / "sleepy-pids"
    if pids_file.exists():  # it had started the task: what the task started is gone too
        for pid in map(int, pids_file.read_text().split()):
            wait_for(lambda pid=pid: not _proc_alive(pid), 5, f"the task's process {pid} to stop")
    assert run_status(run_id) == "CANCELLED"


def _pids_running(needle: str) -> list[int]:
    """Live processes whose command line mentions ``needle``."""
    found = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (p / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(p.name))
        except OSError:
            continue
    return [pid for pid in found if _proc_alive(pid)]


def test_delete_a_finished_run(database_url: str, flow: Path, tmp_path: Path) -> None:
    out = dagmill_cli("run", f"{flow}:Total", cwd=tmp_path)
    run_id = run_id_from_summary(out.stdout)
    keep = run_id_from_summary(dagmill_cli("run", f"{flow}:Broken", cwd=tmp_path).stdout)
    assert logs_dir(tmp_path, run_id).is_dir()
    assert f"deleted run {run_id}" in ok("runs", "delete", run_id, "-y", cwd=tmp_path)
    assert [r.id for r in dagmill.runs.get_runs()] == [keep]
    assert not logs_dir(tmp_path, run_id).exists()
    assert dagmill_cli("runs", "delete", run_id, "-y", cwd=tmp_path).returncode == 2


# -- rerun ------------------------------------------------------------------------------
def test_rerun_runs_everything_again(database_url: str, flow: Path, tmp_path: Path) -> None:
    job_id = ok("jobs", "build", f"{flow}:Total", cwd=tmp_path).strip()
    first = run_id_from_summary(ok("jobs", "run", job_id, "--wait", cwd=tmp_path))
    assert (ran(tmp_path, "Numbers"), ran(tmp_path, "Total")) == (1, 1)

    out = dagmill_cli("runs", "rerun", first, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    again = run_id_from_summary(out.stdout)
    assert again != first
    assert out.stdout.rstrip().endswith(f"run {again}: SUCCESS")
    assert (ran(tmp_path, "Numbers"), ran(tmp_path, "Total")) == (2, 2)
    tasks = {t.family: t for t in dagmill.runs.get_run_tasks(again)}
    assert {f: (t.status, t.attempts) for f, t in tasks.items()} == {
        "Numbers": ("SUCCESS", 1),
        "Total": ("SUCCESS", 1),
    }
    assert all(len(t.history) == 1 and t.history[0].status == "SUCCESS" for t in tasks.values())
    rerun = dagmill.runs.get_run(again)
    assert rerun.status == "SUCCESS" and rerun.job_id == job_id
    assert [r["id"] for r in runs_of(job_id, tmp_path)] == [again, first]
    # the first run's record is unchanged
    assert run_status(first) == "SUCCESS"


def test_rerun_from_failed_skips_what_is_complete(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    (tmp_path / "fail-total").write_text("")
    out = dagmill_cli("run", f"{flow}:Total", "-p", "n=4", cwd=tmp_path)
    assert out.returncode == 1
    failed = run_id_from_summary(out.stdout)
    assert {t.family: t.status for t in dagmill.runs.get_run_tasks(failed)} == {
        "Numbers": "SUCCESS",
        "Total": "FAILED",
    }

    (tmp_path / "fail-total").unlink()
    out = dagmill_cli("runs", "rerun", failed, "--from-failed", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    again = run_id_from_summary(out.stdout)
    assert (ran(tmp_path, "Numbers"), ran(tmp_path, "Total")) == (1, 2)
    assert {t.family: t.status for t in dagmill.runs.get_run_tasks(again)} == {
        "Numbers": "SKIPPED",
        "Total": "SUCCESS",
    }
    # with the same parameters as the run it reruns
    totals = list((tmp_path / "data" / "Total").glob("*.json"))
    assert [json.loads(p.read_text()) for p in totals] == [{"data": {"total": 6}}]


class PyOnly(dagmill.tasks.TaskPickle):
    def run(self) -> None:
        self.save(1)


def test_a_run_started_from_python_cannot_be_rerun(tmp_path: Path) -> None:
    result = dagmill.run(PyOnly(), execution_summary=False)
    assert result is not None and result.ok
    out = dagmill_cli("runs", "rerun", result.run_id, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "started from Python" in out.stderr
    assert "Traceback" not in out.stderr
    assert [r.id for r in dagmill.runs.get_runs()] == [result.run_id]  # no new run


# -- TTL gc -----------------------------------------------------------------------------
def test_gc_removes_runs_past_their_jobs_ttl(database_url: str, flow: Path, tmp_path: Path) -> None:
    ttl = {"secondsAfterSuccess": 0, "secondsAfterFailure": None}
    good = build_job(f"{flow}:Total", {}, data_dir="out", ttl=ttl)
    bad = build_job(f"{flow}:Broken", {}, data_dir="out", ttl=ttl)
    default = build_job(f"{flow}:Total", {"n": "3"}, data_dir="out")
    ran_ok = run_job(good.id, options=RunOptions(abort=False, execution_summary=False))
    ran_bad = run_job(bad.id, options=RunOptions(abort=False, execution_summary=False))
    ran_default = run_job(default.id, options=RunOptions(abort=False, execution_summary=False))
    assert ran_ok is not None and ran_bad is not None and ran_default is not None
    assert (ran_ok.status.value, ran_bad.status.value) == ("SUCCESS", "FAILED")
    for r in (ran_ok, ran_bad, ran_default):
        assert logs_dir(tmp_path, r.run_id).is_dir()

    dry = ok("gc", "--dry-run", cwd=tmp_path)
    assert f"would remove 1 expired runs: {ran_ok.run_id}" in dry
    assert run_status(ran_ok.run_id) == "SUCCESS"

    out = ok("gc", cwd=tmp_path)
    assert f"removed 1 expired runs: {ran_ok.run_id}" in out
    with pytest.raises(DefinitionError):
        dagmill.runs.get_run(ran_ok.run_id)
    assert not logs_dir(tmp_path, ran_ok.run_id).exists()
    # a failure is kept forever (None), a success under the default TTL (1200 s) for now
    assert run_status(ran_bad.run_id) == "FAILED"
    assert run_status(ran_default.run_id) == "SUCCESS"
    assert logs_dir(tmp_path, ran_bad.run_id).is_dir()
    assert logs_dir(tmp_path, ran_default.run_id).is_dir()
    assert "removed 0 expired runs" in ok("gc", cwd=tmp_path)
    # the default TTL does expire, later
    later = time.time() + 7200 + 1
    assert set(dagmill.runs.collect_garbage(dry_run=True, now=later)) == {ran_default.run_id}


# -- db ---------------------------------------------------------------------------------
def test_db_upgrade_prints_the_schema_version(database_url: str, tmp_path: Path) -> None:
    for _ in range(2):  # creating, then already up to date
        out = dagmill_cli("db", "upgrade", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert f"schema version {LATEST}" in out.stdout
    store = open_store()
    try:
        assert store.schema_version == LATEST
    finally:
        store.close()
