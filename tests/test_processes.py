"""What a task starts stops with it: after kill -9 of the engine (with one worker the engine
is the tasks' parent), after a task's timeout, for children that ignore SIGTERM or leave
the process group. A killed YAML module leaves temporaries that the resume removes. A
module that exited 0 when Ctrl-C came keeps its outputs and is not run again. A failing
module's error names the module's own line.

Each run is a `dagmill run` subprocess in its own session; the tasks write marker files
(with the pids of what they started) that the tests wait for, and every test kills what
may be left in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dagmill.services.execution import RunOptions
from dagmill.store import open_store
from helpers import wait_for

WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])

# a child that ignores SIGTERM and starts a grandchild in a session of its own
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with open(sys.argv[1], "w") as f:
        f.write(str(grandchild.pid))
    time.sleep(60)
    """
)

FLOW = textwrap.dedent(
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import dagmill
    from dagmill.io.atomic import atomic_path

    MARKS = Path(__file__).parent / "marks"
    STUBBORN = Path(__file__).parent / "stubborn.py"


    def start_children(name):
        plain = subprocess.Popen(["sleep", "60"])
        stubborn = subprocess.Popen([sys.executable, str(STUBBORN), str(MARKS / f"{name}-gc")])
        deadline = time.time() + 20
        while not (MARKS / f"{name}-gc").exists() and time.time() < deadline:
            time.sleep(0.01)
        (MARKS / f"{name}-children").write_text(f"{plain.pid} {stubborn.pid}")


    class Hang(dagmill.tasks.TaskPickle):
        def run(self):
            start_children("hang")
            time.sleep(60)
            self.save(1)


    class Writing(dagmill.tasks.TaskPickle):
        def run(self):
            with atomic_path(self.output().path) as tmp, open(tmp, "wb") as f:
                f.write(b"half")
                f.flush()
                if not (MARKS / "go").exists():
                    (MARKS / "writing").touch()
                    time.sleep(60)
            self.save("whole")


    class Late(dagmill.tasks.TaskPickle):
        timeout = 1

        def run(self):
            start_children("late")
            time.sleep(60)
            self.save(1)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped


def _dagmill(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300", **(env or {})},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def _engine(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """`dagmill run ARGS` in its own session, and a list for the pids it starts: on the
    way out, it and every pid the test put in the list are killed."""
    with open(tmp_path / "engine.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "run", *args, "--quiet"],
            cwd=tmp_path, env={**os.environ, **(env or {})}, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    strays: list[int] = []
    try:
        yield proc, strays
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in strays:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _engine_log(tmp_path: Path) -> str:
    return (tmp_path / "engine.log").read_text(errors="replace")


def _children(marks: Path, name: str) -> list[int]:
    pids = [int(p) for p in (marks / f"{name}-children").read_text().split()]
    return [*pids, int((marks / f"{name}-gc").read_text())]


def _write_flow(tmp_path: Path) -> Path:
    (tmp_path / "marks").mkdir()
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    flow = tmp_path / "procflow.py"
    flow.write_text(FLOW)
    return flow


# -- 2c. a task's children -----------------------------------------------------------------
@WORKERS
def test_a_tasks_children_do_not_outlive_a_killed_engine(tmp_path: Path, workers: int) -> None:
    flow = _write_flow(tmp_path)
    marks = tmp_path / "marks"
    with _engine(tmp_path, f"{flow}:Hang", "--workers", str(workers)) as (proc, strays):
        assert wait_for(
            lambda: (marks / "hang-children").exists() or proc.poll() is not None, timeout=30
        )
        assert proc.poll() is None, _engine_log(tmp_path)
        pids = _children(marks, "hang")
        strays.extend(pids)
        assert all(_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)  # the engine only: what it started is on its own
        proc.wait(timeout=10)
        gone = wait_for(lambda: not any(_alive(p) for p in pids), timeout=15)
        assert gone, f"alive after the engine was killed: {[p for p in pids if _alive(p)]}"


@WORKERS
def test_a_cancel_stops_children_that_left_the_process_group(tmp_path: Path, workers: int) -> None:
    flow = _write_flow(tmp_path)
    marks = tmp_path / "marks"
    with _engine(tmp_path, f"{flow}:Hang", "--workers", str(workers)) as (proc, strays):
        assert wait_for(
            lambda: (marks / "hang-children").exists() or proc.poll() is not None, timeout=30
        )
        assert proc.poll() is None, _engine_log(tmp_path)
        pids = _children(marks, "hang")
        strays.extend(pids)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) != 0
        gone = wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)
        assert gone, f"alive after the run was cancelled: {[p for p in pids if _alive(p)]}"


@WORKERS
def test_a_tasks_children_stop_at_its_timeout(tmp_path: Path, workers: int) -> None:
    flow = _write_flow(tmp_path)
    marks = tmp_path / "marks"
    with _engine(tmp_path, f"{flow}:Late", "--workers", str(workers)) as (proc, strays):
        assert wait_for(lambda: (marks / "late-children").exists(), timeout=30), _engine_log(
            tmp_path
        )
        pids = _children(marks, "late")
        strays.extend(pids)
        assert proc.wait(timeout=30) == 1, _engine_log(tmp_path)
        assert "timeout of 1s" in _engine_log(tmp_path)
        gone = wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)
        assert gone, f"alive after the task timed out: {[p for p in pids if _alive(p)]}"


# -- 2b. a YAML module and its temporaries -----------------------------------------------------
PIPELINE = """\
dataNodes:
  out:
    source: out.txt
processNodes:
  slow:
    output: [out]
    processor: slow
"""

SLOW = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    from dagmill import processor

    with open("ran.txt", "a") as f:
        f.write("ran\\n")
    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write("half")
    if not Path("go").exists():
        Path("slow.pid").write_text(str(os.getpid()))
        time.sleep(60)
    with open(outputs[0], "w") as f:
        f.write("whole")
    """
)


def _stray_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".dagmill-tmp-" in p.name]


@WORKERS
def test_a_killed_engine_takes_its_module_along_and_the_resume_cleans_up(
    tmp_path: Path, workers: int
) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "slow.py").write_text(SLOW)
    temp = tmp_path / "tmp"  # the engine's temporary folder: nothing may stay in it
    temp.mkdir()
    data = tmp_path / "d"
    env = {"TMPDIR": os.fspath(temp)}
    with _engine(tmp_path, "p.yaml", "--data", "d", "--workers", str(workers), env=env) as (
        proc,
        strays,
    ):
        pid_file = tmp_path / "slow.pid"
        # written, not just created: the module writes its pid after opening the file
        written = lambda: pid_file.exists() and pid_file.read_text().strip()  # noqa: E731
        assert wait_for(lambda: written() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, _engine_log(tmp_path)
        module = int(pid_file.read_text())
        strays.append(module)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        gone = wait_for(lambda: not _alive(module), timeout=15)
        assert gone, "the processor module outlived its engine"
    if workers == 1:  # nothing was left to unwind: the module's half-written output stays
        assert [p.name for p in _stray_temporaries(data)] != []

    store = open_store()
    try:
        (run,) = store.list_runs()
    finally:
        store.close()
    (tmp_path / "go").touch()
    resumed = _dagmill("runs", "resume", run.id, "--quiet", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (data / "out.txt").read_text() == "whole"
    assert _stray_temporaries(data) == []
    assert list(temp.iterdir()) == []
    assert (tmp_path / "ran.txt").read_text().splitlines() == ["ran", "ran"]


def test_the_resume_removes_what_a_killed_inline_task_was_writing(
    tmp_path: Path, data_dir: Path
) -> None:
    flow = _write_flow(tmp_path)
    marks = tmp_path / "marks"
    with _engine(tmp_path, f"{flow}:Writing", "--data", os.fspath(data_dir)) as (proc, _):
        assert wait_for(lambda: (marks / "writing").exists() or proc.poll() is not None, 30)
        assert proc.poll() is None, _engine_log(tmp_path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert len(_stray_temporaries(data_dir)) == 1  # the engine was the writer: no unwinding
    store = open_store()
    try:
        (run,) = store.list_runs()
    finally:
        store.close()
    (marks / "go").touch()
    resumed = _dagmill("runs", "resume", run.id, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _stray_temporaries(data_dir) == [], resumed.stderr
    assert [p.suffix for p in data_dir.rglob("*") if p.is_file() and "Writing" in p.name] == [
        ".pkl"
    ]


def test_a_temporary_of_a_live_writer_or_another_host_stays(tmp_path: Path) -> None:
    from dagmill.io.atomic import remove_stale_temporaries, temp_path

    final = tmp_path / "out.csv"
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = Path(temp_path(os.fspath(final)))
    stale = tmp_path / f".out.csv.dagmill-tmp-{dead.pid}-0@{os.uname().nodename}"
    legacy = tmp_path / f".out.csv.dagmill-tmp-{dead.pid}"
    remote = tmp_path / f".out.csv.dagmill-tmp-{dead.pid}-0@another-host"
    other = tmp_path / f".other.csv.dagmill-tmp-{dead.pid}-0"
    for p in (mine, stale, legacy, remote, other):
        p.write_text("x")
    removed = remove_stale_temporaries([os.fspath(final)])
    assert sorted(removed) == sorted([os.fspath(stale), os.fspath(legacy)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine, remote, other)
    )


def test_staging_folders_of_killed_attempts_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    import fsspec

    from dagmill.services.pipelines import run_pipeline

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", os.fspath(temp))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (temp / f"dagmill-stage-{dead.pid}-abc").mkdir()
    (temp / f"dagmill-stage-{dead.pid}-abc" / "in-raw.csv").write_text("left behind")
    (temp / f"dagmill-stage-{os.getppid()}-def").mkdir()  # a live engine's
    fs = fsspec.filesystem("memory")
    fs.pipe("/stagetest/in.csv", b"a\n")
    (tmp_path / "copy.py").write_text(
        "from dagmill import processor\n"
        "processor.save('out', open(processor.fetch_datanodes_information()[0][0]).read())\n"
    )
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n"
        "  raw: {source: 'memory://stagetest/in.csv'}\n"
        "  out: {source: 'memory://stagetest/out.txt', format: text}\n"
        "processNodes:\n"
        "  copy: {input: [raw], output: [out], processor: copy}\n"
    )
    try:
        result = run_pipeline(
            os.fspath(tmp_path / "p.yaml"), options=RunOptions(execution_summary=False)
        )
        assert result is not None and result.ok
        assert sorted(p.name for p in temp.iterdir()) == [f"dagmill-stage-{os.getppid()}-def"]
    finally:
        fs.rm("/stagetest", recursive=True)


# -- 2d. Ctrl-C as a module finishes ----------------------------------------------------------
FINISHING = textwrap.dedent(
    """
    import signal
    import time
    from pathlib import Path

    from dagmill import processor

    with open("ran.txt", "a") as f:
        f.write("ran\\n")
    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write("all of it")
    # its work is done: it finishes whatever comes (a cancel's SIGTERM too)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path("finishing").touch()
    time.sleep(0.5)
    """
)


@WORKERS
def test_a_module_that_exited_0_as_ctrl_c_came_keeps_its_output(
    tmp_path: Path, workers: int
) -> None:
    """The rule: once a module has exited 0, its outputs are renamed into place and its
    attempt recorded as a success, even if Ctrl-C came meanwhile; it does not run again."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "slow.py").write_text(FINISHING)
    with _engine(tmp_path, "p.yaml", "--data", "d", "--workers", str(workers)) as (proc, _):
        assert wait_for(
            lambda: (tmp_path / "finishing").exists() or proc.poll() is not None, timeout=30
        )
        assert proc.poll() is None, _engine_log(tmp_path)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) != 0, _engine_log(tmp_path)
    assert (tmp_path / "d" / "out.txt").read_text() == "all of it", _engine_log(tmp_path)
    assert _stray_temporaries(tmp_path / "d") == []

    again = _dagmill("run", "p.yaml", "--data", "d", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout)
    assert {t["id"]: t["status"] for t in result["tasks"]}["slow"] == "SKIPPED"
    assert (tmp_path / "ran.txt").read_text().splitlines() == ["ran"]


# -- 5g. where a module failed -----------------------------------------------------------------
def test_a_failing_modules_error_names_its_own_line_not_pandas(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n  raw:\n    source: raw.csv\n    format: csv\n"
        "  out:\n    source: out.csv\n    format: csv\n"
        "processNodes:\n  slow:\n    input: [raw]\n    output: [out]\n    processor: slow\n"
    )
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "raw.csv").write_text("a,b\n1,2\n")
    source = textwrap.dedent(
        """
        from dagmill import processor

        table = processor.load("raw")
        table = table.drop(columns=["nope"])
        processor.save("out", table)
        """
    )
    module = tmp_path / "slow.py"
    module.write_text(source)
    line = source.splitlines().index('table = table.drop(columns=["nope"])') + 1
    out = _dagmill("run", "p.yaml", "--data", "d", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"at {module}:{line}" in out.stderr, out.stderr
    assert "pandas" not in out.stderr, out.stderr

    store = open_store()
    try:
        (run,) = store.list_runs()
    finally:
        store.close()
    shown = _dagmill("runs", "show", run.id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"{module}:{line}" in shown.stdout
    assert "at None" not in shown.stdout, shown.stdout


LEAVER = textwrap.dedent(
    """
    import subprocess
    from pathlib import Path

    from dagmill import processor

    child = subprocess.Popen(["sleep", "300"])  # started, never waited for
    Path("left.pid").write_text(str(child.pid))
    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write("done")
    """
)


@WORKERS
def test_what_a_module_leaves_running_ends_with_it(tmp_path: Path, workers: int) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "slow.py").write_text(LEAVER)
    out = _dagmill("run", "p.yaml", "--workers", str(workers), cwd=tmp_path)
    pid = int((tmp_path / "left.pid").read_text())
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert wait_for(lambda: not _alive(pid), timeout=5), "the module's child outlived it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
