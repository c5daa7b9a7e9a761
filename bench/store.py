"""The run record (store) on SQLite and PostgreSQL: recording, listing, and its cost.

    python bench/store.py [--runs 3] [--quick] [--dir FOLDER] [--pg URL] [--json FILE]

1. Runs recorded per second: a 1,000-task fan-out (1 root -> 1,000 leaves -> 1 join, each
   task writes a small pickle, as in bench/overhead.py) run inline in a fresh process with
   the run record on, on SQLite and on PostgreSQL (DAGMILL_DATABASE_URL set for the
   child). Each process gets a new database whose schema is created before the child
   starts, so "in-run" (graph construction + ``dagmill.run``) is recording, not migrating;
   the first-use schema creation is timed on its own, and so is importing the driver
   (psycopg), as bench/overhead.py does for dagmill itself. runs/s = 1 / in-run.
2. ``dagmill runs list --limit 50`` with 100,000 runs in the store (10,000 with --quick):
   ``list_runs(limit=50)`` and ``list_runs(status="FAILED", limit=50)`` in-process (median
   of 30 calls), the query plans, and the whole CLI command (median of 5 processes, with
   ``--json`` and as the table), beside ``dagmill --help`` for the interpreter's and
   click's share.
3. Engine overhead per task with the full store on (SQLite) and off (``record=False``),
   same fan-out, inline; the target is on/off within 1.5x.

Figures 1 and 3 come from the same rounds: each round runs off, SQLite and PostgreSQL
once each (the order rotating), so a slow minute on a shared disk hits all three. Every
figure is a median. PostgreSQL: databases ``dagmill_bench_<random>`` are created through
``--pg`` (default postgresql://postgres@127.0.0.1:5432/postgres) and dropped at the end;
without a server the PostgreSQL figures are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
from shapes import expected, shapes  # noqa: E402

FANOUT = 1000
TARGET_LIST_MS = 50.0
TARGET_RATIO = 1.5


# -- the child: one measured run in a fresh process ----------------------------------------
def child(backend: str, n: int, folder: str) -> None:
    t0 = time.perf_counter()
    import dagmill
    import dagmill.store
    import dagmill.workflow

    if backend == "postgresql":  # the driver loads once per process, as dagmill.store does
        import psycopg  # noqa: F401

        import dagmill.store.postgres
    import_s = time.perf_counter() - t0

    s = shapes(dagmill)

    os.environ["DAGMILL_HOME"] = os.path.join(folder, ".dagmill")
    dagmill.set_dir(folder)
    t1 = time.perf_counter()
    final = s.Join(n=n)
    result = dagmill.run([final], workers=1, execution_summary=False, record=backend != "off")
    inrun = time.perf_counter() - t1
    assert result is not None and result.ok
    assert final.outputLoad() == expected("fanout", n), "wrong result"
    print(
        json.dumps(
            {
                "inrun_s": inrun,
                "tasks": n + 2,
                "ran": len(result.plan.to_run),
                "import_s": import_s,
                "run_id": result.run_id,
            }
        )
    )


# -- PostgreSQL: one database per measurement -----------------------------------------------
class Postgres:
    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.created: list[str] = []

    def create(self) -> str:
        name = f"dagmill_bench_{secrets.token_hex(4)}"
        self.conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        parts = urlsplit(self.admin_url)
        return urlunsplit(("postgresql+psycopg", parts.netloc, "/" + name, parts.query, ""))

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
        self.conn.close()


@contextmanager
def database(backend: str, pg: Postgres | None, folder: str) -> Iterator[str | None]:
    """A new, empty database URL for ``backend`` (None when the record is off)."""
    if backend == "off":
        yield None
    elif backend == "sqlite":
        yield "sqlite:///" + os.path.join(folder, ".dagmill", "dagmill.db")
    else:
        assert pg is not None
        url = pg.create()
        try:
            yield url
        finally:
            pg.drop(url)


def run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, HERE, "--child", *args], capture_output=True, text=True, env=env
    )
    if p.returncode != 0:
        sys.exit(f"child {args} failed ({p.returncode}):\n{p.stderr}")
    row: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return row


def fanout_once(backend: str, pg: Postgres | None) -> dict[str, Any]:
    from dagmill.store import open_store

    folder = tempfile.mkdtemp(prefix="dagmill_bench_store_")
    env = {k: v for k, v in os.environ.items() if k != "DAGMILL_DATABASE_URL"}
    try:
        with database(backend, pg, folder) as url:
            if url:
                t = time.perf_counter()
                open_store(url).close()  # create the schema before the measured run
                migrate_s = time.perf_counter() - t
                env["DAGMILL_DATABASE_URL"] = url
            row = run_child([backend, str(FANOUT), folder], env)
            assert row["ran"] == FANOUT + 2, row
            if url:  # the run is in the record, complete
                row["migrate_s"] = migrate_s
                s = open_store(url)
                try:
                    runs = s.list_runs(limit=5)
                    assert [r.id for r in runs] == [row["run_id"]], runs
                    assert runs[0].status == "SUCCESS", runs[0]
                    assert runs[0].counts == {"SUCCESS": FANOUT + 2}, runs[0].counts
                    tasks = s.get_run_tasks(row["run_id"])
                    assert len(tasks) == FANOUT + 2
                    assert all(t.status == "SUCCESS" and len(t.history) == 1 for t in tasks)
                finally:
                    s.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return row


# -- a store with many runs -----------------------------------------------------------------
def fill(store: Any, n: int, seed: int = 1) -> float:
    """Insert ``n`` finished and running runs, oldest first, in one transaction."""
    rng = random.Random(seed)
    names = ["Join", "Train, Evaluate", "Preprocess", "Features (+3)", "Report"]
    base = time.time() - n * 60
    rows = []
    for i in range(n):
        created = base + i * 60 + rng.uniform(0, 30)
        started = created + rng.uniform(0.0, 0.05)
        r = rng.random()
        status = "FAILED" if r < 0.10 else "RUNNING" if r < 0.12 else "SUCCESS"
        ended = None if status == "RUNNING" else started + rng.uniform(1, 600)
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(created)) + f"-{i:06x}"
        name = rng.choice(names)
        beat = ended or started
        rows.append((run_id, name, status, "{}", "bench:1", beat, created, started, ended, "{}"))
    t = time.perf_counter()
    with store._tx():
        store._executemany(
            "INSERT INTO runs (id, name, status, options, owner, heartbeat_at, created_at,"
            " started_at, ended_at, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return time.perf_counter() - t


def query_plan(store: Any, backend: str, where: str) -> str:
    sql = f"SELECT * FROM runs{where} ORDER BY created_at DESC LIMIT 50"
    if backend == "sqlite":
        return "; ".join(r[3] for r in store._execute("EXPLAIN QUERY PLAN " + sql))
    lines = [r[0] for r in store._execute("EXPLAIN " + sql)]
    nodes = [re.sub(r"\s*\(cost=.*\)$", "", ln).strip(" ->") for ln in lines]
    return " > ".join(n for n in nodes if n)


def timed(fn: Callable[[], Any], times: int) -> tuple[float, list[float]]:
    """(first call, the following ``times`` calls) in milliseconds."""
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    out = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return first, out


def cli_ms(argv: list[str], env: dict[str, str], times: int) -> float:
    out = []
    for _ in range(times):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def list_latency(
    backend: str, url: str, n: int, cli_times: int, exe: str, help_ms: float
) -> dict[str, Any]:
    from dagmill.store import open_store

    s = open_store(url)
    try:
        fill_s = fill(s, n)
        if backend == "postgresql":
            s._execute("ANALYZE runs")  # what autovacuum does shortly after a bulk insert
        count = s._execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        assert count == n, count

        def latest() -> None:
            got = s.list_runs(limit=50)
            assert len(got) == 50 and got[0].created_at >= got[-1].created_at

        def failed() -> None:
            got = s.list_runs(status="FAILED", limit=50)
            assert len(got) == 50 and all(r.status == "FAILED" for r in got)

        first, calls = timed(latest, 30)
        ffirst, fcalls = timed(failed, 30)
        plans = {
            "latest": query_plan(s, backend, ""),
            "failed": query_plan(s, backend, " WHERE status = 'FAILED'"),
        }
    finally:
        s.close()
    env = {**os.environ, "DAGMILL_DATABASE_URL": url}
    argv = [exe, "runs", "list", "--limit", "50", "--json"]
    shown = json.loads(subprocess.run(argv, env=env, capture_output=True, check=True).stdout)
    assert len(shown) == 50, len(shown)
    cli = cli_ms(argv, env, cli_times)
    table = cli_ms(argv[:-1], env, cli_times)  # the Rich table, as a person runs it
    return {
        "runs": n,
        "fill_s": fill_s,
        "list_ms": statistics.median(calls),
        "list_max_ms": max(calls),
        "list_first_ms": first,
        "failed_ms": statistics.median(fcalls),
        "failed_first_ms": ffirst,
        "cli_ms": cli,
        "cli_minus_help_ms": cli - help_ms,
        "cli_table_ms": table,
        "plans": plans,
    }


# -- the parent ---------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds of fresh processes (default 3)")
    ap.add_argument("--quick", action="store_true", help="10,000 runs in the store, CLI 3 times")
    ap.add_argument("--dir", help="folder for outputs and SQLite files (default: temp folder)")
    ap.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the bench databases on",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        backend, n, folder = args.child
        child(backend, int(n), folder)
        return

    if args.dir:
        tempfile.tempdir = args.dir
    from dagmill.store.migrate import LATEST

    pg: Postgres | None = None
    try:
        pg = Postgres(args.pg)
        server = pg.conn.execute("SHOW server_version").fetchone()
        pg_note = f"PostgreSQL {server[0] if server else '?'}"
    except Exception as e:  # no driver, no server: SQLite figures only
        pg_note = f"PostgreSQL skipped ({type(e).__name__}: {str(e).strip().splitlines()[0]})"
    backends = ["off", "sqlite"] + (["postgresql"] if pg else [])
    figures: dict[str, Any] = {"dir": tempfile.gettempdir(), "schema_version": LATEST}
    print(
        f"dagmill run record, medians (python {sys.version.split()[0]}, {os.cpu_count()} cpus,"
        f" SQLite {__import__('sqlite3').sqlite_version}, {pg_note});"
        f" outputs and SQLite files in {tempfile.gettempdir()}\n"
    )
    try:
        # -- 1 and 3: fan-out 1,000 inline, record off / SQLite / PostgreSQL ---------------
        rows: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
        for i in range(args.runs):
            for b in backends[i % len(backends) :] + backends[: i % len(backends)]:
                rows[b].append(fanout_once(b, pg))

        def ms(b: str) -> list[float]:
            return sorted(r["inrun_s"] / r["tasks"] * 1000 for r in rows[b])

        def inrun(b: str) -> float:
            return statistics.median(r["inrun_s"] for r in rows[b])

        def paired(a: str, b: str) -> list[float]:
            """a / b in-run, round by round (the same minute of the same disk)."""
            return [x["inrun_s"] / y["inrun_s"] for x, y in zip(rows[a], rows[b])]

        print(
            f"1. Runs recorded per second: fan-out {FANOUT:,} inline ({FANOUT + 2:,} tasks,"
            f" pickle outputs), record on, {args.runs} fresh processes each"
        )
        print(
            f"   {'store':<12}{'in-run s':>10}{'ms/task':>10}{'min':>8}{'max':>8}"
            f"{'runs/s':>9}{'import s':>10}{'schema ms':>11}"
        )
        labels = {"off": "off", "sqlite": "SQLite", "postgresql": "PostgreSQL"}
        for b in backends:
            per = ms(b)
            mig = statistics.median(r["migrate_s"] for r in rows[b]) if b != "off" else None
            figures[f"fanout_{b}"] = {
                "inrun_s": inrun(b),
                "ms_per_task": statistics.median(per),
                "runs_per_s": 1 / inrun(b),
                "import_s": statistics.median(r["import_s"] for r in rows[b]),
                "schema_ms": mig * 1000 if mig is not None else None,
            }
            if b == "off":
                continue
            print(
                f"   {labels[b]:<12}{inrun(b):>10.3f}{statistics.median(per):>10.3f}"
                f"{per[0]:>8.3f}{per[-1]:>8.3f}{1 / inrun(b):>9.2f}"
                f"{statistics.median(r['import_s'] for r in rows[b]):>10.3f}"
                f"{mig * 1000 if mig is not None else 0:>11.1f}"
            )
        if pg:
            ratio = inrun("postgresql") / inrun("sqlite")
            figures["pg_over_sqlite"] = ratio
            pairs = paired("postgresql", "sqlite")
            figures["pg_over_sqlite_per_round"] = pairs
            print(
                f"   PostgreSQL / SQLite in-run: {ratio:.2f}x (per round:"
                f" {', '.join(f'{p:.2f}' for p in pairs)}; median {statistics.median(pairs):.2f}x)"
            )
        print(
            "   (import s: dagmill and, for PostgreSQL, psycopg, once per process, not in"
            " in-run; schema ms: creating the schema in a new database on first use, paid"
            " once, not in in-run)\n"
        )

        # -- 2: runs list with many runs ----------------------------------------------------
        n_runs = 10_000 if args.quick else 100_000
        cli_times = 3 if args.quick else 5
        exe = os.path.join(os.path.dirname(sys.executable), "dagmill")
        if not os.path.exists(exe):
            exe = shutil.which("dagmill") or exe
        help_ms = cli_ms([exe, "--help"], dict(os.environ), cli_times)
        figures["help_ms"] = help_ms
        print(
            f"2. `dagmill runs list --limit 50` with {n_runs:,} runs in the store"
            f" (in-process: median of 30 calls after a first; CLI: median of {cli_times}"
            f" processes; `dagmill --help` takes {help_ms:.0f} ms)"
        )
        print(
            f"   {'store':<12}{'fill s':>8}{'latest ms':>11}{'max':>8}{'first':>8}"
            f"{'FAILED ms':>11}{'first':>8}{'CLI ms':>9}{'- help':>8}{'table ms':>10}"
        )
        for b in backends[1:]:
            folder = tempfile.mkdtemp(prefix="dagmill_bench_store_list_")
            try:
                with database(b, pg, folder) as url:
                    assert url
                    f = list_latency(b, url, n_runs, cli_times, exe, help_ms)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            figures[f"list_{b}"] = f
            print(
                f"   {labels[b]:<12}{f['fill_s']:>8.2f}{f['list_ms']:>11.3f}"
                f"{f['list_max_ms']:>8.2f}{f['list_first_ms']:>8.2f}{f['failed_ms']:>11.3f}"
                f"{f['failed_first_ms']:>8.2f}{f['cli_ms']:>9.0f}{f['cli_minus_help_ms']:>8.0f}"
                f"{f['cli_table_ms']:>10.0f}"
            )
        print(
            "   (latest/FAILED: list_runs(limit=50) / (status='FAILED', limit=50), 10% of runs"
            " FAILED; CLI: `runs list --limit 50 --json >/dev/null`; - help: less `dagmill"
            " --help`; table: the same without --json)"
        )
        sq = figures["list_sqlite"]["list_ms"]
        print(
            f"   target: list_runs(limit=50) under {TARGET_LIST_MS:.0f} ms on SQLite:"
            f" {sq:.3f} ms, {'met' if sq < TARGET_LIST_MS else 'NOT MET'}"
        )
        for b in backends[1:]:
            for which, plan in figures[f"list_{b}"]["plans"].items():
                print(f"   plan {labels[b]}, {which}: {plan}")
        print()

        # -- 3: full store on vs off ----------------------------------------------------------
        off, on = statistics.median(ms("off")), statistics.median(ms("sqlite"))
        figures["store_on_over_off"] = on / off
        print(
            f"3. Engine overhead per task, fan-out {FANOUT:,} inline, full store (SQLite)"
            f" on vs off (record=False), {args.runs} fresh processes each"
        )
        print(f"   store off  {off:.3f} ms/task  (min {ms('off')[0]:.3f}, max {ms('off')[-1]:.3f})")
        print(
            f"   store on   {on:.3f} ms/task  (min {ms('sqlite')[0]:.3f},"
            f" max {ms('sqlite')[-1]:.3f})"
        )
        pairs = paired("sqlite", "off")
        figures["store_on_over_off_per_round"] = pairs
        print(
            f"   on / off   {on / off:.2f}x (target within {TARGET_RATIO}x:"
            f" {'met' if on / off <= TARGET_RATIO else 'NOT MET'});"
            f" the store's own cost {on - off:.3f} ms/task"
        )
        print(
            f"   per round  {', '.join(f'{p:.2f}' for p in pairs)}x;"
            f" median {statistics.median(pairs):.2f}x"
            " (the disk's minute-to-minute swings cancel within a round; --dir /dev/shm"
            " takes the disk out)"
        )
    finally:
        if pg:
            pg.close()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
