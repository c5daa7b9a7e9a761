"""The command line: what a user types, what they see, and the exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows" / "numbers.py"


def dagmill(*args: str, cwd: Path, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGMILL_HOME": os.fspath(cwd / ".dagmill"), "NO_COLOR": "1"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,  # as a script or CI runs it: no terminal
    )  # fmt: skip


def test_run_then_nothing_reruns_then_a_param_change_reruns(tmp_path: Path) -> None:
    target = f"{FLOWS}:Total"
    first = dagmill("run", target, "-p", "n=10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "* 2 ran successfully:" in first.stdout
    assert "SUCCESS" in first.stdout
    again = dagmill("run", target, "-p", "n=10", cwd=tmp_path)
    assert "Did not run any tasks" in again.stdout
    preview = dagmill("preview", target, "-p", "n=11", cwd=tmp_path)
    assert preview.returncode == 0
    assert "(PENDING)] => new params: n 10→11" in preview.stdout
    out = json.loads(dagmill("run", target, "-p", "n=11", "--json", cwd=tmp_path).stdout)
    assert out["status"] == "SUCCESS"
    assert {t["family"]: t["status"] for t in out["tasks"]} == {
        "Numbers": "SUCCESS", "Total": "SUCCESS",
    }  # fmt: skip
    assert json.loads((tmp_path / "data/Total").glob("*.json").__next__().read_text()) in (
        {"data": {"total": 45}}, {"data": {"total": 55}},
    )  # fmt: skip


def test_preview_json_lists_states_and_reasons(tmp_path: Path) -> None:
    out = dagmill("preview", f"{FLOWS}:Total", "--json", cwd=tmp_path)
    plan = json.loads(out.stdout)
    assert [(t["family"], t["state"], t["reason"]) for t in plan] == [
        ("Numbers", "PENDING", "never ran"), ("Total", "PENDING", "never ran"),
    ]  # fmt: skip
    assert plan[1]["upstream"] == [plan[0]["id"]]


def test_quiet_prints_nothing_and_a_failure_exits_1(tmp_path: Path) -> None:
    ok = dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == ""
    bad = dagmill("run", f"{FLOWS}:Broken", cwd=tmp_path)
    assert bad.returncode == 1
    assert "* 1 failed:" in bad.stdout
    assert "the numbers do not add up" in bad.stderr
    assert "numbers.py:" in bad.stderr  # the user's own file and line


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nowhere.py:Total"], "no such file"),
        (["run", f"{FLOWS}:Totl"], "did you mean 'Total'"),
        (["run", f"{FLOWS}:Total", "-p", "m=3"], "unknown parameter 'm'"),
        (["run", f"{FLOWS}:Total", "-p", "n=three"], "'n' expects an integer"),
        (["run", f"{FLOWS}:Total", "-p", "n"], "expected KEY=VALUE"),
        (["run", f"{FLOWS}:Greedy"], "requests more than this machine has"),
        (["run", f"{FLOWS}:Total", "--pool", "cpu=two"], "cpu"),
        (["run", "Total"], "expected MODULE:TASK"),
    ],
    ids=["missing-file", "typo-task", "unknown-param", "bad-int", "no-equals", "too-big",
         "bad-pool", "no-module"],
)  # fmt: skip
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = dagmill(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / ".dagmill").exists()


@pytest.mark.parametrize(
    "args",
    [["run", f"{FLOWS}:Total", "--workers", "0"], ["run", f"{FLOWS}:Total", "-p", "n=x"]],
    ids=["workers-0", "bad-param"],
)
def test_bad_input_to_run_prints_its_error_alone(tmp_path: Path, args: list[str]) -> None:
    # the progress bar of a run that never started left an empty line before the error
    out = dagmill(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert re.fullmatch(r"error: [^\n]+\n", out.stderr), repr(out.stderr)


@pytest.mark.parametrize(
    "where", ["afile/data", "/proc/dagmill-data"], ids=["under-a-file", "proc"]
)
def test_a_data_folder_that_cannot_be_made_exits_2_before_the_run(
    tmp_path: Path, where: str
) -> None:
    # was a traceback from the records file (exit 1) and a run recorded CANCELLED
    (tmp_path / "afile").write_text("not a folder\n")
    out = dagmill("run", f"{FLOWS}:Total", "--data", where, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert re.fullmatch(
        r"error: cannot write task outputs in \S+: [^\n]+: pass --data \(in Python, "
        r"dagmill.set_dir\) with a folder you can write to\n",
        out.stderr,
    ), out.stderr
    assert json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout) == []


def test_runs_list_and_show(tmp_path: Path) -> None:
    dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    dagmill("run", f"{FLOWS}:Broken", "--quiet", cwd=tmp_path)
    runs = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["FAILED", "SUCCESS"]  # newest first
    failed = json.loads(dagmill("runs", "list", "--status", "failed", "--json",
                                cwd=tmp_path).stdout)  # fmt: skip
    assert [r["id"] for r in failed] == [runs[0]["id"]]
    table = dagmill("runs", "list", cwd=tmp_path)
    assert runs[0]["id"] in table.stdout and "FAILED" in table.stdout
    shown = json.loads(dagmill("runs", "show", runs[0]["id"][:17], "--json", cwd=tmp_path).stdout)
    by_family = {t["family"]: t for t in shown["tasks"]}
    assert by_family["Broken"]["status"] == "FAILED"
    assert "the numbers do not add up" in by_family["Broken"]["history"][0]["error"]
    assert by_family["Numbers"]["status"] == "SKIPPED"
    assert by_family["Numbers"]["fingerprint"]
    assert dagmill("runs", "show", "nope", cwd=tmp_path).returncode == 2


def test_reset_deletes_outputs(tmp_path: Path) -> None:
    dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    out = dagmill("reset", f"{FLOWS}:Total", "--upstream", "--yes", cwd=tmp_path)
    assert out.returncode == 0 and "reset 2 tasks" in out.stdout
    assert not list((tmp_path / "data").rglob("*.pkl")) and not list(
        (tmp_path / "data").rglob("*.json")
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = dagmill("--help", cwd=tmp_path)
    for cmd in ("run", "preview", "reset", "runs"):
        assert cmd in out.stdout
    build = dagmill("jobs", "build", "--help", cwd=tmp_path).stdout
    assert "Usage: dagmill jobs build [OPTIONS] MODULE:TASK|PIPELINE.yaml" in build
    assert "--wide" in dagmill("runs", "list", "--help", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "list", "-n", "0"],
         "Invalid value for '-n' / '--limit': 0 is not in the range x>=1"),
        (["runs", "list", "-n", "-5"], "-5 is not in the range x>=1"),
        (["graph", f"{FLOWS}:Total"],
         "graph draws pipeline files (PIPELINE.yaml); for "
         f"MODULE:TASK, `dagmill preview {FLOWS}:Total` shows"),
        (["run", f"{FLOWS}:Total", "--data", "afile"],
         "Invalid value for '--data' (env var: 'DAGMILL_DATA'): Directory 'afile' is a file"),
        (["jobs", "build", f"{FLOWS}:Total", "--data", "afile"], "Directory 'afile' is a file"),
    ],
    ids=["limit-0", "limit-negative", "graph-of-a-task", "data-is-a-file", "build-data-file"],
)  # fmt: skip
def test_more_bad_input_exits_2_with_a_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "afile").write_text("not a folder\n")
    out = dagmill(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()
    assert json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout) == []
    assert json.loads(dagmill("jobs", "list", "--json", cwd=tmp_path).stdout) == []


def test_deleting_without_a_terminal_needs_yes(tmp_path: Path) -> None:
    dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    (run,) = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    job_id = dagmill("jobs", "build", f"{FLOWS}:Total", cwd=tmp_path).stdout.strip()
    for args in (["runs", "delete", run["id"]], ["jobs", "delete", job_id],
                 ["reset", f"{FLOWS}:Total"]):  # fmt: skip
        out = dagmill(*args, cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "pass -y/--yes to delete without a terminal" in out.stderr, out.stderr
        assert "Aborted" not in out.stderr
    assert len(json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)) == 1
    assert len(json.loads(dagmill("jobs", "list", "--json", cwd=tmp_path).stdout)) == 1
    assert list((tmp_path / "data").rglob("*.json"))  # nothing was reset
    assert dagmill("jobs", "delete", job_id, "-y", cwd=tmp_path).returncode == 0


def test_json_keys_are_one_scheme_with_iso_times(tmp_path: Path) -> None:
    """An object's own identifier is `id`; every `*_at` (epoch) has `*_at_iso` beside it."""
    ran = json.loads(dagmill("run", f"{FLOWS}:Total", "--json", cwd=tmp_path).stdout)
    (listed,) = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    assert ran["id"] == listed["id"] and "run_id" not in ran
    for record in (ran, listed):
        assert isinstance(record["started_at"], float)
        assert record["started_at_iso"].startswith(time.strftime("%Y-", time.gmtime()))
        when = dt.datetime.fromisoformat(record["started_at_iso"])
        assert abs(when.timestamp() - record["started_at"]) < 0.001
        assert when.utcoffset() == dt.timedelta(0)
    shown = json.loads(dagmill("runs", "show", listed["id"], "--json", cwd=tmp_path).stdout)
    assert shown["run"]["ended_at_iso"] and shown["run"]["created_at_iso"]
    assert {t["id"] for t in shown["tasks"]} == {t["id"] for t in ran["tasks"]}
    attempt = next(t for t in shown["tasks"] if t["history"])["history"][0]
    assert attempt["started_at_iso"] and attempt["ended_at_iso"]
    job_id = dagmill("jobs", "build", f"{FLOWS}:Total", cwd=tmp_path).stdout.strip()
    (job,) = json.loads(dagmill("jobs", "list", "--json", cwd=tmp_path).stdout)
    assert job["id"] == job_id and job["created_at_iso"]


def _table_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


def test_tables_fit_80_columns_and_keep_ids_whole(tmp_path: Path) -> None:
    """Without a terminal (80 columns): one line per row, no line over 80 characters, and
    ids (runs, jobs, tasks) never cut; --wide shows the rest."""
    ok = dagmill("run", f"{FLOWS}:Total", "-p", "n=12345678", "--quiet", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    dagmill("run", f"{FLOWS}:Broken", "--quiet", cwd=tmp_path)
    job_id = dagmill("jobs", "build", f"{FLOWS}:Total", "-p", "n=3", cwd=tmp_path).stdout.strip()
    assert dagmill("jobs", "run", job_id, "--wait", "-q", cwd=tmp_path).returncode == 0
    runs = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    assert len(runs) == 3

    listed = dagmill("runs", "list", cwd=tmp_path, columns=80).stdout
    jobs = dagmill("jobs", "list", cwd=tmp_path, columns=80).stdout
    failed = next(r for r in runs if r["status"] == "FAILED")
    shown = dagmill("runs", "show", failed["id"], cwd=tmp_path, columns=80).stdout
    job = dagmill("jobs", "show", job_id, cwd=tmp_path, columns=80).stdout
    tasks = json.loads(dagmill("runs", "show", failed["id"], "--json", cwd=tmp_path).stdout)
    table = shown.split("\nerrors\n")[0]
    assert "  ttl      1200s after success, 7200s after failure, 3600s after completion" in job
    for text in (listed, jobs, table, job.split("\n\n")[1]):
        assert all(len(x) <= 80 for x in text.splitlines()), text
    assert len(_table_lines(listed)) == 1 + 3  # a header, then one line per run
    assert len(_table_lines(jobs)) == 1 + 1
    for r in runs:
        assert any(x.startswith(r["id"] + " ") for x in listed.splitlines()), listed
        assert r["id"] in job or r["job_id"] is None
    assert f"{job_id} " in jobs and runs[0]["id"] in jobs  # its last run
    assert "1/2 failed" in listed and "2 ok" in listed
    for t in tasks["tasks"]:
        assert any(x.startswith(t["id"] + " ") for x in table.splitlines()), table
    assert "at None" not in shown

    wide = dagmill("runs", "list", "--wide", cwd=tmp_path, columns=80).stdout
    assert "1 failed, 1 success" in wide and job_id in wide
    assert f"{FLOWS}:Total -p n=3" in dagmill("jobs", "list", "--wide", cwd=tmp_path).stdout


def test_runs_show_lists_the_errors_of_earlier_attempts(tmp_path: Path) -> None:
    flow = tmp_path / "retry.py"
    flow.write_text(
        "import dagmill\n"
        "from pathlib import Path\n\n"
        "class Flaky(dagmill.tasks.TaskJson):\n"
        "    retries = 2\n"
        "    retry_delay = 0\n\n"
        "    def run(self):\n"
        "        marks = Path(__file__).with_name('tries')\n"
        "        n = len(marks.read_text()) if marks.exists() else 0\n"
        "        marks.write_text('x' * (n + 1))\n"
        "        if n < 2:\n"
        "            raise ValueError(f'flaky try {n + 1}')\n"
        "        self.save({'ok': True})\n"
    )
    assert dagmill("run", f"{flow}:Flaky", "--quiet", cwd=tmp_path).returncode == 0
    (run,) = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    shown = dagmill("runs", "show", run["id"], cwd=tmp_path, columns=80).stdout
    assert "SUCCESS" in shown
    errors = shown.split("\nerrors\n")[1]
    assert "attempt 1: ValueError: flaky try 1" in errors
    assert "attempt 2: ValueError: flaky try 2" in errors
    assert f"at {flow}:13 in run" in errors


def test_progress_counts_cancelled_tasks_as_cancelled_not_failed() -> None:
    from types import SimpleNamespace

    from dagmill.cli.render import Progress
    from dagmill.model.states import TaskRunStatus as S

    progress = Progress()
    progress.run_started("r1", SimpleNamespace(graph=range(4), to_run=["a", "b", "c", "d"]))  # type: ignore[arg-type]
    for tid in "abc":
        progress.task_changed(tid, S.RUNNING, "")
    progress.task_changed("a", S.FAILED, "")
    progress.task_changed("b", S.CANCELLED, "")
    progress.task_changed("c", S.CANCELLED, "")
    detail = progress._bar.tasks[0].fields["detail"]
    assert detail == "0 running, [red]1 failed[/], [yellow]2 cancelled[/]"


def test_progress_keeps_saying_how_many_tasks_were_already_complete() -> None:
    # "3 already complete" was replaced by "0 running" at the first update: a run with
    # nothing to do ended on a bare "0/0 0 running"
    from types import SimpleNamespace

    from dagmill.cli.render import Progress

    progress = Progress()
    with progress:
        progress.run_started("r3", SimpleNamespace(graph=range(3), to_run=[]))  # type: ignore[arg-type]
    assert progress._bar.tasks[0].fields["detail"] == "0 running, 3 already complete"


def test_progress_shows_tasks_another_run_executes() -> None:
    from types import SimpleNamespace

    from dagmill.cli.render import Progress
    from dagmill.model.states import TaskRunStatus as S

    progress = Progress()
    progress.run_started("r2", SimpleNamespace(graph=range(3), to_run=["a", "b", "c"]))  # type: ignore[arg-type]
    progress.task_changed("a", S.WAITING, "running in run r1")
    progress.task_changed("b", S.WAITING, "running in run r1")
    detail = progress._bar.tasks[0].fields["detail"]
    assert detail == "0 running, 2 running in another run"
    progress.task_changed("a", S.SKIPPED, "complete: run r1 made it")
    progress.task_changed("b", S.RUNNING, "")
    task = progress._bar.tasks[0]
    assert task.completed == 1
    assert task.fields["detail"] == "1 running, 1 made by another run"


def test_a_run_result_prints_short(tmp_path: Path) -> None:
    import dagmill
    from dagmill.frontends.loader import load_task

    total = load_task(f"{FLOWS}:Total")
    result = dagmill.Workflow(total, {"n": 3}).run(execution_summary=False)
    text = repr(result)
    assert re.fullmatch(r"<RunResult \d{8}-\d{6}-[0-9a-f]{6} SUCCESS 2 tasks: 2 SUCCESS>", text)
    assert str(result) == text


def test_runs_list_counts_no_tasks_for_a_run_still_going(tmp_path: Path) -> None:
    # a run's counts are written as it ends: a RUNNING run said "0 ok" though tasks
    # of it had succeeded
    from dagmill.store import NewRunTask, open_store

    store = open_store(f"sqlite:///{tmp_path / '.dagmill' / 'dagmill.db'}")
    try:  # this process owns it, alive: no command takes it over
        store.create_run(
            "20261121-101500-aaaaaa",
            "Going",
            [NewRunTask(t, "T", {}, [], "PENDING", "", {}, "WAITING") for t in ("a", "b")],
        )
        store.task_status("20261121-101500-aaaaaa", "a", "SUCCESS", 1, "fp")
        store.flush()
        listed = dagmill("runs", "list", cwd=tmp_path, columns=80).stdout
    finally:
        store.close()
    (row,) = [x for x in listed.splitlines() if x.startswith("20261121-101500-aaaaaa ")]
    assert "RUNNING" in row and "0 ok" not in row, listed


def test_runs_show_says_a_task_another_run_made_was_made_there(tmp_path: Path) -> None:
    # a task this run was to run, found complete because another run made it (claims):
    # the detail said the plan's reason ("never ran") as if nothing had happened
    from dagmill.store import NewRunTask, open_store

    run_id = "20261121-101500-bbbbbb"
    store = open_store(f"sqlite:///{tmp_path / '.dagmill' / 'dagmill.db'}")
    try:
        store.create_run(
            run_id,
            "Made",
            [
                NewRunTask("done", "T", {}, [], "COMPLETE", "", {}, "SKIPPED"),
                NewRunTask("made", "T", {}, [], "PENDING", "never ran", {}, "WAITING"),
            ],
        )
        store.task_status(run_id, "made", "SKIPPED", 0, "fp")
        store.finish_run(run_id, "SUCCESS")
    finally:
        store.close()
    shown = dagmill("runs", "show", run_id, cwd=tmp_path, columns=80).stdout
    rows = {x.split()[0]: x for x in shown.splitlines()[2:] if x.strip()}
    assert "never ran" not in shown, shown
    assert rows["made"].rstrip().endswith("SKIPPED  0      -     made by another run"), shown
    assert rows["done"].rstrip().endswith("SKIPPED  0      -"), shown


@pytest.mark.parametrize(
    "status, hint",
    [
        ("CANCELLED", "`dagmill runs rerun {id} --from-failed` runs what did not finish"),
        ("FAILED", "`dagmill runs rerun {id} --from-failed` runs what did not finish"),
        ("SUCCESS", "`dagmill runs rerun {id}` runs it all again"),
    ],
)
def test_resuming_a_run_that_ended_names_the_rerun_to_use(
    tmp_path: Path, status: str, hint: str
) -> None:
    # after Ctrl-C, "try rerun" led to a rerun of everything, finished tasks included
    from dagmill.store import NewRunTask, open_store

    run_id = "20261121-101500-cccccc"
    store = open_store(f"sqlite:///{tmp_path / '.dagmill' / 'dagmill.db'}")
    try:
        task = NewRunTask("a", "T", {}, [], "PENDING", "", {}, "WAITING")
        store.create_run(run_id, "Ended", [task])
        store.finish_run(run_id, status)
    finally:
        store.close()
    out = dagmill("runs", "resume", run_id, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        f"error: run {run_id} is {status}: nothing to resume; {hint.format(id=run_id)}\n"
    )


def test_a_long_error_is_cut_in_its_own_column_at_80_columns(tmp_path: Path) -> None:
    # a detail longer than the room left squeezed every column evenly: STATUS showed "F"
    # and TRIES, TOOK disappeared; only the last column gives room now
    flow = tmp_path / "long.py"
    flow.write_text(
        "import dagmill\n\n"
        "class Long(dagmill.tasks.TaskJson):\n"
        "    def run(self):\n"
        "        raise ValueError('this message is far too long to fit ' * 4)\n"
    )
    assert dagmill("run", f"{flow}:Long", "--quiet", cwd=tmp_path).returncode == 1
    (run,) = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    shown = dagmill("runs", "show", run["id"], cwd=tmp_path, columns=80).stdout
    table = _table_lines(shown.split("\nerrors\n")[0])
    header, row = table[-2:]
    assert header.split() == ["TASK", "STATUS", "TRIES", "TOOK", "DETAIL"], shown
    fields = row.split()
    assert fields[1:3] == ["FAILED", "1"] and fields[3] != "-", shown  # TOOK is there
    assert row.rstrip().endswith("…") and "ValueError: this message" in row, shown
    assert all(len(x) <= 80 for x in table), shown
