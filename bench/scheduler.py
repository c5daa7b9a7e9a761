"""``dagmill server`` with 1,000 scheduled jobs: how late a due slot's task starts, and
what the server costs while nothing is due.

    python bench/scheduler.py [--jobs 1000] [--probes 10] [--seconds 60] [--idle-seconds 30]
                              [--gap 1] [--max-runs N] [--postgres [URL]] [--json FILE]

Figures (targets from issue 8; peers measured on this machine, one job, SQLite, 2 cores):

1. Due -> task running: for each slot of a probe job that comes due while the server
   runs, (the first task's attempt ``started_at`` in ``task_runs``, i.e. when it became
   RUNNING) - (the run's ``scheduled_for``), read from the store after the server
   stopped: median, p90, max, count. Split from the server's ``--log-json`` lines:
   slot -> ``slot_fired`` (the scheduler's decision), ``slot_fired`` -> ``run_started``
   (queue, claim, hand to the warm runner), ``run_started`` -> task RUNNING (the
   runner: job version check, plan, engine). Target: median <= 0.05 s, max <= 0.25 s
   (Prefect 3.8: 0.25 s / p90 0.53 s / max 2.0 s; Airflow 3.3: 1.66 s / max 2.1 s).
2. Idle: a server with 1,000 jobs and nothing due for the whole window; after its
   ``server_started`` line and once its fork server (the runners' warm parent) is ready
   (its CPU time still for 0.5 s, at least 3 s after the start), utime+stime of the
   server and every descendant
   (``/proc/PID/stat``) over ``--idle-seconds``, as % of one core; memory = RSS (and
   PSS, from ``/proc/PID/smaps_rollup``) of the server and its runners, summed.
   Target: <= 0.5 % of a core, <= 150 MB (Prefect: 2.4 %, 340 MB; Airflow: 3.7 %, > 1 GB).
3. Start-up with 1,000 jobs: spawn of ``dagmill server`` -> its ``server_started`` line
   (median of --starts fresh starts), and -> its fork server warm.
4. Also: the CPU of the server and its runners while slots come due (% of one core, and
   CPU seconds per run: one runner forked per run), and what a change to the jobs
   costs the server's loop (``scheduled_jobs()`` + ``Scheduler.load`` of 1,000 jobs,
   in-process). Runs still queued at the end and slots skipped (overlap) are counted
   apart: they are not in the latency figures.

The load average is printed before and after: on a shared machine, other work
lengthens every wall-clock figure (a runner's start-up most), not the CPU figures.

Choices:
- A temp DAGMILL_HOME per phase, SQLite by default; ``--postgres URL`` creates a database
  ``dagmill_bench_<random>`` per phase through URL (an admin connection, default
  postgresql://postgres@127.0.0.1:5432/postgres) and drops it at the end.
- The jobs: ONE job is built the normal way (``services.jobs.build_job``) from a real tiny
  definition (a Python ``Tick`` task with a ``slot`` parameter, writing a small pickle);
  it stays unscheduled, as the template. (Not a YAML pipeline: its process node would be
  found complete after the first slot, and a run with nothing to run has no task start
  to time, unless its sources name the slot.) The 1,000 scheduled
  jobs are made through the store (``create_job``) with the template's name, kind, ref,
  version, params and data folder, so they share its pipeline row and pass the runner's
  version check exactly as a built job does. 1,000 - probes of them have yearly cron
  slots (minute and hour varied), never due in the window. The probes fire every
  ``probes`` x ``gap`` seconds from start dates ``gap`` seconds apart (default 1 s), so
  one slot is due every ``gap`` seconds and a job's runs never overlap (each run takes
  well under that); their first slot is 12 s after they are made (the server is warm
  by then), and only slots due after it was warm count. The probes bind the slot to
  the task's ``slot`` parameter (``JobPolicy(slot_param="slot")``): each slot is a new
  task that really runs, instead of being found complete. ``--gap 4`` shows what the
  latency is when runs have more room between slots.
- The source is byte-compiled once (``compileall``) and the server runs WITHOUT
  PYTHONDONTWRITEBYTECODE (set in this environment), as a normal install would: otherwise
  every start recompiles dagmill's modules and the start-up and runner figures would
  measure the compiler.
- The server is the installed ``dagmill server --log-json`` with its defaults (max runs =
  cores) unless --max-runs is given.
"""

from __future__ import annotations

import argparse
import compileall
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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TARGET_MEDIAN_S = 0.05
TARGET_MAX_S = 0.25
TARGET_IDLE_CPU_PCT = 0.5
TARGET_IDLE_MB = 150.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
FOLDERS: list[str] = []  # the homes made here: removed at the end, whatever happens

TICK_PY = '''"""The probe jobs' task: one tiny output per slot."""

import dagmill


class Tick(dagmill.tasks.TaskPickle):
    slot = dagmill.Parameter(default="none")

    def run(self):
        self.save(self.slot)
'''


# -- PostgreSQL: one database per phase ------------------------------------------------------
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

    def close(self) -> None:
        for name in self.created:
            self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
        self.conn.close()


# -- /proc -----------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # [0] is the state (field 3)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (runners have their own session, not parent)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process (and, for each, its reaped children's)."""
    out = {}
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            out[pid] = sum(int(v) for v in st[11:15]) / CLK_TCK
    return out


def cpu_total(pid: int) -> float:
    """CPU seconds of ``pid``, its reaped children (ended runners) and its live ones."""
    pids = descendants(pid)
    return sum(cpu_seconds(pids).values())


def memory_mb(pids: list[int]) -> tuple[float, float | None]:
    """(RSS, PSS) summed over ``pids`` in MB; PSS None where smaps_rollup is missing."""
    rss, pss, has_pss = 0.0, 0.0, True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) / 1024
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024
        except OSError:
            has_pss = False
    return rss, (pss if has_pss else None)


# -- a home with jobs ------------------------------------------------------------------------
@dataclass
class Home:
    folder: str
    env: dict[str, str]  # for the server: DAGMILL_HOME (and DATABASE_URL), bytecode on
    probes: list[str] = field(default_factory=list)
    first_slot: float = 0.0


def _fmt(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def make_home(
    jobs: int, probes: int, pg: Postgres | None, probe_lead: float, gap: int = 1
) -> tuple[Home, float]:
    """A DAGMILL_HOME with ``jobs`` scheduled jobs, ``probes`` of them due every ``probes``
    x ``gap`` seconds from ``probe_lead`` seconds after they are made, ``gap`` seconds
    apart; (home, seconds to make)."""
    folder = tempfile.mkdtemp(prefix="dagmill_bench_sched_")
    FOLDERS.append(folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DAGMILL_HOME"] = os.path.join(folder, ".dagmill")
    env.pop("DAGMILL_DATABASE_URL", None)
    if pg is not None:
        env["DAGMILL_DATABASE_URL"] = pg.create()
    # this process builds the template and the jobs in that store
    os.environ["DAGMILL_HOME"] = env["DAGMILL_HOME"]
    os.environ.pop("DAGMILL_DATABASE_URL", None)
    if pg is not None:
        os.environ["DAGMILL_DATABASE_URL"] = env["DAGMILL_DATABASE_URL"]

    from dagmill.model.schedules import JobPolicy, ScheduleSpec
    from dagmill.services.jobs import build_job
    from dagmill.store import open_store

    data = os.path.join(folder, "data")
    with open(os.path.join(folder, "ticks.py"), "w") as f:
        f.write(TICK_PY)
    ref = os.path.join(folder, "ticks.py") + ":Tick"
    policy = JobPolicy(slot_param="slot")
    t = time.perf_counter()
    template = build_job(ref, {}, data_dir=data)
    home = Home(folder, env)
    with open_store() as store:
        # the far jobs first: the probes' first slot counts from when the last job is made
        for i in range(probes, jobs):
            spec = ScheduleSpec(cron=f"{i % 60} {(i // 60) % 24} 1 1 *")
            _copy(store, template, f"j{i:04d}{secrets.token_hex(3)}", spec, JobPolicy())
        first = float(int(time.time() + probe_lead))
        home.first_slot = first
        for i in range(min(probes, jobs)):
            spec = ScheduleSpec(every=f"{probes * gap}s", start_date=_fmt(first + i * gap))
            job_id = f"j{i:04d}{secrets.token_hex(3)}"
            _copy(store, template, job_id, spec, policy)
            home.probes.append(job_id)
    return home, time.perf_counter() - t


def _copy(store: Any, template: Any, job_id: str, spec: Any, policy: Any) -> None:
    """A scheduled job pinning the template's pipeline version (its pipeline row)."""
    store.create_job(
        job_id,
        template.name,
        template.kind,
        template.ref,
        template.version,
        dict(template.params),
        template.data_dir,
        ttl=dict(template.ttl),
        schedule=spec,
        policy=policy,
    )


# -- a server --------------------------------------------------------------------------------
class Server:
    """``dagmill server --log-json`` in ``home``, its log lines collected as they come."""

    def __init__(self, home: Home, max_runs: int | None) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "dagmill")
        cmd = [exe, "server", "--log-json", "--grace", "10", "--no-api"]
        if max_runs:
            cmd += ["--max-runs", str(max_runs)]
        self.events: list[dict[str, Any]] = []
        self.other: list[str] = []
        self.started = threading.Event()
        self.spawned = time.time()
        self.proc = subprocess.Popen(
            cmd,
            cwd=home.folder,
            env=home.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                self.other.append(line.rstrip())
                continue
            self.events.append(event)
            if event.get("event") == "server_started":
                self.started.set()

    def wait_started(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to the ``server_started`` line."""
        if not self.started.wait(timeout):
            self.stop()
            raise SystemExit(f"the server did not start in {timeout} s:\n" + "\n".join(self.other))
        at = next(e["at"] for e in self.events if e["event"] == "server_started")
        return float(at) - self.spawned

    def wait_warm(self, at_least: float = 3.0, quiet: float = 0.5) -> float:
        """Seconds from spawn until a runner (a process below the server) exists and its
        CPU time stood still for ``quiet`` seconds: it imported the engine and waits. (The
        server's own CPU is not looked at: on PostgreSQL its listener wakes each second.)"""
        deadline = time.time() + 60
        still_since: dict[int, float] = {}
        last: dict[int, float] = {}
        while time.time() < deadline:
            now = cpu_seconds(descendants(self.proc.pid)[1:])
            t = time.time()
            for pid, cpu in now.items():
                if last.get(pid) != cpu:
                    still_since[pid] = t
                elif t - still_since[pid] >= quiet and t - self.spawned >= at_least:
                    return still_since[pid] - self.spawned
            last = now
            time.sleep(0.05)
        raise SystemExit("the server's runner did not settle within 60 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code


# -- figures ---------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "median": statistics.median(values),
        "p90": pct(values, 0.9),
        "max": max(values),
        "min": min(values),
        "count": len(values),
    }


def line(label: str, s: dict[str, float], target: str = "") -> str:
    if not s.get("count"):
        return f"  {label:<34} no samples"
    return (
        f"  {label:<34}{s['median']:>8.3f}{s['p90']:>8.3f}{s['max']:>8.3f}{s['min']:>8.3f}"
        f"{int(s['count']):>7}  {target}"
    )


def latency_phase(args: argparse.Namespace, pg: Postgres | None) -> dict[str, Any]:
    lead = 12.0  # the server's start-up and warm-up, with room to spare
    home, made_s = make_home(args.jobs, args.probes, pg, lead, args.gap)
    print(
        f"latency: {args.jobs} scheduled jobs made in {made_s:.1f} s ({args.probes} probes, "
        f"every {args.probes * args.gap} s, one slot every {args.gap} s; the rest yearly); "
        "store " + ("PostgreSQL" if pg else "SQLite")
    )
    server = Server(home, args.max_runs)
    try:
        start_s = server.wait_started()
        warm_s = server.wait_warm()
        ready = server.spawned + warm_s
        end = home.first_slot + args.seconds
        if ready > home.first_slot:
            print(f"  (server warm {ready - home.first_slot:.1f} s after the first slot)")
        cpu0, t0 = cpu_total(server.proc.pid), time.monotonic()
        time.sleep(max(0.0, end - time.time()) + 3.0)  # the last slot's run ends
        busy_cpu, busy_s = cpu_total(server.proc.pid) - cpu0, time.monotonic() - t0
    finally:
        code = server.stop()
    from dagmill.store import open_store

    lat, to_fired, to_started, to_task, to_engine, engine_to_task = [], [], [], [], [], []
    statuses: dict[str, int] = {}
    unstarted = 0
    fired = {e["run"]: float(e["at"]) for e in server.events if e["event"] == "slot_fired"}
    started = {e["run"]: float(e["at"]) for e in server.events if e["event"] == "run_started"}
    skipped = sum(1 for e in server.events if e["event"] == "slot_skipped")
    with open_store() as store:
        for job_id in home.probes:
            for run in store.list_runs(job_id=job_id, limit=10_000):
                if run.scheduled_for is None or run.scheduled_for < ready:
                    continue
                if run.scheduled_for > end:
                    continue
                statuses[run.status] = statuses.get(run.status, 0) + 1
                begun = [
                    a.started_at
                    for t in store.get_run_tasks(run.id)
                    for a in t.history
                    if a.started_at is not None
                ]
                if not begun:
                    unstarted += 1  # still queued when the server stopped
                    continue
                task_at = min(begun)
                lat.append(task_at - run.scheduled_for)
                if run.id in fired:
                    to_fired.append(fired[run.id] - run.scheduled_for)
                if run.id in started:
                    to_started.append(started[run.id] - fired.get(run.id, run.scheduled_for))
                    to_task.append(task_at - started[run.id])
                    if run.started_at is not None:
                        to_engine.append(run.started_at - started[run.id])
                        engine_to_task.append(task_at - run.started_at)
    warnings = [e for e in server.events if e.get("level") in ("warning", "error")]
    runs = sum(statuses.values())
    figures = {
        "jobs": args.jobs,
        "start_s": start_s,
        "warm_s": warm_s,
        "latency": summary(lat),
        "slot_to_fired": summary(to_fired),
        "fired_to_run_started": summary(to_started),
        "run_started_to_task": summary(to_task),
        "run_started_to_engine": summary(to_engine),
        "engine_to_task": summary(engine_to_task),
        "statuses": statuses,
        "skipped": skipped,
        "unstarted": unstarted,
        "exit": code,
        "warnings": [f"{e['event']}: {e}" for e in warnings][:5],
        "busy_cpu_pct": busy_cpu / busy_s * 100,
        "cpu_s_per_run": busy_cpu / runs if runs else None,
    }
    print(f"  start-up: server_started {start_s:.3f} s after spawn, runner warm {warm_s:.3f} s")
    print(f"  {'seconds':<34}{'median':>8}{'p90':>8}{'max':>8}{'min':>8}{'count':>7}")
    print(
        line(
            "due -> task RUNNING",
            figures["latency"],
            f"target median <= {TARGET_MEDIAN_S}, max <= {TARGET_MAX_S}",
        )
    )
    print(line("  slot -> slot_fired", figures["slot_to_fired"]))
    print(line("  slot_fired -> run_started", figures["fired_to_run_started"]))
    print(line("  run_started -> task RUNNING", figures["run_started_to_task"]))
    print(line("    run_started -> run's started_at", figures["run_started_to_engine"]))
    print(line("    run's started_at -> task RUNNING", figures["engine_to_task"]))
    print(
        f"  runs: {statuses}, server exit {code}; NOT in the figures: {unstarted} runs whose"
        f" task had not started 3 s after the window, {skipped} slots skipped (overlap: the"
        " job's previous run still queued or running)"
    )
    print(
        f"  CPU while slots come due: {figures['busy_cpu_pct']:.1f} % of one core (server and"
        f" runners), {busy_cpu / max(runs, 1):.3f} s per run"
    )
    for w in figures["warnings"]:
        print(f"  warning: {w}")
    figures["reload"] = reload_cost(args.jobs)
    return figures


def reload_cost(jobs: int) -> dict[str, float]:
    """What the server's loop spends on a change to the jobs (and at start): reading the
    scheduled jobs and rebuilding the scheduler's entries, in this process (the store of
    the phase just measured), median of 3."""
    from dagmill.scheduler.loop import Scheduler
    from dagmill.store import open_store

    read, load, again = [], [], []
    with open_store() as store:
        for _ in range(3):
            t = time.perf_counter()
            rows = store.scheduled_jobs()
            read.append(time.perf_counter() - t)
            sched = Scheduler(store)
            t = time.perf_counter()
            sched.load(rows, time.time())
            load.append(time.perf_counter() - t)
            t = time.perf_counter()
            sched.load(rows, time.time())  # the same schedules: triggers are kept
            again.append(time.perf_counter() - t)
    out = {
        "scheduled_jobs_s": statistics.median(read),
        "load_s": statistics.median(load),
        "reload_s": statistics.median(again),
    }
    print(
        f"  a change to the jobs ({jobs} jobs, in-process, median of 3): scheduled_jobs() "
        f"{out['scheduled_jobs_s']:.3f} s, Scheduler.load {out['load_s']:.3f} s, "
        f"load again (triggers kept) {out['reload_s']:.3f} s"
    )
    return out


def idle_phase(args: argparse.Namespace, pg: Postgres | None) -> dict[str, Any]:
    home, _ = make_home(args.jobs, 0, pg, 0)
    print(f"\nidle: {args.jobs} scheduled jobs, none due (yearly), {args.idle_seconds:.0f} s")
    starts, warms = [], []
    for _ in range(args.starts - 1):  # start-up alone: start, wait until warm, stop
        s = Server(home, args.max_runs)
        try:
            starts.append(s.wait_started())
            warms.append(s.wait_warm(at_least=0))
        finally:
            s.stop()
    server = Server(home, args.max_runs)
    try:
        starts.append(server.wait_started())
        warms.append(server.wait_warm())
        pids = descendants(server.proc.pid)
        t0, c0 = time.monotonic(), cpu_seconds(pids)
        time.sleep(args.idle_seconds)
        t1, c1 = time.monotonic(), cpu_seconds(pids)
        after = descendants(server.proc.pid)
        rss, pss = memory_mb(after)
        per = {p: memory_mb([p]) for p in after}
    finally:
        code = server.stop()
    cpu = sum(c1.get(p, c0[p]) - c0[p] for p in c0)
    cpu_pct = cpu / (t1 - t0) * 100
    names = {server.proc.pid: "server"}
    figures = {
        "cpu_pct": cpu_pct,
        "cpu_pct_each": {
            names.get(p, f"runner {p}"): (c1.get(p, c0[p]) - c0[p]) / (t1 - t0) * 100 for p in c0
        },
        "rss_mb": rss,
        "pss_mb": pss,
        "mem_each": {names.get(p, f"runner {p}"): per[p] for p in per},
        "processes": len(after),
        "changed_processes": sorted(set(after) ^ set(pids)),
        "start_s": summary(starts),
        "warm_s": summary(warms),
        "exit": code,
    }
    print(
        f"  CPU: {cpu_pct:.3f} % of one core over {t1 - t0:.1f} s "
        f"(target <= {TARGET_IDLE_CPU_PCT} %): "
        + ", ".join(f"{k} {v:.3f} %" for k, v in figures["cpu_pct_each"].items())
        + f" (one clock tick = {100 / CLK_TCK / (t1 - t0):.3f} %)"
    )
    pss_text = f", PSS {pss:.0f} MB" if pss is not None else ""
    print(
        f"  memory: RSS {rss:.0f} MB{pss_text} over {len(after)} processes "
        f"(target <= {TARGET_IDLE_MB:.0f} MB): "
        + ", ".join(
            f"{k} {r:.0f}" + (f"/{p:.0f}" if p is not None else "") + " MB"
            for k, (r, p) in figures["mem_each"].items()
        )
    )
    if figures["changed_processes"]:
        print(f"  processes came or went during the window: {figures['changed_processes']}")
    st, wm = figures["start_s"], figures["warm_s"]
    print(
        f"  start-up with {args.jobs} jobs (median of {len(starts)}): spawn -> server_started "
        f"{st['median']:.3f} s (max {st['max']:.3f}), -> runner warm {wm['median']:.3f} s "
        f"(max {wm['max']:.3f})"
    )
    return figures


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000, help="scheduled jobs (default 1000)")
    ap.add_argument("--probes", type=int, default=10, help="jobs whose slots come due")
    ap.add_argument("--gap", type=int, default=1, help="seconds between probe slots")
    ap.add_argument("--seconds", type=float, default=60.0, help="latency window")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU window")
    ap.add_argument("--starts", type=int, default=3, help="server starts timed (idle home)")
    ap.add_argument("--max-runs", type=int, default=None, help="server --max-runs")
    ap.add_argument(
        "--postgres",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/postgres",
        help="use PostgreSQL: an admin URL to create the databases through",
    )
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    import dagmill

    src = os.path.dirname(dagmill.__file__)
    compileall.compile_dir(src, quiet=1)
    print(
        f"dagmill server bench (python {sys.version.split()[0]}, {os.cpu_count()} cpus); "
        f"{src} byte-compiled, servers run without PYTHONDONTWRITEBYTECODE "
        f"(set here: {os.environ.get('PYTHONDONTWRITEBYTECODE', 'no')}), as a normal install\n"
    )
    print(f"load average before: {_loadavg()}")
    pg = Postgres(args.postgres) if args.postgres else None
    figures: dict[str, Any] = {"store": "postgresql" if pg else "sqlite"}
    try:
        if not args.skip_latency:
            figures["latency"] = latency_phase(args, pg)
        if not args.skip_idle:
            figures["idle"] = idle_phase(args, pg)
    finally:
        if pg is not None:
            pg.close()
        for folder in FOLDERS:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nload average after: {_loadavg()} (other work on this machine inflates wall times)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
