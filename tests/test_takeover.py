"""Fencing: an engine whose run another process took over (a server that thought it, or
its server, dead) stops its tasks and writes nothing more of the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dagmill.store import open_store
from helpers import wait_for

pytestmark = pytest.mark.timeout(90)

FLOW = textwrap.dedent(
    """
    import os, time
    import dagmill

    class Sleepy(dagmill.tasks.TaskPickle):
        def run(self):
            with open(os.environ["DM_MARKS"], "a") as f:
                f.write("start\\n")
            time.sleep(30)
            with open(os.environ["DM_MARKS"], "a") as f:
                f.write("end\\n")
            self.save(1)
    """
)


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "workers=2"])
def test_an_engine_whose_run_was_taken_over_stops_and_writes_nothing(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    marks = tmp_path / "marks"
    env = {**os.environ, "DM_MARKS": os.fspath(marks), "NO_COLOR": "1"}
    engine = subprocess.Popen(
        [sys.executable, "-m", "dagmill.cli.main", "run", "flow.py:Sleepy", "-w", str(workers)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: marks.exists(), 30, "the task to start")
        with open_store() as s:
            (run,) = s.list_runs()
            with s._tx():  # what a server's take-over writes
                s._execute("UPDATE runs SET owner = 'elsewhere:1' WHERE id = ?", (run.id,))
            taken_at = time.monotonic()
            _, err = engine.communicate(timeout=30)
            stopped_in = time.monotonic() - taken_at
            assert engine.returncode == 1, err
            assert f"run {run.id} was taken over by elsewhere:1" in err
            assert "Traceback" not in err
            assert stopped_in < 15, f"the engine went on for {stopped_in:.1f}s"  # beats: 5 s
            time.sleep(0.5)  # a late write of the old engine would show now
            after = s.get_run(run.id)
            assert after is not None
            assert (after.status, after.owner) == ("RUNNING", "elsewhere:1")  # not CANCELLED
            (task,) = s.get_run_tasks(run.id)
            assert [a.status for a in task.history] == ["RUNNING"], "it recorded its stop"
        assert marks.read_text() == "start\n", "the task went on after the take-over"
    finally:
        if engine.poll() is None:
            engine.kill()
