"""The REST API of ``dagmill server``: latency and throughput, on SQLite and PostgreSQL.

    python bench/api.py [--quick] [--runs N] [--backends B,B] [--only get,post] [--pg URL]

For each backend: a fresh store (a temporary folder; PostgreSQL: a database
``dagmill_bench_<random>`` created through ``--pg`` and dropped at the end) with a
project, an admin token, a job built from a one-node pipeline, and ``--runs`` finished
runs of that job written straight into the store in one batch (100,000; 10,000 with
--quick). Then one ``dagmill server --port 0 --max-runs 1`` subprocess on loopback, and
clients with keep-alive connections (``http.client``, one per thread) call:

- ``GET /api/v1/runs?limit=50`` with 1 client, then 20 at once;
- ``POST /api/v1/jobs/{id}/run`` (queues a run, which the server then runs: one at a
  time, in the background of the measurement) with 1 client, then 20 at once.

Each phase is bounded in requests and in seconds (``--seconds``). Printed: requests,
p50, p99, requests/s per phase and the target, beside figures measured for comparison
(1 client, a handful of runs): Airflow 3.3 ``GET /api/v2/dags/{id}/dagRuns?limit=50`` p99
36 ms, Prefect 3.8 ``POST /api/flow_runs/filter`` p99 20 ms. The clients share the
machine with the server: on a small one their own CPU is part of the latency at 20.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SERVER_ARGS = ("--max-runs", "1", "--grace", "1", "--log-json")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PROJECT = "bench"
TARGETS = {  # p99 ms by (endpoint, clients), from the issue
    ("GET /runs?limit=50", 1): 10.0,
    ("GET /runs?limit=50", 20): 50.0,
    ("POST /jobs/{id}/run", 1): 25.0,
}
PIPELINE = """\
processNodes:
  noop:
    processor: noop
"""
NOOP = "from dagmill import processor\n\nprocessor.params()\n"


@dataclass(frozen=True)
class Phase:
    backend: str
    endpoint: str
    clients: int
    latencies: list[float]  # seconds, every request of every client
    errors: int
    seconds: float  # wall time of the phase
    server_cpu: float  # seconds of CPU the server process used in the phase

    def row(self) -> list[str]:
        ms = sorted(x * 1000 for x in self.latencies)
        p50 = statistics.median(ms) if ms else float("nan")
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
        target = TARGETS.get((self.endpoint, self.clients))
        verdict = "" if target is None else f"<= {target:g} {'ok' if p99 <= target else 'MISSED'}"
        return [
            self.backend,
            self.endpoint,
            str(self.clients),
            str(len(ms)) + (f" ({self.errors} failed)" if self.errors else ""),
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{len(ms) / self.seconds:.0f}" if self.seconds else "-",
            f"{self.server_cpu * 1000 / max(1, len(ms)):.2f}",
            verdict,
        ]


# -- a store with a project, a job, a token and many runs -----------------------------------
def dagmill(env: dict[str, str], cwd: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        sys.exit(f"dagmill {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def prepare(env: dict[str, str], folder: str, runs: int) -> tuple[str, str]:
    """Project, job, token and ``runs`` runs in the store of ``env``: (job id, bearer)."""
    dagmill(env, folder, "projects", "create", PROJECT, "-q")
    os.makedirs(os.path.join(folder, "p"), exist_ok=True)
    with open(os.path.join(folder, "p", "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    with open(os.path.join(folder, "p", "noop.py"), "w") as f:
        f.write(NOOP)
    built = dagmill(env, folder, "jobs", "build", "p/pipeline.yaml", "--project", PROJECT)
    job_id = built.split()[-1]
    saved = dict(os.environ)
    os.environ.update(env)  # the services read the store's URL and home from here
    try:
        from dagmill.services.tokens import create_token
        from dagmill.store import open_store

        token = create_token(PROJECT, "admin", "bench")
        t0 = time.perf_counter()
        with open_store(env["DAGMILL_DATABASE_URL"]) as store:
            seed(store, job_id, runs)
        print(f"  {runs:,} runs written in {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return job_id, token.bearer


def seed(store: Any, job_id: str, runs: int) -> None:
    """``runs`` ended runs of the job, one a minute back from now, in one transaction
    (the store's batch insert: the API reads them as any other run)."""
    now = time.time()
    statuses = ("SUCCESS",) * 8 + ("FAILED", "CANCELLED")
    rows = []
    for n in range(runs):
        created = now - 60.0 * (runs - n)
        rows.append(
            (
                f"r-bench-{n:07d}",
                job_id,
                PROJECT,
                "noop",
                statuses[n % len(statuses)],
                created,
                created + 0.5,
                created + 2.0,
                json.dumps({"SUCCESS": 1}),
                "{}",
            )
        )
    with store._tx():
        store._executemany(
            "INSERT INTO runs (id, job_id, project, name, status, created_at, started_at,"
            " ended_at, counts, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    if store.url.startswith("postgres"):
        store._execute("ANALYZE runs")  # as autovacuum would soon: plans on real statistics


# -- the server ---------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Served:
    root: str  # the API root
    pid: int  # the server process (its runners are other processes)


@contextmanager
def server(env: dict[str, str], folder: str) -> Iterator[Served]:
    """A ``dagmill server`` on a free loopback port."""
    log_path = os.path.join(folder, "server.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "server", "--port", "0", *SERVER_ARGS],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path) as f:
                    sys.exit(f"the server did not start:\n{f.read()[-4000:]}")
            time.sleep(0.05)
            with open(log_path) as f:
                for line in f:
                    if line.startswith("{") and '"api_listening"' in line:
                        url = json.loads(line)["url"]
        yield Served(url, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# -- the clients --------------------------------------------------------------------------------
def measure(
    backend: str,
    endpoint: str,
    served: Served,
    request: Callable[[], tuple[str, str, bytes | None]],
    headers: dict[str, str],
    clients: int,
    per_client: int,
    seconds: float,
    ok: int,
) -> Phase:
    """``clients`` threads, each with one keep-alive connection, making up to
    ``per_client`` requests (or until ``seconds`` have passed)."""
    parts = urlsplit(served.root)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        mine = latencies[n]
        start.wait()
        for _ in range(per_client):
            method, path, body = request()
            t0 = time.perf_counter()
            conn.request(method, parts.path + path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            took = time.perf_counter() - t0
            if response.status != ok:
                errors[n] += 1
                if errors[n] == 1:
                    print(f"  {method} {path}: {response.status}", file=sys.stderr)
            else:
                mine.append(took)
            if time.perf_counter() > stop_at[0]:
                break
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    cpu0 = cpu_seconds(served.pid)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(served.pid) - cpu0
    done = [x for m in latencies for x in m]
    return Phase(backend, endpoint, clients, done, sum(errors), wall, cpu)


def bench_backend(backend: str, url: str, folder: str, args: argparse.Namespace) -> list[Phase]:
    home = os.path.join(folder, ".dagmill")
    env = {
        **os.environ,
        "DAGMILL_HOME": home,
        "DAGMILL_DATABASE_URL": url,
        "NO_COLOR": "1",
    }
    for name in ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE"):
        env.pop(name, None)
    print(f"{backend}: preparing", flush=True)
    job_id, bearer = prepare(env, folder, args.runs)
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    phases = []
    with server(env, folder) as served:
        print(f"{backend}: server at {served.root}", flush=True)
        get = ("GET /runs?limit=50", lambda: ("GET", "/runs?limit=50", None), 200)
        post = ("POST /jobs/{id}/run", lambda: ("POST", f"/jobs/{job_id}/run", b"{}"), 201)
        # warm up: imports, the first connections of the pool, the token's check
        measure(backend, "warm", served, get[1], headers, 4, 25, 10, 200)
        chosen = [(e, r, ok) for e, r, ok in (get, post) if e.split()[0].lower() in args.only]
        for endpoint, request, ok in chosen:
            for clients in (1, 20):
                total = args.requests if clients == 1 else args.requests * 2
                if endpoint.startswith("POST"):
                    total //= 4  # each is a run the server then runs
                phase = measure(
                    backend,
                    endpoint,
                    served,
                    request,
                    headers,
                    clients,
                    max(1, total // clients),
                    args.seconds,
                    ok,
                )
                print("  " + "  ".join(phase.row()[1:]), flush=True)
                phases.append(phase)
    return phases


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    name = f"dagmill_bench_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def table(phases: list[Phase]) -> str:
    head = [
        "backend",
        "endpoint",
        "clients",
        "requests",
        "p50 ms",
        "p99 ms",
        "req/s",
        "server CPU ms/req",
        "target p99 ms",
    ]
    rows = [head] + [p.row() for p in phases]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 runs, fewer requests")
    parser.add_argument("--runs", type=int, help="runs in the store (default 100,000)")
    parser.add_argument("--requests", type=int, help="GET requests at 1 client (default 2,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="bound of each phase")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--only", default="get,post", help="get, post or both (get,post)")
    parser.add_argument("--pg", default=PG_ADMIN, help="PostgreSQL to create databases on")
    args = parser.parse_args()
    args.runs = args.runs or (10_000 if args.quick else 100_000)
    args.requests = args.requests or (400 if args.quick else 2_000)
    phases: list[Phase] = []
    top = tempfile.mkdtemp(prefix="dagmill-bench-api-")
    try:
        for backend in args.backends.split(","):
            folder = os.path.join(top, backend)
            os.makedirs(folder)
            if backend == "sqlite":
                url = f"sqlite:///{folder}/.dagmill/dagmill.db"
                phases += bench_backend(backend, url, folder, args)
            elif backend == "postgresql":
                with postgres_database(args.pg) as url:
                    phases += bench_backend(backend, url, folder, args)
            else:
                sys.exit(f"--backends: {backend!r} is not sqlite or postgresql")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"dagmill API, {args.runs:,} runs in the store, loopback, {os.cpu_count()} CPUs"
        f" (load average now {load}: other work on the machine inflates the latencies)"
    )
    print(table(phases))
    print(
        "for comparison (1 client, a handful of runs): Airflow 3.3 GET dagRuns?limit=50"
        " p99 36 ms; Prefect 3.8 POST flow_runs/filter p99 20 ms"
    )


if __name__ == "__main__":
    main()
