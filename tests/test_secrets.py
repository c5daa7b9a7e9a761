"""Values of secret-named variables never reach the disk: not in a task's output (however
it is written: the first line, without a line end, in pieces, from a subprocess), not
in YAML processor modules or command nodes (secrets from the engine's environment and
from the node's own ``env:``), not in the error and traceback stored in the run record.

Every test reads every file under $DAGMILL_HOME (logs and the SQLite run record) and the
data folder's records byte by byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dagmill.runs

WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])
TOKEN = "s3cr3t-value-123"
LISTED = "hunter2-pass"
NODE_SECRET = "pipeline-pass-987"  # only in the YAML node's env:
ENV = {"MY_API_TOKEN": TOKEN, "DAGMILL_SECRET_ENV": "OTHER", "OTHER": LISTED}

FLOW = textwrap.dedent(
    """
    import os
    import subprocess
    import sys
    import time

    import dagmill

    TOKEN = os.environ["MY_API_TOKEN"]
    OTHER = os.environ["OTHER"]


    class NoLineEnd(dagmill.tasks.TaskPickle):
        def run(self):
            sys.stdout.write(TOKEN)  # the task's first and only output, no line end
            self.save(1)


    class RawFd(dagmill.tasks.TaskPickle):
        def run(self):
            os.write(2, OTHER.encode())
            self.save(1)


    class InPieces(dagmill.tasks.TaskPickle):
        def run(self):
            print(TOKEN[:5], end="", flush=True)
            time.sleep(0.05)  # the masking thread reads the first piece alone
            print(TOKEN[5:])
            self.save(1)


    class Sub(dagmill.tasks.TaskPickle):
        def run(self):
            subprocess.run(["sh", "-c", "printf %s $MY_API_TOKEN"], check=True)
            self.save(1)


    class Fails(dagmill.tasks.TaskPickle):
        def run(self):
            raise ValueError("the token is " + TOKEN)


    class All(dagmill.tasks.TaskPickle):
        def requires(self):
            return [NoLineEnd(), RawFd(), InPieces(), Sub()]

        def run(self):
            self.save(1)
    """
)


def _dagmill(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env={**os.environ, **ENV, "NO_COLOR": "1", "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _assert_nowhere_on_disk(tmp_path: Path, *secrets: str) -> None:
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".py", ".yaml")]
    assert any(".dagmill" in p.parts for p in files)
    for p in files:
        data = p.read_bytes()
        for s in secrets:
            assert s.encode() not in data, f"{s!r} is in {p}"


def _run_id(tmp_path: Path) -> str:
    (run,) = dagmill.runs.get_runs()
    return run.id


@WORKERS
def test_a_tasks_output_is_masked_however_it_is_written(tmp_path: Path, workers: int) -> None:
    (tmp_path / "secretflow.py").write_text(FLOW)
    out = _dagmill("run", "secretflow.py:All", "--workers", str(workers), "--data", "d",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    _assert_nowhere_on_disk(tmp_path, TOKEN, LISTED)
    run_id = _run_id(tmp_path)
    texts = {c.task_id.split("__")[0]: c.text for c in dagmill.runs.get_run_logs_list(run_id)}
    assert texts["NoLineEnd"] == "***"
    assert texts["RawFd"] == "***"
    assert texts["InPieces"] == "***\n"
    assert texts["Sub"] == "***"
    shown = _dagmill("runs", "logs", run_id, cwd=tmp_path)
    assert TOKEN not in shown.stdout and "***" in shown.stdout


@WORKERS
def test_a_tasks_error_and_traceback_are_masked_in_the_record(tmp_path: Path, workers: int) -> None:
    (tmp_path / "secretflow.py").write_text(FLOW)
    out = _dagmill("run", "secretflow.py:Fails", "--workers", str(workers), "--data", "d",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 1
    assert "the token is ***" in out.stderr and TOKEN not in out.stdout + out.stderr
    _assert_nowhere_on_disk(tmp_path, TOKEN)
    (task,) = dagmill.runs.get_run_tasks(_run_id(tmp_path))
    attempt = task.history[-1]
    assert "the token is ***" in (attempt.error or "")
    assert "the token is ***" in (attempt.traceback or "")
    shown = _dagmill("runs", "show", _run_id(tmp_path), "--json", cwd=tmp_path)
    assert "the token is ***" in shown.stdout and TOKEN not in shown.stdout


PIPELINE = f"""\
dataNodes:
  out:
    source: out.txt
  listing:
    source: listing.txt
processNodes:
  talk:
    output: [out]
    processor: talk
    env:
      DB_PASSWORD: {NODE_SECRET}
  shell:
    output: [listing]
    command: 'printf "%s %s\\n" "$MY_API_TOKEN" "$DB_PASSWORD" && printf x > "$DAGMILL_OUTPUT_0"'
    env:
      DB_PASSWORD: {NODE_SECRET}
"""

TALK = textwrap.dedent(
    """
    import os
    import sys

    from dagmill import processor

    sys.stdout.write(os.environ["MY_API_TOKEN"])  # no line end
    print(" and", os.environ["DB_PASSWORD"], file=sys.stderr)
    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write("x")
    if os.environ.get("FAIL"):
        raise ValueError("cannot log in with " + os.environ["DB_PASSWORD"])
    """
)


@WORKERS
def test_processor_modules_and_command_nodes_are_masked(tmp_path: Path, workers: int) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "talk.py").write_text(TALK)
    out = _dagmill("run", "p.yaml", "--workers", str(workers), "--data", "d", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    _assert_nowhere_on_disk(tmp_path, TOKEN, NODE_SECRET)
    texts = {c.task_id: c.text for c in dagmill.runs.get_run_logs_list(_run_id(tmp_path))}
    assert texts["talk"].split() == ["***", "and", "***"]
    assert texts["shell"] == "*** ***\n"


@WORKERS
def test_a_failing_modules_message_is_masked_in_the_record(tmp_path: Path, workers: int) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE.replace("env:\n", "env:\n      FAIL: '1'\n", 1))
    (tmp_path / "talk.py").write_text(TALK)
    out = _dagmill("run", "p.yaml", "--workers", str(workers), "--data", "d", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cannot log in with ***" in out.stderr
    _assert_nowhere_on_disk(tmp_path, TOKEN, NODE_SECRET)
    shown = _dagmill("runs", "show", _run_id(tmp_path), "--json", cwd=tmp_path)
    assert "cannot log in with ***" in shown.stdout
    assert NODE_SECRET not in shown.stdout
    talk = next(t for t in json.loads(shown.stdout)["tasks"] if t["id"] == "talk")
    assert "Traceback" in dagmill.runs.get_run_logs(_run_id(tmp_path), "talk")
    assert talk["status"] == "FAILED"
