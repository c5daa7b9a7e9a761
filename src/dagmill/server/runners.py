"""The runners: at most ``max_runs`` runs at once, each in its own process group, with a
spare runner always warm so that a due run starts without a Python start-up."""

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
    engine died or was handed back."""

    action: str
    run_id: str
    job_id: str | None
    workers: int
    log: str


@dataclass(slots=True)
class Runner:
    proc: subprocess.Popen[bytes]
    owner: str  # host:pid, as the store names the run's owner
    assignment: Assignment | None = None
    started_at: float = 0.0
    returncode: int | None = None


class RunnerPool:
    """Starts runners, hands each one run, and says when they end (``on_exit``)."""

    def __init__(self, max_runs: int, on_exit: Callable[[], None], env: dict[str, str]) -> None:
        self.max_runs = max_runs
        self._on_exit = on_exit
        self._env = env
        self._spare: Runner | None = None
        self._busy: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._host = os.uname().nodename

    def _spawn(self) -> Runner:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagmill.server.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=None,  # until it is given a run (then its run's log): the server's stderr
            start_new_session=True,  # its own process group: stopped as one
            env=self._env,
        )
        runner = Runner(proc, f"{self._host}:{proc.pid}")
        threading.Thread(target=self._watch, args=(runner,), daemon=True).start()
        return runner

    def _watch(self, runner: Runner) -> None:
        runner.returncode = runner.proc.wait()
        self._on_exit()

    def warm(self) -> None:
        """Keep one runner ready while there is room for another run."""
        with self._lock:
            spare = self._spare
            if spare is not None and spare.returncode is not None:
                self._spare = spare = None  # died while waiting (killed by hand)
            if spare is None and len(self._busy) < self.max_runs:
                self._spare = self._spawn()

    def free(self) -> int:
        return self.max_runs - len(self._busy)

    def next_owner(self) -> str:
        """The owner the next run will have (the spare runner's): claim runs for it."""
        self.warm()
        assert self._spare is not None, "no room for another run"
        return self._spare.owner

    def start(self, assignment: Assignment) -> Runner:
        """Hand ``assignment`` to the spare runner (claimed for it with ``next_owner``)."""
        self.warm()
        with self._lock:
            runner, self._spare = self._spare, None
        assert runner is not None and runner.proc.stdin is not None
        runner.assignment = assignment
        runner.started_at = time.time()
        runner.proc.stdin.write(json.dumps(asdict(assignment)).encode() + b"\n")
        runner.proc.stdin.flush()  # the pipe stays open: closing it stops the runner
        with self._lock:
            self._busy[assignment.run_id] = runner
        self.warm()
        return runner

    def finished(self) -> list[Runner]:
        """Runners whose run ended since the last call."""
        with self._lock:
            done = [r for r in self._busy.values() if r.returncode is not None]
            for r in done:
                assert r.assignment is not None
                del self._busy[r.assignment.run_id]
                if r.proc.stdin is not None:
                    r.proc.stdin.close()
        return done

    def busy(self) -> list[Runner]:
        with self._lock:
            return list(self._busy.values())

    def stop(self, runner: Runner) -> None:
        """Stop a runner now (its run is handed back): closing its pipe makes it kill its
        own process group; SIGKILL the group too, in case it is stuck."""
        if runner.proc.stdin is not None and not runner.proc.stdin.closed:
            with contextlib.suppress(OSError):
                runner.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(runner.proc.pid, signal.SIGKILL)
        runner.proc.wait()

    def close(self) -> None:
        """Stop the spare (it has no run)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            self.stop(spare)
