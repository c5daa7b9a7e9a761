"""Task output: what tasks print (stdout, stderr, logging, their subprocesses) is kept per
attempt in $DAGMILL_HOME/logs, read back with `dagmill runs logs` (and followed live with
--follow) or `dagmill.runs.get_run_logs`, with secrets masked, and kept off the terminal.

CLI calls are fresh `python -m dagmill.cli.main` subprocesses, without PYTHONUNBUFFERED
(as on a user's machine, where a task's stdout into a file is block-buffered).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import dagmill
import dagmill.runs
from dagmill.frontends.loader import load_task
from helpers import wait_for

FLOW = textwrap.dedent(
    '''
    """Tasks that talk."""
    import logging
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import dagmill

    HERE = Path(__file__).parent


    class Chatty(dagmill.tasks.TaskPickle):
        def run(self):
            print("chatty: print")
            logging.getLogger("chatty").warning("chatty: logging warning")
            subprocess.run(["echo", "chatty: subprocess echo"], check=True)
            os.system("echo chatty: os.system")
            print("chatty: stderr", file=sys.stderr)
            self.save(1)


    class Left(dagmill.tasks.TaskPickle):
        def run(self):
            for i in range(25):
                print(f"left {i}")
                sys.stdout.flush()
                time.sleep(0.004)
            self.save(1)


    class Right(dagmill.tasks.TaskPickle):
        def run(self):
            for i in range(25):
                print(f"right {i}")
                sys.stdout.flush()
                time.sleep(0.004)
            self.save(1)


    class Both(dagmill.tasks.TaskPickle):
        def requires(self):
            return [Left(), Right()]

        def run(self):
            print("both: done")
            self.save(1)


    class Flaky(dagmill.tasks.TaskPickle):
        retries = 1

        def run(self):
            count = HERE / "flaky-count"
            n = int(count.read_text()) + 1 if count.exists() else 1
            count.write_text(str(n))
            print(f"flaky attempt {n}")
            if n == 1:
                raise RuntimeError("the first attempt fails")
            self.save(n)


    class Ticker(dagmill.tasks.TaskPickle):
        def run(self):
            print("ticker: started", flush=True)
            deadline = time.time() + 20
            while not (HERE / "go").exists() and time.time() < deadline:
                time.sleep(0.02)
            print(f"tick {time.time()}")
            time.sleep(2)
            print("ticker: done")
            self.save(1)


    class Leaky(dagmill.tasks.TaskPickle):
        def run(self):
            print("token", os.environ["MY_API_TOKEN"])
            print("other", os.environ["OTHER"], file=sys.stderr)
            subprocess.run(["sh", "-c", 'echo "sub $MY_API_TOKEN $OTHER"'], check=True)
            logging.getLogger("leaky").warning("logged %s", os.environ["OTHER"])
            sys.stdout.write(("x" * 997 + os.environ["MY_API_TOKEN"]) * 300 + "\\n")
            self.save(1)


    class Tattler(dagmill.tasks.TaskPickle):
        def run(self):
            raise ValueError("the token is " + os.environ["MY_API_TOKEN"])


    class Loud(dagmill.tasks.TaskPickle):
        def run(self):
            print("loud: before", flush=True)
            line = "y" * 63 + "\\n"
            for _ in range(16384):  # 1 MiB
                sys.stdout.write(line)
            print("loud: after")
            self.save(1)
    '''
)

CHATTY_LINES = [
    "chatty: print",
    "chatty: logging warning",
    "chatty: subprocess echo",
    "chatty: os.system",
    "chatty: stderr",
]


# -- helpers ----------------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250", **(extra or {})}
    env.pop("PYTHONUNBUFFERED", None)  # as on a user's machine
    return env


def dagmill_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=_env(env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_flow(
    tmp_path: Path, task: str, workers: int, env: dict[str, str] | None = None
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`dagmill run logflow.py:TASK --workers N`; (run id, the finished process)."""
    out = dagmill_cli(
        "run", f"{tmp_path / 'logflow.py'}:{task}", "--workers", str(workers),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("run ")]
    assert lines, f"no run id printed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return lines[-1].split()[1].rstrip(":"), out


def run_in_terminal(
    tmp_path: Path, task: str, workers: int, env: dict[str, str] | None = None
) -> tuple[str, int, str, str]:
    """`dagmill run` with its stdout on a terminal (a pty), as a user runs it;
    (run id, exit code, what the terminal showed, stderr)."""
    import pty

    master, slave = pty.openpty()
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "run", f"{tmp_path / 'logflow.py'}:{task}",
             "--workers", str(workers)],
            cwd=tmp_path, env=_env(env), stdin=subprocess.DEVNULL, stdout=slave, stderr=err,
        )  # fmt: skip
    os.close(slave)
    shown = []
    deadline = time.monotonic() + 30
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                pytest.fail(f"`dagmill run {task}` did not end within 30 s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not data:
                break
            shown.append(data)
        code = proc.wait(timeout=10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = b"".join(shown).decode(errors="replace").replace("\r\n", "\n")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("run ")]
    assert lines, f"no run id shown ({code}):\n{stdout}"
    return lines[-1].split()[1].rstrip(":"), code, stdout, (tmp_path / "stderr.txt").read_text()


def task_id(run_id: str, family: str) -> str:
    (t,) = [t for t in dagmill.runs.get_run_tasks(run_id) if t.family == family]
    return t.task_id


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "logflow.py"
    path.write_text(FLOW)
    return path


WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])


# -- what is captured ---------------------------------------------------------------------
@WORKERS
def test_print_logging_and_subprocess_output_are_in_the_task_log(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    run_id, out = run_flow(tmp_path, "Chatty", workers)
    assert out.returncode == 0, out.stderr

    cli = dagmill_cli("runs", "logs", run_id, "--task", "Chatty", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    api = dagmill.runs.get_run_logs(run_id)
    chunks = dagmill.runs.get_run_logs_list(run_id, "Chatty")
    assert [(c.task_id, c.attempt) for c in chunks] == [(task_id(run_id, "Chatty"), 1)]
    for line in CHATTY_LINES:
        assert line in cli.stdout.splitlines(), (line, cli.stdout)
        assert line in api.splitlines(), (line, api)
        assert line in chunks[0].text.splitlines(), (line, chunks[0].text)
    assert f"── {task_id(run_id, 'Chatty')} (attempt 1) ──" in api


@WORKERS
def test_the_terminal_shows_the_summary_not_the_tasks_output(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    run_id, code, shown, err = run_in_terminal(tmp_path, "Chatty", workers)
    assert code == 0, shown + err
    assert "Execution Summary" in shown
    assert "* 1 ran successfully:" in shown
    assert shown.rstrip().endswith(f"run {run_id}: SUCCESS")
    for line in CHATTY_LINES:
        assert line not in shown, f"{line!r} leaked to the terminal's stdout"
        assert line not in err, f"{line!r} leaked to the terminal's stderr"
    # it is in the log instead
    assert set(CHATTY_LINES) <= set(dagmill.runs.get_run_logs(run_id).splitlines())


@WORKERS
def test_two_tasks_outputs_are_not_mixed(flow: Path, tmp_path: Path, workers: int) -> None:
    run_id, out = run_flow(tmp_path, "Both", workers)
    assert out.returncode == 0, out.stderr
    expected = {
        "Left": [f"left {i}" for i in range(25)],
        "Right": [f"right {i}" for i in range(25)],
        "Both": ["both: done"],
    }
    for family, lines in expected.items():
        (chunk,) = dagmill.runs.get_run_logs_list(run_id, family)
        assert chunk.text.splitlines() == lines, (family, chunk.text)
        cli = dagmill_cli("runs", "logs", run_id, "--task", family, cwd=tmp_path)
        assert cli.stdout.splitlines() == lines, (family, cli.stdout)
    if workers == 2:  # they did run at the same time
        tasks = {t.family: t.history[0] for t in dagmill.runs.get_run_tasks(run_id)}
        left, right = tasks["Left"], tasks["Right"]
        assert left.started_at is not None and right.started_at is not None
        assert left.ended_at is not None and right.ended_at is not None
        assert max(left.started_at, right.started_at) < min(left.ended_at, right.ended_at)


@WORKERS
def test_each_attempt_of_a_retried_task_has_its_own_log(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    run_id, out = run_flow(tmp_path, "Flaky", workers)
    assert out.returncode == 0, out.stdout + out.stderr
    tid = task_id(run_id, "Flaky")
    chunks = dagmill.runs.get_run_logs_list(run_id, "Flaky")
    assert [(c.task_id, c.attempt) for c in chunks] == [(tid, 1), (tid, 2)]
    assert chunks[0].text.splitlines() == ["flaky attempt 1"]
    assert chunks[1].text.splitlines() == ["flaky attempt 2"]

    cli = dagmill_cli("runs", "logs", run_id, cwd=tmp_path)
    assert cli.stdout.splitlines() == [
        f"── {tid} (attempt 1) ──",
        "flaky attempt 1",
        f"── {tid} (attempt 2) ──",
        "flaky attempt 2",
    ]


def test_ctrl_c_stops_following_quietly_with_exit_130(flow: Path, tmp_path: Path) -> None:
    # the way to stop --follow before the run ends: it said "Aborted!" and exited 1
    job_id = dagmill_cli("jobs", "build", f"{flow}:Ticker", cwd=tmp_path).stdout.strip()
    run_id = dagmill_cli("jobs", "run", job_id, cwd=tmp_path).stdout.strip()
    follower = subprocess.Popen(
        [sys.executable, "-m", "dagmill.cli.main", "runs", "logs", run_id, "--follow"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        wait_for(lambda: "ticker: started" in follower.stdout.readline(), 20, "the task")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=15)
        assert follower.returncode == 130, err
        assert err == "", err
    finally:
        if follower.poll() is None:
            follower.kill()
        (tmp_path / "go").write_text("")  # let the run end
        wait_for(lambda: dagmill.runs.get_run(run_id).status == "SUCCESS", 20, "the run")


# -- following a running task -------------------------------------------------------------
@WORKERS
def test_follow_shows_a_printed_line_within_a_second_and_ends_with_the_run(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    job_id = dagmill_cli("jobs", "build", f"{flow}:Ticker", cwd=tmp_path).stdout.strip()
    started = dagmill_cli("jobs", "run", job_id, "--workers", str(workers), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    follower = subprocess.Popen(
        [sys.executable, "-m", "dagmill.cli.main", "runs", "logs", run_id, "--follow"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[tuple[float, str]] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append((time.time(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # the follower is reading the task's output: let the task print its tick
        wait_for(lambda: any(t == "ticker: started" for _, t in seen), 20, "ticker: started")
        (tmp_path / "go").write_text("")
        wait_for(lambda: any(t.startswith("tick ") for _, t in seen), 10, "the tick line")
        read_at, line = next((r, t) for r, t in seen if t.startswith("tick "))
        delay = read_at - float(line.split()[1])

        # the follower ends by itself once the run has ended
        follower.wait(timeout=15)
        reader.join(5)
        ended_at = time.time()
        info = dagmill.runs.get_run(run_id)
        assert info.status == "SUCCESS" and info.ended_at is not None
        assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
        assert ended_at - info.ended_at < 3
        lines = [t for _, t in seen]
        assert lines[0] == f"── {task_id(run_id, 'Ticker')} (attempt 1) ──"
        assert lines[1] == "ticker: started" and lines[-1] == "ticker: done"
        assert len(lines) == 4, lines
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        (tmp_path / "go").write_text("")

    # after the run: still readable, from the command line and from Python
    after = dagmill_cli("runs", "logs", run_id, "--task", "Ticker", cwd=tmp_path)
    assert after.stdout.splitlines() == lines[1:]
    assert dagmill.runs.get_run_logs(run_id).splitlines() == lines
    # the line showed while the task was still running, not when it ended (2 s later)
    assert delay < 1.0, f"the printed line reached `runs logs --follow` after {delay:.2f}s"


# -- secrets, turning capture off ----------------------------------------------------------
SECRETS = {
    "MY_API_TOKEN": "s3cr3t-value-123",
    "DAGMILL_SECRET_ENV": "OTHER",
    "OTHER": "hunter2-pass",
}


@WORKERS
def test_secrets_are_masked_before_they_reach_the_disk(
    flow: Path, tmp_path: Path, workers: int
) -> None:
    run_id, out = run_flow(tmp_path, "Leaky", workers, env=SECRETS)
    assert out.returncode == 0, out.stdout + out.stderr

    logs = tmp_path / ".dagmill" / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        for secret in (b"s3cr3t-value-123", b"hunter2-pass"):
            assert secret not in data, f"{secret!r} is in {p}"

    (chunk,) = dagmill.runs.get_run_logs_list(run_id, "Leaky")
    lines = chunk.text.splitlines()
    assert "token ***" in lines
    assert "other ***" in lines
    assert "sub *** ***" in lines
    assert "logged ***" in lines
    assert lines[-1] == ("x" * 997 + "***") * 300  # a long line, cut into pipe-sized chunks
    cli = dagmill_cli("runs", "logs", run_id, "--task", "Leaky", cwd=tmp_path)
    assert cli.stdout.splitlines() == lines
    assert "s3cr3t" not in out.stdout + out.stderr


def test_a_secret_in_a_tasks_error_is_masked_in_the_run_record(flow: Path, tmp_path: Path) -> None:
    run_id, out = run_flow(tmp_path, "Tattler", 1, env=SECRETS)
    assert out.returncode == 1
    (attempt,) = dagmill.runs.get_run_tasks(run_id)[0].history
    assert "the token is ***" in (attempt.error or "")
    shown = dagmill_cli("runs", "show", run_id, "--json", cwd=tmp_path)
    assert "the token is ***" in shown.stdout
    on_disk = [p for p in (tmp_path / ".dagmill").rglob("*") if p.is_file()]
    for p in on_disk:
        assert b"s3cr3t-value-123" not in p.read_bytes(), f"the secret is in {p}"
    assert "s3cr3t-value-123" not in shown.stdout


@WORKERS
def test_with_capture_off_nothing_is_kept_and_output_goes_to_the_terminal(
    flow: Path, tmp_path: Path, workers: int, capfd: pytest.CaptureFixture[str]
) -> None:
    dagmill.settings.capture_logs = False
    task = load_task(f"{flow}:Chatty")()
    result = dagmill.run(task, workers=workers, execution_summary=False)
    assert result is not None and result.ok
    captured = capfd.readouterr()
    for line in CHATTY_LINES:
        if "logging" not in line:  # pytest's own logging capture takes the warning
            assert line in captured.out + captured.err, line
    assert dagmill.runs.get_run(result.run_id).status == "SUCCESS"  # still recorded
    assert not (tmp_path / ".dagmill" / "logs").exists()
    assert dagmill.runs.get_run_logs_list(result.run_id) == []
    assert dagmill.runs.get_run_logs(result.run_id) == ""
    cli = dagmill_cli("runs", "logs", result.run_id, cwd=tmp_path)
    assert cli.returncode == 0 and cli.stdout == ""


# -- a full disk ------------------------------------------------------------------------
@pytest.fixture
def tiny_logs_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """$DAGMILL_HOME/logs on a 256 KiB tmpfs; the run record elsewhere (a real disk)."""
    logs = tmp_path / ".dagmill" / "logs"
    logs.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", os.fspath(logs)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr}"
    (tmp_path / "db").mkdir()
    monkeypatch.setenv("DAGMILL_DATABASE_URL", f"sqlite:///{tmp_path}/db/dagmill.db")
    yield logs
    subprocess.run(["umount", "-l", os.fspath(logs)], check=True)


@pytest.mark.parametrize("masking", [False, True], ids=["plain", "masking-secrets"])
@WORKERS
def test_a_full_log_disk_does_not_lose_what_is_recorded(
    flow: Path, tmp_path: Path, tiny_logs_disk: Path, workers: int, masking: bool
) -> None:
    env = SECRETS if masking else {}
    before, out = run_flow(tmp_path, "Chatty", 1, env=env)  # recorded before the disk fills
    assert out.returncode == 0

    began = time.monotonic()
    run_id, code, shown, err = run_in_terminal(tmp_path, "Loud", workers, env=env)
    took = time.monotonic() - began
    assert took < 20, f"the run took {took:.0f}s with a full log disk"
    assert code in (0, 1), shown + err
    info = dagmill.runs.get_run(run_id)
    (loud,) = dagmill.runs.get_run_tasks(run_id)
    attempt = loud.history[-1]
    # the outcome is recorded, the same as the command said
    assert info.status == ("SUCCESS" if code == 0 else "FAILED")
    assert loud.status == info.status and attempt.status == info.status
    assert attempt.ended_at is not None and info.ended_at is not None
    if info.status == "FAILED":  # the user is told why
        assert "No space left on device" in (attempt.error or ""), attempt
        assert "No space left on device" in err
    # what was written before the disk filled is kept: this run's first lines ...
    (chunk,) = dagmill.runs.get_run_logs_list(run_id, "Loud")
    assert chunk.text.splitlines()[0] == "loud: before", chunk.text[:200]
    # ... and the earlier run's log
    assert set(CHATTY_LINES) <= set(dagmill.runs.get_run_logs(before).splitlines())
    # the task's output did not end up on the terminal instead
    leaked = [ln for ln in (shown + err).splitlines() if "yyyy" in ln]
    assert not leaked, f"the task's output reached the terminal: {leaked[:3]}"
    # later commands still work
    listed = json.loads(dagmill_cli("runs", "list", "--json", cwd=tmp_path).stdout)
    assert [r["id"] for r in listed] == [run_id, before]
