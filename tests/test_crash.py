"""Crashes and concurrency: an engine killed with SIGKILL is resumed (by hand or by the
next `dagmill runs` command) without redoing what it finished; two processes racing for
the same queued runs never both run one; two runs writing one SQLite file both finish.

Runs happen in subprocesses (their own session, so a kill reaches only them). The tasks
append a line to a file each time they execute, so the tests can tell what ran how often.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import secrets
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import fresh_postgres_database
from dagmill.store import open_store
from helpers import wait_for

PARTS = 19  # 19 parts + the sum: a 20-task graph
EXPECTED_SUM = sum(i * i for i in range(PARTS))

FLOW = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import dagmill

    MARKS = Path(__file__).parent / "marks"
    PARTS = {parts}


    def ran(name):
        # one line per execution, appended atomically (O_APPEND), from any process
        fd = os.open(MARKS / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, b"%d\\n" % os.getpid())
        finally:
            os.close(fd)


    class Part(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def run(self):
            ran(f"Part-{{self.i}}")
            time.sleep(0.1 + 0.005 * self.i)
            self.save(self.i * self.i)


    class Sum(dagmill.tasks.TaskPickle):
        def requires(self):
            return [Part(i=i) for i in range(PARTS)]

        def run(self):
            ran("Sum")
            self.save(sum(self.inputLoad()))
    """
).format(parts=PARTS)


def _dagmill(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _start_run(tmp_path: Path, flow: Path, task: str, workers: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # a file, not a pipe: nothing blocks on a full pipe
        return subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "run", f"{flow}:{task}",
             "--workers", str(workers), "--quiet"],
            cwd=tmp_path, env=dict(os.environ), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _processes_mentioning(word: str) -> list[int]:
    """Live processes whose command line contains ``word`` (a run id: they are ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if word in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _executions(marks: Path) -> Counter[str]:
    """How many times each task executed: ``Part-3`` → 1, ``Sum`` → 1."""
    return Counter(
        {p.name: len(p.read_text().splitlines()) for p in marks.iterdir() if p.is_file()}
    )


def _mark_name(family: str, params: dict[str, str]) -> str:
    return "Sum" if family == "Sum" else f"Part-{params['i']}"


def _load_output(data_dir: Path, family: str, task_id: str) -> Any:
    (path,) = (data_dir / family).glob(f"{task_id}-data.*")
    with open(path, "rb") as f:
        return pickle.load(f)


def _kill_mid_run(tmp_path: Path, workers: int) -> tuple[str, set[str], set[str], Path]:
    """Start the 20-task flow, SIGKILL its engine once 5 tasks succeeded (and one runs);
    return (run id, task ids SUCCESS at the kill, task ids RUNNING at the kill, marks)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    proc = _start_run(tmp_path, flow, "Sum", workers, tmp_path / "run.log")
    try:
        with open_store() as s:

            def far_enough() -> bool:
                runs = s.list_runs()
                if not runs:
                    return False
                statuses = Counter(t.status for t in s.get_run_tasks(runs[0].id))
                return statuses["SUCCESS"] >= 5 and statuses["RUNNING"] >= 1

            reached = wait_for(lambda: far_enough() or proc.poll() is not None, timeout=20)
            log = (tmp_path / "run.log").read_text(errors="replace")
            assert reached and proc.poll() is None, f"the run ended or stalled early:\n{log}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        _stop(proc)
    with open_store() as s:
        (run,) = s.list_runs()
        tasks = s.get_run_tasks(run.id)
    # nobody told the store: the run still says RUNNING, though its engine is gone
    assert run.status == "RUNNING"
    assert run.owner == f"{os.uname().nodename}:{proc.pid}"
    done = {t.task_id for t in tasks if t.status == "SUCCESS"}
    running = {t.task_id for t in tasks if t.status == "RUNNING"}
    assert 5 <= len(done) < len(tasks) == PARTS + 1, [(t.task_id, t.status) for t in tasks]
    assert running, [(t.task_id, t.status) for t in tasks]
    return run.id, done, running, marks


def _check_finished_run(
    run_json: dict[str, Any],
    done: set[str],
    running: set[str],
    marks: Path,
    data_dir: Path,
) -> None:
    """The resumed run is whole: outputs right, finished work not redone, history kept."""
    assert run_json["run"]["status"] == "SUCCESS", run_json["run"]
    assert run_json["run"]["ended_at"] is not None
    tasks = run_json["tasks"]
    assert len(tasks) == PARTS + 1
    by_id = {t["id"]: t for t in tasks}
    assert done <= set(by_id) and running <= set(by_id)
    runs_of = _executions(marks)

    for t in tasks:
        hist = t["history"]
        assert t["status"] == "SUCCESS", t
        assert hist, f"{t['id']}: no attempt in the history"
        # every attempt there is, numbered 1..n, the last one the success
        assert [a["attempt"] for a in hist] == list(range(1, len(hist) + 1)), hist
        assert t["attempts"] == len(hist), t
        assert hist[-1]["status"] == "SUCCESS" and hist[-1]["ended_at"] is not None, hist
        expected = EXPECTED_SUM if t["family"] == "Sum" else int(t["params"]["i"]) ** 2
        assert _load_output(data_dir, t["family"], t["id"]) == expected

        name = _mark_name(t["family"], t["params"])
        if t["id"] in done:
            # finished before the kill: not run again, its one attempt as it was
            assert runs_of[name] == 1, f"{name} executed {runs_of[name]} times"
            assert [a["status"] for a in hist] == ["SUCCESS"], hist
        elif t["id"] in running:
            # its engine died under it: that attempt FAILED saying so, then it ran again
            assert [a["status"] for a in hist] == ["FAILED", "SUCCESS"], hist
            assert "died" in (hist[0]["error"] or "") and "engine" in hist[0]["error"], hist[0]
            assert hist[0]["ended_at"] is not None
            assert runs_of[name] >= 1
        else:
            assert [a["status"] for a in hist] == ["SUCCESS"], hist
            assert runs_of[name] == 1, f"{name} executed {runs_of[name]} times"

    # the run's summary agrees with its tasks: `runs list` shows what `runs show` does
    run = run_json["run"]
    statuses = dict(Counter(t["status"] for t in tasks))
    assert run["counts"] == statuses, f"runs list says {run['counts']}, runs show {statuses}"
    first_start = min(a["started_at"] for t in tasks for a in t["history"])
    assert run["started_at"] <= first_start, (
        f"the run is recorded as started {run['started_at'] - first_start:.2f}s after its "
        "first task did: the resume overwrote the run's start"
    )


# -- 1. SIGKILL mid-run, then resume ----------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])
def test_resume_after_sigkill_finishes_the_run_without_redoing_work(
    workers: int, tmp_path: Path, data_dir: Path
) -> None:
    run_id, done, running, marks = _kill_mid_run(tmp_path, workers)

    resumed = _dagmill("runs", "resume", run_id, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    shown = _dagmill("runs", "show", run_id, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    _check_finished_run(json.loads(shown.stdout), done, running, marks, data_dir)

    with open_store() as s:
        runs = s.list_runs()
    assert [r.id for r in runs] == [run_id], "resuming must not start another run"

    again = _dagmill("runs", "resume", run_id, cwd=tmp_path)
    assert again.returncode == 2 and "SUCCESS" in again.stderr, again.stderr


@pytest.mark.parametrize(
    "commands",
    [[("runs", "list")], [("runs", "list"), ("jobs", "list")]],
    ids=["runs-list", "two-commands-at-once"],
)
def test_next_runs_command_resumes_a_killed_run_in_the_background(
    commands: list[tuple[str, ...]], tmp_path: Path, data_dir: Path
) -> None:
    """The next `dagmill runs`/`jobs` command resumes the run; two at once resume it once."""
    run_id, done, running, marks = _kill_mid_run(tmp_path, workers=2)
    try:
        argvs = [[sys.executable, "-m", "dagmill.cli.main", *args] for args in commands]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        cmds = [
            subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, **pipes)
            for argv in argvs
        ]
        outputs = [c.communicate(timeout=60) for c in cmds]
        assert [c.returncode for c in cmds] == [0] * len(cmds), outputs
        message = f"run {run_id}: its engine died; resuming it in the background"
        assert any(message in err for _, err in outputs), outputs

        def status() -> str:
            with open_store() as s:
                run = s.get_run(run_id)
            assert run is not None
            return run.status

        assert wait_for(lambda: status() != "RUNNING", timeout=30, every=0.1)
        log = tmp_path / ".dagmill" / "logs" / run_id / "engine-resume.log"
        assert status() == "SUCCESS", log.read_text(errors="replace") if log.exists() else ""
        assert wait_for(lambda: not _processes_mentioning(run_id), timeout=10)

        shown = _dagmill("runs", "show", run_id, "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        _check_finished_run(json.loads(shown.stdout), done, running, marks, data_dir)
        # nothing is left to recover: the next command starts no other resume
        listed = _dagmill("runs", "list", cwd=tmp_path)
        assert listed.returncode == 0 and "resuming" not in listed.stderr, listed.stderr
    finally:
        for pid in _processes_mentioning(run_id):  # the background resume, if it hangs
            os.kill(pid, signal.SIGKILL)


# -- 2. two processes race for the same queued runs ---------------------------------------
RACE_FLOW = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import dagmill

    LEDGER = Path(__file__).parent / "ledger.txt"


    class Tick(dagmill.tasks.Task):
        persist = []  # no outputs: it runs every time it is asked to

        def run(self):
            fd = os.open(LEDGER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, b"%d\\n" % os.getpid())
            finally:
                os.close(fd)
    """
)

RACER = textwrap.dedent(
    """
    import json
    import os
    import sys
    import time
    from pathlib import Path

    from dagmill.errors import DefinitionError
    from dagmill.services.execution import RunOptions
    from dagmill.services.jobs import run_job

    job_id, order, go, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    ran, refused = {}, []
    for rid in order:
        try:
            result = run_job(
                job_id,
                run_id=rid,
                options=RunOptions(workers=1, execution_summary=False, abort=False),
            )
        except DefinitionError as e:
            refused.append([rid, str(e)])
            continue
        ran[rid] = None if result is None else result.status.value
    Path(out).write_text(json.dumps({"pid": os.getpid(), "ran": ran, "refused": refused}))
    """
)


@pytest.mark.parametrize(
    ("backend", "count"), [("postgresql", 100), ("sqlite", 30)], ids=["postgresql", "sqlite"]
)
def test_two_processes_racing_for_queued_runs_run_each_exactly_once(
    backend: str,
    count: int,
    tmp_path: Path,
    data_dir: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagmill.services.jobs import build_job

    if backend == "postgresql":
        monkeypatch.setenv("DAGMILL_DATABASE_URL", fresh_postgres_database(request))
    flow = tmp_path / "race_flow.py"
    flow.write_text(RACE_FLOW)
    job = build_job(f"{flow}:Tick", {}, data_dir=os.fspath(data_dir))
    run_ids = [f"race-{i:03d}-{secrets.token_hex(3)}" for i in range(count)]
    with open_store() as s:
        for rid in run_ids:
            s.queue_run(rid, job.name, job.id, job.target())
        assert [r.status for r in s.list_runs(limit=1000)] == ["PENDING"] * count

    script = tmp_path / "racer.py"
    script.write_text(RACER)
    go = tmp_path / "go"
    orders = [random.Random(seed).sample(run_ids, count) for seed in (1, 2)]
    assert orders[0] != orders[1]
    procs: list[subprocess.Popen] = []
    try:
        for n, order in enumerate(orders):
            argv = [sys.executable, os.fspath(script), job.id, json.dumps(order),
                    os.fspath(go), os.fspath(tmp_path / f"racer-{n}.json")]  # fmt: skip
            with open(tmp_path / f"racer-{n}.log", "wb") as log:
                proc = subprocess.Popen(
                    argv, cwd=tmp_path, env=dict(os.environ), start_new_session=True,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            procs.append(proc)
        go.touch()  # both start together
        for n, p in enumerate(procs):
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pytest.fail(f"racer {n} did not finish in 90 s")
            log_text = (tmp_path / f"racer-{n}.log").read_text(errors="replace")
            assert p.returncode == 0, log_text
    finally:
        for p in procs:
            _stop(p)

    reports = [json.loads((tmp_path / f"racer-{n}.json").read_text()) for n in range(2)]
    claimed = [set(r["ran"]) for r in reports]
    assert not claimed[0] & claimed[1], f"both processes ran {sorted(claimed[0] & claimed[1])}"
    assert claimed[0] | claimed[1] == set(run_ids)
    assert sum(len(c) for c in claimed) == count
    for n, r in enumerate(reports):
        assert set(r["ran"].values()) <= {"SUCCESS"}, r["ran"]
        # every run a process was refused, the other one ran
        refused = {rid for rid, _ in r["refused"]}
        assert refused == claimed[1 - n], refused ^ claimed[1 - n]
        assert all("another process has it" in why for _, why in r["refused"]), r["refused"][:3]

    ledger = (tmp_path / "ledger.txt").read_text().splitlines()
    assert len(ledger) == count, f"{len(ledger)} executions of {count} runs"
    per_pid = Counter(int(line) for line in ledger)
    assert per_pid == Counter({r["pid"]: len(r["ran"]) for r in reports if r["ran"]})

    with open_store() as s:
        runs = s.list_runs(limit=1000)
        tasks = {rid: s.get_run_tasks(rid) for rid in run_ids}
    assert sorted(r.id for r in runs) == sorted(run_ids)
    owners = {rid: f"{os.uname().nodename}:{r['pid']}" for r in reports for rid in r["ran"]}
    for run in runs:
        assert run.status == "SUCCESS", run
        assert run.job_id == job.id
        assert run.owner == owners[run.id], "the record names the process that ran it"
        (task,) = tasks[run.id]
        assert (task.family, task.status, task.attempts) == ("Tick", "SUCCESS", 1)
        assert [(a.attempt, a.status) for a in task.history] == [(1, "SUCCESS")]


# -- 3. two runs writing one SQLite file at once ----------------------------------------
TWIN_FLOW = textwrap.dedent(
    """
    import time
    from pathlib import Path

    import dagmill

    HERE = Path(__file__).parent


    class {name}Part(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def run(self):
            # both runs are under way before either goes on: they write the record together
            (HERE / "{name}-started").touch()
            deadline = time.monotonic() + 20
            while not (HERE / "{other}-started").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.02)
            self.save(self.i * {factor})


    class {name}(dagmill.tasks.TaskPickle):
        def requires(self):
            return [{name}Part(i=i) for i in range(40)]

        def run(self):
            self.save(sum(self.inputLoad()))
    """
)


def test_two_runs_writing_one_sqlite_file_at_once_both_finish(
    tmp_path: Path, data_dir: Path
) -> None:
    flows = {"Alpha": 2, "Beta": 3}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, factor in flows.items():
            other = next(n for n in flows if n != name)
            flow = tmp_path / f"{name.lower()}_flow.py"
            flow.write_text(TWIN_FLOW.format(name=name, other=other, factor=factor))
            procs[name] = _start_run(tmp_path, flow, name, 2, tmp_path / f"{name}.log")
        for name, p in procs.items():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run of {name} did not finish in 60 s")
            assert p.returncode == 0, (tmp_path / f"{name}.log").read_text(errors="replace")
    finally:
        for p in procs.values():
            _stop(p)

    with open_store() as s:
        runs = {r.name: r for r in s.list_runs()}
        tasks = {name: s.get_run_tasks(r.id) for name, r in runs.items()}
    assert sorted(runs) == sorted(flows)
    a, b = runs["Alpha"], runs["Beta"]
    assert a.started_at < b.ended_at and b.started_at < a.ended_at, "the runs did not overlap"
    for name, factor in flows.items():
        run = runs[name]
        assert run.status == "SUCCESS", run
        assert run.counts == {"SUCCESS": 41}, run.counts
        assert len(tasks[name]) == 41
        for t in tasks[name]:
            assert (t.status, t.attempts) == ("SUCCESS", 1), t
            assert [(h.attempt, h.status) for h in t.history] == [(1, "SUCCESS")], t
            assert t.fingerprint, t
        (root,) = [t for t in tasks[name] if t.family == name]
        total = _load_output(data_dir, name, root.task_id)
        assert total == sum(i * factor for i in range(40))
