"""Projects from the command line: create, list, show, set and delete them; jobs and runs
that belong to one; a task above its project's whole quota refused at `jobs build`,
`dagmill run` and `jobs run`; and the acceptance of issue 9: two jobs of a project whose
quota fits one task at a time, started at once (by two `jobs run --wait` processes, and by
a `dagmill server`), never run their tasks at the same time, and the waiting task says
which run holds the quota.

Every CLI call is a real `python -m dagmill.cli.main` subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagmill.model.projects import ProjectUsage
from dagmill.model.resources import Resources
from dagmill.store import open_store
from helpers import wait_for
from servers import Project

pytestmark = pytest.mark.timeout(120)

# the quota: 2 CPUs, each task wants 2 (a 1-core machine cannot run a 2-CPU task
# at all: there, 1 and 1, which is the same one-at-a-time)
CPUS = 2 if (os.cpu_count() or 1) >= 2 else 1

FLOW = textwrap.dedent(
    f"""
    import json, os, time
    from pathlib import Path

    import dagmill

    HERE = Path(__file__).parent


    class Hold(dagmill.tasks.TaskPickle):
        '''Holds the project's whole quota until the test writes HERE/release.'''

        n = dagmill.IntParameter()
        resources = {{"cpu": {CPUS}}}

        def run(self):
            start = time.time()
            deadline = start + 30
            while not (HERE / "release").exists() and time.time() < deadline:
                time.sleep(0.02)
            line = json.dumps({{"n": self.n, "start": start, "end": time.time()}}) + "\\n"
            fd = os.open(HERE / "intervals.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, line.encode())
            os.close(fd)
            self.save(self.n)


    class Big(dagmill.tasks.TaskPickle):
        resources = {{"cpu": 1, "memory": "64Mi"}}

        def run(self):
            self.save(1)
    """
)

BIG_PIPELINE = """\
processNodes:
  crunch:
    processor: crunch
    resources: {cpu: 1}
"""


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(*args: str, cwd: Path) -> str:
    done = cli(*args, cwd=cwd)
    assert done.returncode == 0, f"dagmill {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def bad(*args: str, cwd: Path) -> str:
    """The error of a command that must exit 2 with a message and no traceback."""
    done = cli(*args, cwd=cwd)
    assert done.returncode == 2, f"dagmill {' '.join(args)}:\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    return done.stderr


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    return path


def _projects(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(ok("projects", "list", "--json", cwd=tmp_path))}


# -- CRUD and bad input ------------------------------------------------------------------
def test_create_list_show_set_delete(database_url: str, tmp_path: Path) -> None:
    out = ok(
        "projects", "create", "ml", "--cpu", "8", "--memory", "16Gi", "--gpu", "1",
        "--description", "the ML team", cwd=tmp_path,
    )  # fmt: skip
    assert out.startswith("created project ml: cpu 0 of 8, memory 0 of 16Gi, gpu 0 of 1")
    listed = _projects(tmp_path)
    assert set(listed) == {"default", "ml"}, "the default project always exists"
    ml = listed["ml"]
    assert ml["quota"] == {"cpu": "8", "memory": "16Gi", "gpu": 1}
    assert ml["used"] == {"cpu": "0", "memory": "0", "gpu": 0}
    assert (ml["description"], ml["jobs"], ml["running"], ml["pending"]) == ("the ML team", 0, 0, 0)
    assert ml["created_at_iso"].endswith("+00:00")
    table = ok("projects", "list", cwd=tmp_path)
    assert max(map(len, table.splitlines())) <= 80
    assert table.split()[:7] == ["PROJECT", "CPU", "MEMORY", "GPU", "RUNNING", "PENDING", "JOBS"]
    assert "ml       0/8  0/16Gi" in table

    ok("projects", "set", "ml", "--cpu", "500m", "--unset", "gpu", "-q", cwd=tmp_path)
    shown = json.loads(ok("projects", "show", "ml", "--json", cwd=tmp_path))
    assert shown["quota"] == {"cpu": "500m", "memory": "16Gi"}
    assert shown["limits"] == {"cpu": "500m", "memory": "16Gi", "gpu": None}
    assert shown["running_tasks"] == [] and shown["pending_tasks"] == []
    text = ok("projects", "show", "ml", cwd=tmp_path)
    assert "quota    cpu 500m, memory 16Gi, gpu: no limit" in text

    # the default project's unset limits are this machine's; it can be limited too
    ok("projects", "set", "default", "--memory", "1Gi", cwd=tmp_path)
    default = _projects(tmp_path)["default"]
    assert default["limits"]["memory"] == "1Gi" and default["limits"]["cpu"] is not None

    assert ok("projects", "delete", "ml", "-y", cwd=tmp_path) == "deleted project ml\n"
    assert ok("projects", "list", "-q", cwd=tmp_path).split() == ["default"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "ML"], "project name 'ML': use lower-case letters"),
        (["create", "ml", "--cpu", "lots"], "--cpu 'lots': cpu: expected a number"),
        (["create", "ml", "--memory", "16GB"], "--memory '16GB'"),
        (["create", "ml", "--gpu", "-1"], "--gpu '-1'"),
        (["create", "default"], "project 'default' exists already"),
        (["set", "nope", "--cpu", "1"], "no project 'nope'"),
        (["set", "default"], "nothing to change in project default"),
        (["set", "default", "--unset", "cpus"], "--unset 'cpus': not a resource (did you mean"),
        (["set", "default", "--cpu", "2", "--unset", "cpu"], "--cpu and --unset cpu"),
        (["show", "nope"], "no project 'nope'"),
        (["delete", "default", "-y"], "'default' cannot be deleted"),
        (["delete", "nope", "-y"], "no project 'nope'"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    before = ok("projects", "list", "--json", cwd=tmp_path)
    assert says in bad("projects", *args, cwd=tmp_path)
    after = ok("projects", "list", "--json", cwd=tmp_path)
    assert json.loads(after) == json.loads(before)


def test_a_project_with_a_job_or_a_run_in_progress_is_not_deleted(
    tmp_path: Path, flow: Path
) -> None:
    ok("projects", "create", "ml", "--cpu", str(CPUS), cwd=tmp_path)
    job = ok("jobs", "build", f"{flow}:Hold", "-p", "n=1", "--project", "ml", cwd=tmp_path)
    job = job.strip()
    assert json.loads(ok("jobs", "show", job, "--json", cwd=tmp_path))["job"]["project"] == "ml"
    assert [
        j["id"] for j in json.loads(ok("jobs", "list", "--project", "ml", "--json", cwd=tmp_path))
    ] == [job]
    assert json.loads(ok("jobs", "list", "--project", "default", "--json", cwd=tmp_path)) == []
    assert _projects(tmp_path)["ml"]["jobs"] == 1
    ok("run", f"{flow}:Big", "--project", "ml", "-q", cwd=tmp_path)
    [run] = json.loads(ok("runs", "list", "--project", "ml", "--json", cwd=tmp_path))
    assert run["project"] == "ml" and run["name"] == "Big"
    err = bad("projects", "delete", "ml", "-y", cwd=tmp_path)
    assert f"1 job ({job}): delete them (`dagmill jobs delete {job}`)" in err
    ok("jobs", "delete", job, "-y", cwd=tmp_path)
    ok("projects", "delete", "ml", "-y", cwd=tmp_path)


def test_an_unknown_project_exits_2(tmp_path: Path, flow: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "crunch.py").write_text("print('crunched')\n")
    (tmp_path / "big" / "pipeline.yaml").write_text(BIG_PIPELINE)
    for args in (
        ["run", f"{flow}:Big", "--project", "nope"],
        ["run", str(tmp_path / "big" / "pipeline.yaml"), "--project", "nope"],
        ["jobs", "build", f"{flow}:Big", "--project", "nope"],
    ):
        err = bad(*args, cwd=tmp_path)
        assert "project 'nope' does not exist: create it with `dagmill projects create nope" in err
    assert "--project: project name 'No'" in bad(
        "run", f"{flow}:Big", "--project", "No", cwd=tmp_path
    )
    assert "no project 'nope'" in bad("jobs", "list", "--project", "nope", cwd=tmp_path)
    assert "no project 'nope'" in bad("runs", "list", "--project", "nope", cwd=tmp_path)
    assert json.loads(ok("jobs", "list", "--json", cwd=tmp_path)) == []
    assert json.loads(ok("runs", "list", "--json", cwd=tmp_path)) == []


def test_a_task_above_the_project_quota_is_refused_at_build_run_and_submission(
    tmp_path: Path, flow: Path
) -> None:
    ok("projects", "create", "tiny", "--cpu", "500m", cwd=tmp_path)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "crunch.py").write_text("print('crunched')\n")
    pipeline = tmp_path / "big" / "pipeline.yaml"
    pipeline.write_text(BIG_PIPELINE)
    for args in (
        ["jobs", "build", f"{flow}:Big", "--project", "tiny"],
        ["jobs", "build", str(pipeline), "--project", "tiny"],
        ["run", f"{flow}:Big", "--project", "tiny"],
        ["run", str(pipeline), "--project", "tiny"],
    ):
        err = bad(*args, cwd=tmp_path)
        assert "requests more than project tiny's whole quota (cpu 1 > 500m" in err, err
        assert "Big" in err or "crunch" in err, "the task is named"
    assert json.loads(ok("jobs", "list", "--json", cwd=tmp_path)) == []

    # built while it fitted, then the quota was lowered: submission refuses it too
    ok("projects", "set", "tiny", "--cpu", "1", cwd=tmp_path)
    job = ok("jobs", "build", f"{flow}:Big", "--project", "tiny", cwd=tmp_path).strip()
    ok("projects", "set", "tiny", "--cpu", "500m", cwd=tmp_path)
    for args in (["jobs", "run", job], ["jobs", "run", job, "--wait"]):
        assert "whole quota (cpu 1 > 500m" in bad(*args, cwd=tmp_path)
    assert json.loads(ok("runs", "list", "--json", cwd=tmp_path)) == []


# -- the acceptance: two jobs, one quota -------------------------------------------------
def _usage(url: str, project: str = "ml") -> ProjectUsage:
    with open_store(url) as s:
        usage = s.project_usage(project, Resources())
    assert usage is not None
    return usage


def _one_running_one_pending(url: str) -> ProjectUsage | None:
    usage = _usage(url)
    return usage if len(usage.leases) == 1 and len(usage.waits) == 1 else None


def _intervals(tmp_path: Path) -> list[dict[str, float]]:
    path = tmp_path / "intervals.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted((json.loads(line) for line in lines), key=lambda i: i["start"])


def _check_one_at_a_time(tmp_path: Path, url: str, runs: list[str]) -> None:
    """While one task holds the quota and the other waits: what `projects show` and
    `runs show` say; then let them go, and check that they never overlapped."""
    usage = wait_for(lambda: _one_running_one_pending(url), 30, "one task running, one pending")
    holder, waiter = usage.leases[0], usage.waits[0]
    assert {holder.run_id, waiter.run_id} == set(runs)
    time.sleep(0.3)  # it waits a while: the wait time shows it

    shown = json.loads(ok("projects", "show", "ml", "--json", cwd=tmp_path))
    assert shown["used"]["cpu"] == str(CPUS) and shown["limits"]["cpu"] == str(CPUS)
    [running] = shown["running_tasks"]
    assert (running["run_id"], running["task_id"]) == (holder.run_id, holder.task_id)
    assert running["run_name"] == "Hold" and running["request"] == {"cpu": str(CPUS)}
    [pending] = shown["pending_tasks"]
    assert pending["run_id"] == waiter.run_id and pending["waited"] >= 0.3
    assert pending["reason"] == (
        f"project ml: cpu {CPUS} of {CPUS} in use by {holder.run_id} Hold"
    ), "the reason names the run that holds the quota"
    text = ok("projects", "show", "ml", cwd=tmp_path)
    assert f"  {holder.task_id}  run {holder.run_id} Hold\n    holds cpu {CPUS} since" in text
    assert f"  {waiter.task_id}  run {waiter.run_id} Hold\n    wants cpu {CPUS}, waiting" in text
    assert f"s\n    {pending['reason']}\n" in text
    assert max(map(len, text.splitlines())) <= 80
    listed = _projects(tmp_path)["ml"]
    assert (listed["running"], listed["pending"], listed["open_runs"]) == (1, 1, 2)

    # the waiting run's record: its task is PENDING with the reason (once flushed)
    def recorded() -> bool:
        with open_store(url) as s:
            [t] = s.get_run_tasks(waiter.run_id)
        return t.status == "PENDING" and t.history[-1].waiting_for == pending["reason"]

    wait_for(recorded, 10, "the pending attempt in the run record")
    run = json.loads(ok("runs", "show", waiter.run_id, "--json", cwd=tmp_path))
    [task] = run["tasks"]
    assert task["status"] == "PENDING"
    assert task["history"][-1]["waiting_for"] == pending["reason"]
    text = ok("runs", "show", waiter.run_id, cwd=tmp_path)
    assert f"  {waiter.task_id}: {pending['reason']} (waiting" in text

    (tmp_path / "release").touch()
    intervals = wait_for(
        lambda: len(_intervals(tmp_path)) == 2 and _intervals(tmp_path), 30, "both tasks"
    )
    first, second = intervals
    assert first["end"] <= second["start"], f"the tasks overlapped: {intervals}"
    # the run that waited records how long (runs show: in --json and in its table)
    run = json.loads(ok("runs", "show", waiter.run_id, "--json", cwd=tmp_path))
    assert run["tasks"][0]["history"][-1]["waited"] >= 0.3
    assert "waited " in ok("runs", "show", waiter.run_id, cwd=tmp_path)


def _build_two(tmp_path: Path, flow: Path) -> list[str]:
    ok("projects", "create", "ml", "--cpu", str(CPUS), cwd=tmp_path)
    return [
        ok("jobs", "build", f"{flow}:Hold", "-p", f"n={n}", "--project", "ml", cwd=tmp_path).strip()
        for n in (1, 2)
    ]


def test_two_jobs_run_at_once_by_the_cli_take_turns(
    database_url: str, tmp_path: Path, flow: Path
) -> None:
    jobs = _build_two(tmp_path, flow)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "jobs", "run", job, "--wait", "--json"],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    try:
        runs = wait_for(lambda: _open_runs(database_url), 30, "both runs to start")
        _check_one_at_a_time(tmp_path, database_url, runs)
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, out + err
            assert json.loads(out)["status"] == "SUCCESS"
    finally:
        (tmp_path / "release").touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _open_runs(url: str) -> list[str] | None:
    with open_store(url) as s:
        runs = s.list_runs(status="RUNNING", project="ml")
    return [r.id for r in runs] if len(runs) == 2 else None


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Project]:
    p = Project(tmp_path, database_url)
    try:
        yield p
    finally:
        (tmp_path / "release").touch()
        p.cleanup()
        for n, server in enumerate(p.servers):  # shown with a failing test's output
            print(f"--- server {n} (pid {server.pid}, exit {server.proc.returncode}) ---")
            print(server.log())


def test_two_jobs_queued_to_a_server_take_turns(served: Project, flow: Path) -> None:
    tmp_path = served.root
    jobs = _build_two(tmp_path, flow)
    served.server("--max-runs", "2")
    runs = [ok("jobs", "run", job, cwd=tmp_path).strip() for job in jobs]
    queued = {
        r["id"]: r
        for r in json.loads(ok("runs", "list", "--project", "ml", "--json", cwd=tmp_path))
    }
    assert set(queued) == set(runs), "queued runs belong to their job's project"
    _check_one_at_a_time(tmp_path, served.database_url, runs)
    wait_for(
        lambda: {r.status for r in served.runs(jobs[0]) + served.runs(jobs[1])} == {"SUCCESS"},
        30,
        "both runs to succeed",
    )


def test_a_rerun_stays_in_its_project(flow: Path, tmp_path: Path) -> None:
    ok("projects", "create", "pq", "--cpu", "2", cwd=tmp_path)
    first = json.loads(ok("run", "flow.py:Big", "--project", "pq", "--json", cwd=tmp_path))
    again = json.loads(ok("runs", "rerun", first["id"], "--json", cwd=tmp_path))
    with open_store() as s:
        assert s.get_run(again["id"]).project == "pq"  # type: ignore[union-attr]
        s._execute("DELETE FROM projects WHERE name = 'pq'")  # gone since (by SQL: in use)
    err = bad("runs", "rerun", first["id"], cwd=tmp_path)
    assert "project 'pq' does not exist" in err


def test_lowering_a_quota_below_a_job_s_task_warns(flow: Path, tmp_path: Path) -> None:
    ok("projects", "create", "hq", "--cpu", "2", cwd=tmp_path)
    job = ok("jobs", "build", "flow.py:Big", "--project", "hq", cwd=tmp_path).split()[-1]
    lowered = cli("projects", "set", "hq", "--memory", "32Mi", cwd=tmp_path)
    assert lowered.returncode == 0, lowered.stderr
    assert "warning: the quota of hq no longer fits 1 task(s)" in lowered.stderr
    assert f"job {job} (Big): Big-{{}} asks for memory 64Mi > 32Mi" in lowered.stderr
    raised = cli("projects", "set", "hq", "--memory", "1Gi", cwd=tmp_path)
    assert raised.returncode == 0 and "warning" not in raised.stderr
    assert "finer than a millicore" in bad(
        "projects", "create", "x", "--cpu", "0.0001", cwd=tmp_path
    )
