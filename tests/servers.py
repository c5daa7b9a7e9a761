"""Real ``dagmill server`` processes for tests: a project folder with pipelines and their
modules, jobs built from them, servers started (and always stopped) around a test, and
what the store recorded.

Every server runs in its own process group with its log in a file (never a pipe that a
busy test forgets to read); the fixture kills whatever is still running when the test
ends, pass or fail, so no server or runner outlives its test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dagmill.model.runs import RunInfo
from dagmill.store import Store, open_store
from helpers import wait_for

# a process node without outputs always runs (nothing to find complete): each run of the
# job runs it once, and it appends one JSON line per run to the file ``log`` names
TICK = """\
import json, os, time
from dagmill import processor

p = processor.params()
start = time.time()
if p.get("marker"):  # the pid of the attempt that started last
    with open(p["marker"], "w") as f:
        f.write(str(os.getpid()))
time.sleep(p.get("sleep", 0))
for output in processor.fetch_datanodes_information()[1]:
    with open(output, "w") as f:
        f.write("done\\n")
with open(p["log"], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}) + "\\n")
"""


def tick_pipeline(
    log: Path,
    every: str = "1s",
    sleep: float = 0.0,
    marker: Path | None = None,
    start_date: str = "2020-01-01 00:00",
) -> str:
    """A one-node pipeline, scheduled ``every``, whose module sleeps ``sleep`` seconds and
    logs each run to ``log`` (and touches ``marker`` as it starts)."""
    params: dict[str, Any] = {"log": str(log), "sleep": sleep}
    if marker is not None:
        params["marker"] = str(marker)
    return textwrap.dedent(f"""\
        processNodes:
          tick:
            processor: tick
            params: {json.dumps(params)}
        schedule:
          every: {every}
          start_date: "{start_date}"
        """)


@dataclass
class ServerProcess:
    """One ``dagmill server`` subprocess and its log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The log's JSON lines (a server started with --log-json)."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def has_logged(self, event: str) -> bool:
        return any(
            line.split()[2:3] == [event] or f'"event": "{event}"' in line
            for line in self.log().splitlines()
        )

    def wait_started(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            return self.has_logged("server_started")

        wait_for(up, timeout, "the server to start")

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (drain), and its exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server and everything in its process group (not its runners: each
        has its own group and dies as the server's pipe to it closes)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Project:
    """A folder with pipelines, the jobs built from them, and servers on one store."""

    root: Path
    database_url: str
    servers: list[ServerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "NO_COLOR": "1", "DAGMILL_DATABASE_URL": self.database_url}

    def dagmill(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagmill.cli.main", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def pipeline(self, name: str, yaml_text: str, modules: dict[str, str] | None = None) -> Path:
        """Write ``name/pipeline.yaml`` and its modules (the ``tick`` module by default)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for module, text in (modules or {"tick": TICK}).items():
            (folder / f"{module}.py").write_text(text)
        path = folder / "pipeline.yaml"
        path.write_text(yaml_text)
        return path

    def build(self, pipeline: Path) -> str:
        """Build a job from ``pipeline`` (data under its folder); the job's id."""
        built = self.dagmill("jobs", "build", str(pipeline), "--data", str(pipeline.parent / "d"))
        assert built.returncode == 0, built.stdout + built.stderr
        return built.stdout.split()[-1]

    def server(self, *args: str, wait: bool = True) -> ServerProcess:
        """Start ``dagmill server ARGS`` (by default: and wait until it serves)."""
        log_path = self.root / f"server-{len(self.servers)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dagmill.cli.main", "server", "--port", "0", *args],
                cwd=self.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # killed as a group at the end of the test
            )
        server = ServerProcess(proc, log_path)
        self.servers.append(server)
        if wait:
            server.wait_started()
        return server

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        with open_store(self.database_url) as s:
            yield s

    def runs(self, job_id: str) -> list[RunInfo]:
        """The job's runs, oldest slot first."""
        with self.store() as s:
            runs = s.list_runs(job_id=job_id, limit=10_000)
        return sorted(runs, key=lambda r: (r.scheduled_for or 0.0, r.created_at))

    def ended_runs(self, job_id: str) -> list[RunInfo]:
        return [r for r in self.runs(job_id) if r.status in ("SUCCESS", "FAILED", "CANCELLED")]

    def cleanup(self) -> None:
        for server in self.servers:
            if server.proc.poll() is None:
                server.kill()


CLIENT_VARS = ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE")


@dataclass
class ServerHome(Project):
    """A project whose commands and servers share one DAGMILL_HOME (so the server's key:
    tokens made by its commands work on its servers), and that is never a client of a
    server. ``secret_key``: DAGMILL_SECRET_KEY too (tokens made in this process work)."""

    secret_key: str | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if k not in CLIENT_VARS}
        env["DAGMILL_HOME"] = os.fspath(self.root / ".dagmill")
        if self.secret_key is not None:
            env["DAGMILL_SECRET_KEY"] = self.secret_key
        return env


def ticks(log: Path) -> list[dict[str, float]]:
    """The lines the ``tick`` module appended to ``log``."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def overlaps(runs: list[RunInfo]) -> list[tuple[str, str]]:
    """Pairs of runs (by start) whose [started_at, ended_at] intervals meet."""
    timed = sorted(
        (r for r in runs if r.started_at is not None and r.ended_at is not None),
        key=lambda r: r.started_at or 0.0,
    )
    return [
        (a.id, b.id)
        for a, b in itertools.pairwise(timed)
        if (b.started_at or 0.0) < (a.ended_at or 0.0)
    ]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
