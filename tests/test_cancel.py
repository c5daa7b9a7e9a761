"""Cancelling a run (SIGINT): everything the tasks started stops, nothing half-written stays,
and the run record says CANCELLED.

The run happens in a subprocess (its own session, so signals reach only it). Its tasks
start a child ``sleep 60``, open their output's temporary file, write part of it and
sleep; they leave marker files so the test knows when to interrupt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dagmill.store import open_store
from helpers import wait_for

SCRIPT = textwrap.dedent(
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import dagmill
    from dagmill.io.atomic import atomic_path

    marks = Path(sys.argv[1])
    dagmill.set_dir(sys.argv[2])
    workers = int(sys.argv[3])


    class Slow(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def run(self):
            child = subprocess.Popen(["sleep", "60"])
            (marks / f"child-{self.i}").write_text(str(child.pid))
            (marks / f"pgid-{self.i}").write_text(str(os.getpgid(0)))
            with atomic_path(self.output().path) as tmp, open(tmp, "wb") as f:
                f.write(b"half of the output")
                f.flush()
                (marks / f"writing-{self.i}").write_text(str(os.getpid()))
                time.sleep(60)
                f.write(b" and the rest")


    class Collect(dagmill.tasks.TaskPickle):
        def requires(self):
            return [Slow(i=i) for i in range(workers)]

        def run(self):
            self.save(self.inputLoad())


    (marks / "engine").write_text(str(os.getpid()))
    dagmill.run(Collect(), workers=workers, execution_summary=False)
    """
)


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state, pgid) of a live process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _written(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


def _alive(pid: int) -> bool:
    st = _proc_state(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has stopped


def _members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in any of the process groups."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_state(int(entry.name))
            if st is not None and st[1] in pgids and st[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


@pytest.mark.parametrize("workers", [2, 1], ids=["workers=2", "workers=1"])
def test_sigint_cancels_the_run_and_everything_it_started(
    workers: int, tmp_path: Path, data_dir: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "cancel_me.py"
    script.write_text(SCRIPT)
    log = tmp_path / "run.log"  # a file, not a pipe: a leftover child would hold a pipe open
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, os.fspath(script), os.fspath(marks), os.fspath(data_dir),
             str(workers)],
            cwd=tmp_path,
            env=dict(os.environ),
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    child_pids: list[int] = []
    groups: set[int] = {proc.pid}
    try:
        started = wait_for(
            lambda: (
                all((marks / f"writing-{i}").exists() for i in range(workers))
                or proc.poll() is not None
            ),
            timeout=20,
        )
        assert started and proc.poll() is None, "the tasks did not start"
        child_pids = [int((marks / f"child-{i}").read_text()) for i in range(workers)]
        groups |= {int((marks / f"pgid-{i}").read_text()) for i in range(workers)}
        assert all(_alive(pid) for pid in child_pids)
        tmp_files = [p for p in data_dir.rglob("*") if ".dagmill-tmp-" in p.name]
        assert len(tmp_files) == workers  # the outputs are being written right now

        interrupted = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not stop within 10 s of SIGINT")
        took = time.monotonic() - interrupted
        text = log.read_text(errors="replace")
        assert took < 5, f"the run took {took:.1f}s to stop after SIGINT"
        assert proc.returncode != 0, text

        assert wait_for(lambda: not any(_alive(p) for p in child_pids), timeout=2), (
            f"a task's child process outlived the cancelled run: {child_pids}"
        )
        assert wait_for(lambda: not _members(groups), timeout=2), (
            f"processes left in the run's process groups: {_members(groups)}"
        )

        files = [p for p in data_dir.rglob("*") if p.is_file()]
        assert not [p for p in files if ".dagmill-tmp-" in p.name], files
        assert not [p for p in files if p.name != ".dagmill-records.jsonl"], files

        store = open_store()
        try:
            runs = store.list_runs()
            assert len(runs) == 1, runs
            assert runs[0].status == "CANCELLED", text
            tasks = {(t.family, t.params.get("i")): t for t in store.get_run_tasks(runs[0].id)}
        finally:
            store.close()
        for i in range(workers):
            slow = tasks[("Slow", str(i))]
            assert slow.status == "CANCELLED"
            assert slow.history and slow.history[-1].status == "CANCELLED"
            assert slow.history[-1].started_at is not None
        assert tasks[("Collect", None)].status == "CANCELLED"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in child_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_killing_the_engine_stops_its_workers_and_what_they_started(
    tmp_path: Path, data_dir: Path
) -> None:
    """kill -9 of the engine (an OOM kill, a CI timeout): no worker or task child lives on,
    and the workers unwind, so no temporary output stays behind."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "cancel_me.py"
    script.write_text(SCRIPT)
    with open(tmp_path / "run.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, os.fspath(script), os.fspath(marks), os.fspath(data_dir), "2"],
            cwd=tmp_path, env=dict(os.environ), start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    child_pids: list[int] = []
    try:
        assert wait_for(
            # the pid written, not only the file created (write_text is not atomic)
            lambda: all(_written(marks / f"writing-{i}") for i in range(2)),
            timeout=20,
        ), "the tasks did not start"
        child_pids = [int((marks / f"child-{i}").read_text()) for i in range(2)]
        workers = [int((marks / f"writing-{i}").read_text()) for i in range(2)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        gone = wait_for(lambda: not any(_alive(p) for p in child_pids + workers), timeout=5)
        assert gone, f"left running after the engine died: {child_pids + workers}"
        leftovers = [p for p in data_dir.rglob("*") if ".dagmill-tmp-" in p.name]
        assert leftovers == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in child_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_to_the_cli_cancels_and_records_the_run(tmp_path: Path) -> None:
    flow = tmp_path / "slow_flow.py"
    flow.write_text(
        "import time\nfrom pathlib import Path\nimport dagmill\n\n\n"
        "class Sleepy(dagmill.tasks.TaskPickle):\n"
        "    def run(self):\n"
        "        Path('started').touch()\n"
        "        time.sleep(60)\n"
        "        self.save(1)\n"
    )
    env = {**os.environ, "DAGMILL_HOME": os.fspath(tmp_path / ".dagmill")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagmill.cli.main", "run", f"{flow}:Sleepy", "--workers", "2",
         "--quiet"],
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for(lambda: (tmp_path / "started").exists(), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    store = open_store(f"sqlite:///{tmp_path}/.dagmill/dagmill.db")
    try:
        (run,) = store.list_runs()
        assert run.status == "CANCELLED"
    finally:
        store.close()
