"""The project quota ledger: what admitting a task through it costs, and how soon a
released quota goes to a task waiting for it.

    python bench/ledger.py [--seconds 2] [--reps 3] [--tasks 500] [--handoffs 20]
                           [--postgres URL | --no-postgres] [--json FILE]

Figures (medians of ``--reps`` fresh processes; SQLite and PostgreSQL):

a. Admissions per second through the ledger: ``store.admit`` + ``store.release_lease``
   in a tight loop for ``--seconds`` on one project (quota cpu 2, each request cpu 1:
   always fits), by 1 process and by 2 processes at once (what 1 and 2 servers' runs
   cost the database). Each process holds a RUNNING run, as an engine does, so the other
   process's leases count as live. Figure: admissions/s summed over the processes, and
   the share of the slowest process (50 % is fair; SQLite's lock is not FIFO).
b. End to end: ``dagmill.run`` of ``--tasks`` tiny tasks (a no-op writing a small
   pickle, under one join) with workers=2, each declaring ``cpu 0.01``, against the same
   tasks declaring nothing (they never touch the ledger): the ledger's cost per task =
   the difference of the two medians / tasks.
c. Release -> start: two runs in separate processes (as two ``dagmill run`` would), in
   one project whose quota (cpu 1) fits one of their tasks at a time; each has
   ``--handoffs`` tasks that take the whole quota and sleep 50 ms, and append their
   start and end times to a file (one ``write`` per line, O_APPEND). Latency = a task's
   start - the end of the task that held the quota before it (task-side times, so it
   includes the worker's report, the release, the wake-up, the admission and the
   hand-off to a worker). Target: median <= 50 ms. "cross" counts the hand-offs from
   one run to the other (a wake-up through the wake socket / NOTIFY); the others go
   from a run to itself (no wake-up needed).

The load average is printed first: on a shared machine, other work lengthens every
figure. SQLite lives under a temp DAGMILL_HOME; PostgreSQL in a database
``dagmill_bench_<random>`` created through ``--postgres`` (an admin URL, default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = os.path.abspath(__file__)
PROJECT = "bench"
HANDOFF_SLEEP = 0.05
TARGET_MEDIAN_S = 0.05


# -- children: one measured thing in a fresh process ----------------------------------------
def child_admit(url: str, seconds: float, start_at: float) -> None:
    """admit + release in a loop from ``start_at`` for ``seconds``; prints the counts."""
    from dagmill.executors.machine import machine_capacity
    from dagmill.model.resources import Resources
    from dagmill.store import open_store

    store = open_store(url)
    run_id = f"adm{os.getpid()}{secrets.token_hex(3)}"
    store.create_run(run_id, "admit bench", (), project=PROJECT)
    machine = machine_capacity()
    request = Resources(cpu_milli=1000)
    admits = refused = 0
    while time.time() < start_at:  # both processes start together
        time.sleep(0.001)
    t0 = time.perf_counter()
    end = t0 + seconds
    i = 0
    while time.perf_counter() < end:
        tid = f"t{i}"
        got = store.admit(PROJECT, run_id, tid, 1, request, machine=machine)
        if isinstance(got, str):
            refused += 1  # never expected: two processes, cpu 1 each, quota cpu 2
        else:
            admits += 1
            store.release_lease(run_id, tid)
        i += 1
    elapsed = time.perf_counter() - t0
    store.finish_run(run_id, "SUCCESS")
    store.close()
    print(json.dumps({"admits": admits, "refused": refused, "seconds": elapsed}))


def _tasks(dagmill: Any, log: str | None = None) -> Any:
    """The task classes (built after ``import dagmill``, as bench/shapes.py does)."""

    class Tiny(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        i = dagmill.IntParameter()

        def run(self) -> None:
            self.save(self.i)

    class TinyRes(Tiny):
        resources = {"cpu": 0.01}

    class Join(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        n = dagmill.IntParameter()
        res = dagmill.BoolParameter(default=False)

        def requires(self):  # type: ignore[no-untyped-def]
            cls = TinyRes if self.res else Tiny
            return [cls(i=i) for i in range(self.n)]

        def run(self) -> None:
            self.save(self.n)

    class Hold(dagmill.tasks.TaskPickle):  # type: ignore[misc, name-defined]
        """Takes the whole quota (cpu 1) for HANDOFF_SLEEP; logs its start and end."""

        tag = dagmill.Parameter()
        i = dagmill.IntParameter()
        resources = {"cpu": 1}

        def run(self) -> None:
            assert log is not None
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # one write per line: lines of the two processes never interleave
                os.write(fd, f"start {time.time():.6f} {self.tag} {self.i}\n".encode())
                time.sleep(HANDOFF_SLEEP)
                self.save(self.i)
                os.write(fd, f"end {time.time():.6f} {self.tag} {self.i}\n".encode())
            finally:
                os.close(fd)

    return Tiny, TinyRes, Join, Hold


def child_e2e(n: int, with_res: bool, folder: str) -> None:
    import dagmill

    _, _, Join, _ = _tasks(dagmill)
    dagmill.set_dir(folder)
    t = time.perf_counter()
    result = dagmill.run([Join(n=n, res=with_res)], workers=2, execution_summary=False)
    elapsed = time.perf_counter() - t
    assert result is not None and result.ok, "the run failed"
    print(json.dumps({"inrun_s": elapsed, "tasks": n + 1}))


def child_handoff(tag: str, n: int, folder: str, log: str, start_at: float) -> None:
    import dagmill

    _, _, _, Hold = _tasks(dagmill, log)
    dagmill.set_dir(folder)
    tasks = [Hold(tag=tag, i=i) for i in range(n)]
    while time.time() < start_at:  # both runs start together
        time.sleep(0.001)
    result = dagmill.run(tasks, workers=2, execution_summary=False)
    assert result is not None and result.ok, "the run failed"
    print(json.dumps({"ok": True}))


# -- the parent ------------------------------------------------------------------------------
class Postgres:
    """A database per bench invocation, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.name = f"dagmill_bench_{secrets.token_hex(4)}"
        self.conn.execute(f'CREATE DATABASE "{self.name}"')
        parts = urlsplit(admin_url)
        self.url = urlunsplit(("postgresql+psycopg", parts.netloc, "/" + self.name, "", ""))

    def close(self) -> None:
        self.conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.conn.close()


def _env(home: str, url: str, project: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DAGMILL_HOME"] = home
    env["DAGMILL_DATABASE_URL"] = url
    env.pop("DAGMILL_SERVER_ID", None)
    if project:
        env["DAGMILL_PROJECT"] = project
    else:
        env.pop("DAGMILL_PROJECT", None)
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, HERE, "--child", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(p: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"child failed ({p.returncode}):\n{err[-3000:]}")
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def prepare(url: str) -> None:
    """The store migrated, with the bench's projects."""
    from dagmill.model.projects import Quota
    from dagmill.store import open_store

    with open_store(url) as store:
        store.create_project(PROJECT, Quota.parse({"cpu": 2}))
        store.create_project("bench-e2e", Quota.parse({"cpu": 2}))
        store.create_project("bench-lat", Quota.parse({"cpu": 1}))


def admissions(home: str, url: str, procs: int, seconds: float, reps: int) -> dict[str, float]:
    rates, shares, refused = [], [], 0
    for _ in range(reps):
        start_at = time.time() + 1.5  # after both have imported and connected
        kids = [
            _spawn(["admit", url, str(seconds), str(start_at)], _env(home, url))
            for _ in range(procs)
        ]
        rows = [_result(k) for k in kids]
        rates.append(sum(r["admits"] / r["seconds"] for r in rows))
        total = sum(r["admits"] for r in rows)
        shares.append(min(r["admits"] for r in rows) / max(1, total) * 100)
        refused += sum(r["refused"] for r in rows)
    return {
        "per_s": statistics.median(rates),
        "min_per_s": min(rates),
        "max_per_s": max(rates),
        "ms_each": 1000 / statistics.median(rates) if statistics.median(rates) else 0.0,
        "slowest_share_pct": statistics.median(shares),
        "refused": refused,
    }


def end_to_end(home: str, url: str, n: int, reps: int) -> dict[str, float]:
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for with_res in (False, True):  # alternating: drift hits both alike
            d = tempfile.mkdtemp(prefix="dagmill_bench_ledger_e2e_")
            try:
                env = _env(home, url, "bench-e2e")
                k = _spawn(["e2e", str(n), "1" if with_res else "0", d], env)
                times[with_res].append(_result(k)["inrun_s"])
            finally:
                shutil.rmtree(d, ignore_errors=True)
    plain, res = statistics.median(times[False]), statistics.median(times[True])
    return {
        "plain_ms": plain / (n + 1) * 1000,
        "res_ms": res / (n + 1) * 1000,
        "ledger_ms": (res - plain) / n * 1000,
    }


def handoffs(home: str, url: str, n: int, reps: int) -> dict[str, Any]:
    lat: list[float] = []
    cross: list[float] = []
    overlaps = 0
    for _ in range(reps):
        d = tempfile.mkdtemp(prefix="dagmill_bench_ledger_lat_")
        try:
            log = os.path.join(d, "events.log")
            start_at = time.time() + 2.0
            env = _env(home, url, "bench-lat")
            kids = [
                _spawn(["handoff", tag, str(n), os.path.join(d, tag), log, str(start_at)], env)
                for tag in ("A", "B")
            ]
            for k in kids:
                _result(k)
            events = []
            with open(log) as f:
                for line in f:
                    kind, t, tag, i = line.split()
                    events.append((float(t), kind, tag, int(i)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        events.sort()
        holder: tuple[float, str] | None = None  # (end time, run tag) of the last holder
        running = 0
        for t, kind, tag, _i in events:
            if kind == "start":
                running += 1
                overlaps += running > 1  # the quota fits one: never expected
                if holder is not None:
                    lat.append(t - holder[0])
                    if holder[1] != tag:
                        cross.append(t - holder[0])
            else:
                running -= 1
                holder = (t, tag)
    lat.sort()
    return {
        "n": len(lat),
        "median_ms": statistics.median(lat) * 1000,
        "p90_ms": lat[int(0.9 * (len(lat) - 1))] * 1000,
        "max_ms": lat[-1] * 1000,
        "cross_n": len(cross),
        "cross_median_ms": statistics.median(cross) * 1000 if cross else float("nan"),
        "cross_max_ms": max(cross) * 1000 if cross else float("nan"),
        "overlaps": overlaps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="admission loop length")
    ap.add_argument("--reps", type=int, default=3, help="fresh processes per figure")
    ap.add_argument("--tasks", type=int, default=500, help="tasks of the end-to-end run")
    ap.add_argument("--handoffs", type=int, default=20, help="tasks per run in (c)")
    ap.add_argument(
        "--postgres",
        default=os.environ.get(
            "DAGMILL_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL admin URL (a database is created and dropped through it)",
    )
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "admit":
            child_admit(rest[0], float(rest[1]), float(rest[2]))
        elif kind == "e2e":
            child_e2e(int(rest[0]), rest[1] == "1", rest[2])
        else:
            child_handoff(rest[0], int(rest[1]), rest[2], rest[3], float(rest[4]))
        return

    t_all = time.perf_counter()
    load = os.getloadavg()
    print(
        f"dagmill ledger bench: python {sys.version.split()[0]}, {os.cpu_count()} cpus,"
        f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" medians of {args.reps} fresh processes\n"
    )
    figures: dict[str, Any] = {"load": load}
    root = tempfile.mkdtemp(prefix="dagmill_bench_ledger_")
    pg: Postgres | None = None
    try:
        backends = [("sqlite", f"sqlite:///{root}/sqlite/dagmill.db")]
        os.makedirs(f"{root}/sqlite")
        if not args.no_postgres:
            pg = Postgres(args.postgres)
            backends.append(("postgresql", pg.url))
        for _, url in backends:
            prepare(url)

        print("a. admissions through the ledger (admit + release_lease, one project)")
        print(
            f"{'store':<12}{'procs':>6}{'admits/s':>10}{'min':>8}{'max':>8}{'ms each':>9}"
            f"{'slowest %':>11}"
        )
        for name, url in backends:
            home = f"{root}/home-{name}"
            for procs in (1, 2):
                f = admissions(home, url, procs, args.seconds, args.reps)
                figures[f"admit_{name}_{procs}"] = f
                print(
                    f"{name:<12}{procs:>6}{f['per_s']:>10.0f}{f['min_per_s']:>8.0f}"
                    f"{f['max_per_s']:>8.0f}{f['ms_each']:>9.2f}{f['slowest_share_pct']:>11.0f}"
                    + (f"  ({f['refused']} refused!)" if f["refused"] else "")
                )

        print(f"\nb. end to end: {args.tasks} tiny tasks + 1 join, workers=2 (ms per task)")
        print(f"{'store':<12}{'no resources':>13}{'cpu 0.01':>10}{'ledger':>9}")
        for name, url in backends:
            f = end_to_end(f"{root}/home-{name}", url, args.tasks, args.reps)
            figures[f"e2e_{name}"] = f
            print(f"{name:<12}{f['plain_ms']:>13.3f}{f['res_ms']:>10.3f}{f['ledger_ms']:>9.3f}")

        print(
            f"\nc. release -> start, 2 runs x {args.handoffs} tasks taking the whole quota"
            f" ({HANDOFF_SLEEP * 1000:.0f} ms each), {args.reps} reps"
            f" (target median <= {TARGET_MEDIAN_S * 1000:.0f} ms)"
        )
        print(
            f"{'store':<12}{'n':>5}{'median ms':>11}{'p90 ms':>8}{'max ms':>8}"
            f"{'cross n':>9}{'cross med':>11}{'cross max':>11}{'overlaps':>10}"
        )
        for name, url in backends:
            f = handoffs(f"{root}/home-{name}", url, args.handoffs, args.reps)
            figures[f"handoff_{name}"] = f
            print(
                f"{name:<12}{f['n']:>5}{f['median_ms']:>11.1f}{f['p90_ms']:>8.1f}"
                f"{f['max_ms']:>8.1f}{f['cross_n']:>9}{f['cross_median_ms']:>11.1f}"
                f"{f['cross_max_ms']:>11.1f}{f['overlaps']:>10}"
            )
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    print(
        f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" {time.perf_counter() - t_all:.0f} s in all"
    )
    if args.json:
        with open(args.json, "w") as f_out:
            json.dump(figures, f_out, indent=2)


if __name__ == "__main__":
    main()
