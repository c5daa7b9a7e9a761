"""The runners: at most ``max_runs`` runs at once, each in its own process, forked by a
warm fork server (``server/child.py``) so that a due run starts in milliseconds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["Assignment", "Runner", "RunnerPool"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """The run a runner is given: ``run`` a queued run of a job, or ``resume`` one whose
    engine died or was handed back. ``claimed_by`` is the owner the server claimed the
    run for (the fork server); the runner takes it over from there. ``server_id``: the
    server's, which the runner's engine records with the run and its leases (from
    ``DAGMILL_SERVER_ID``)."""

    action: str
    run_id: str
    job_id: str | None
    workers: int
    log: str
    claimed_by: str
    server_id: str | None = None
    # a resume: the owner the run was taken from (None: it was handed back), for the
    # record of the attempts it left open
    taken_from: str | None = None
    # a run: everything runs again, complete or not (a rerun queued so, in runs.options)
    forced_all_upstream: bool = False


@dataclass(slots=True)
class Runner:
    assignment: Assignment
    started_at: float
    pid: int | None = None  # known once forked
    returncode: int | None = None

    @property
    def owner(self) -> str | None:
        return None if self.pid is None else f"{os.uname().nodename}:{self.pid}"


class RunnerPool:
    """Hands runs to the fork server and follows its runners (``on_exit`` is called when
    one ends, or when the fork server itself is gone)."""

    def __init__(self, max_runs: int, on_exit: Callable[[], None], env: dict[str, str]) -> None:
        self.max_runs = max_runs
        self._on_exit = on_exit
        self._env = env
        self._lock = threading.Lock()
        self._runs: dict[str, Runner] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # -- the fork server ---------------------------------------------------------------------
    def warm(self) -> None:
        """Start the fork server, if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dagmill.server.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # its own errors go to the server's stderr
            start_new_session=True,  # a terminal's Ctrl-C reaches the server alone
            env=self._env,
        )
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            with self._lock:
                runner = self._runs.get(event.get("run_id", ""))
                if runner is not None and event["event"] == "forked":
                    runner.pid = event["pid"]
                elif runner is not None and event["event"] == "exited":
                    runner.returncode = event["code"]
            if event["event"] == "exited":
                self._on_exit()
        proc.wait()
        with self._lock:  # the fork server is gone, and its runners with it
            for runner in self._runs.values():
                if runner.returncode is None:
                    runner.returncode = -signal.SIGKILL
        self._on_exit()

    def owner(self) -> str:
        """The owner to claim runs for: the fork server, until its runner takes over."""
        self.warm()
        assert self._proc is not None
        return f"{os.uname().nodename}:{self._proc.pid}"

    # -- runs --------------------------------------------------------------------------------
    def free(self) -> int:
        with self._lock:
            return self.max_runs - len(self._runs)

    def start(self, assignment: Assignment) -> Runner:
        """Fork a runner for ``assignment`` (claimed for :meth:`owner`)."""
        self.warm()
        assert self._proc is not None and self._proc.stdin is not None
        runner = Runner(assignment, time.time())
        with self._lock:
            self._runs[assignment.run_id] = runner
        self._proc.stdin.write(json.dumps(asdict(assignment)).encode() + b"\n")
        self._proc.stdin.flush()
        return runner

    def finished(self) -> list[Runner]:
        """Runners that ended since the last call."""
        with self._lock:
            done = [r for r in self._runs.values() if r.returncode is not None]
            for r in done:
                del self._runs[r.assignment.run_id]
        return done

    def busy(self) -> list[Runner]:
        with self._lock:
            return list(self._runs.values())

    def stop(self, runner: Runner, wait: float = 5.0) -> None:
        """Stop a runner, now (its run is handed back), and so what it started."""
        deadline = time.monotonic() + wait
        while runner.pid is None and runner.returncode is None and time.monotonic() < deadline:
            time.sleep(0.01)  # not forked yet: its pid is on its way
        if runner.pid is not None and runner.returncode is None:
            # the engine alone, as a crash would: its reaper then stops every process of
            # the run (modules run in sessions of their own, out of the runner's group)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(runner.pid, signal.SIGKILL)
            while runner.returncode is None and time.monotonic() < deadline:
                time.sleep(0.01)

    def close(self) -> None:
        """Stop the fork server (it stops whatever runners are left)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
