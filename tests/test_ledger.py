"""The project quota ledger under load: real ``dagmill server`` processes running many
short tasks with random requests in one project, and the ledger's own guarantees
(``store.admit`` / ``release_lease`` / expiry) from several processes at once.

The stress test has two recorders. The ledger's own (PostgreSQL): a trigger numbers every
admission and release of a lease in the order they took effect. And one that trusts
nothing the engine says about itself: each task appends
``start``/``end`` lines to a file (O_APPEND, one ``write`` per line) from inside the task,
and the test replays them. A task's lines sit inside its lease (it is admitted before it
starts and released after it ends), so the sum of the requests of the tasks between their
``start`` and ``end`` lines can only exceed the quota if the ledger admitted too much.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from typing import Any

import pytest

from conftest import fresh_postgres_database
from dagmill.executors.machine import machine_capacity
from dagmill.model.projects import Lease, Quota
from dagmill.model.resources import Resources
from dagmill.store import Store, open_store
from helpers import wait_for
from servers import Project

pytestmark = pytest.mark.timeout(180)

ENDED = ("SUCCESS", "FAILED", "CANCELLED")
SEED = 20261202
QUOTA_CPU_MILLI = 4000
QUOTA_MEMORY = 4 * 1024**3
MI = 1024**2

# The stress flow: Work(i) asks for a seeded random request (cpu 0.25..2, memory
# 64Mi..1Gi) and logs its start and end with that request; Batch(b) is one job's run.
FLOW = textwrap.dedent(
    """
    import os, random, time
    import dagmill

    SEED = {seed}
    PER = {per}
    LOG = {log!r}
    SLEEP = {sleep}

    def request(i):
        rng = random.Random(SEED * 100003 + i)
        return rng.randint(250, 2000), rng.randint(64, 1024)  # millicores, Mi

    def line(text):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (text + "\\n").encode())  # one write: lines never interleave
        finally:
            os.close(fd)

    class Work(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        @property
        def resources(self):
            cpu, mem = request(self.i)
            return {{"cpu": cpu / 1000, "memory": f"{{mem}}Mi"}}

        def run(self):
            cpu, mem = request(self.i)
            line(f"start {{time.time():.6f}} {{self.i}} {{cpu}} {{mem}} {{os.getpid()}}")
            time.sleep(SLEEP)
            self.save(self.i)
            line(f"end {{time.time():.6f}} {{self.i}} {{cpu}} {{mem}} {{os.getpid()}}")

    class Batch(dagmill.tasks.TaskPickle):
        b = dagmill.IntParameter()

        def requires(self):
            return [Work(i=i) for i in range(self.b * PER, (self.b + 1) * PER)]

        def run(self):
            self.save(self.b)
    """
)


def _request(i: int) -> tuple[int, int]:
    """What the flow's Work(i) asks for (the same seeded draw): (millicores, Mi)."""
    rng = random.Random(SEED * 100003 + i)
    return rng.randint(250, 2000), rng.randint(64, 1024)


# PostgreSQL: a trigger records every change of the leases (an admission adds the request,
# a release takes it away), numbered in the order the changes took effect
LEDGER_RECORDER = [
    "CREATE TABLE ledger_record (id BIGSERIAL PRIMARY KEY, project TEXT, op TEXT,"
    " cpu BIGINT, memory BIGINT)",
    """CREATE FUNCTION record_ledger() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND (OLD.project, OLD.cpu_milli, OLD.memory_bytes)
                IS NOT DISTINCT FROM (NEW.project, NEW.cpu_milli, NEW.memory_bytes) THEN
            RETURN NULL;  -- a heartbeat: not under the project's lock, and no change
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO ledger_record (project, op, cpu, memory)
            VALUES (OLD.project, TG_OP || '-', -OLD.cpu_milli, -OLD.memory_bytes);
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO ledger_record (project, op, cpu, memory)
            VALUES (NEW.project, TG_OP, NEW.cpu_milli, NEW.memory_bytes);
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER record_ledger AFTER INSERT OR UPDATE OR DELETE ON leases"
    " FOR EACH ROW EXECUTE FUNCTION record_ledger()",
]


def replay(lines: list[str]) -> tuple[int, int, int, Counter[int], Counter[int]]:
    """(max cpu in use, max memory in use, max tasks at once, starts per task, ends per
    task) over the recorder's lines, in time order (an end before a start at the same
    instant: a task ends before the release that admits the next)."""
    events = []
    for text in lines:
        kind, t, i, cpu, mem, _pid = text.split()
        events.append((float(t), 0 if kind == "end" else 1, int(i), int(cpu), int(mem) * MI))
    events.sort()
    cpu_now = mem_now = tasks_now = 0
    cpu_max = mem_max = tasks_max = 0
    starts: Counter[int] = Counter()
    ends: Counter[int] = Counter()
    for _t, is_start, i, cpu, mem in events:
        sign = 1 if is_start else -1
        cpu_now += sign * cpu
        mem_now += sign * mem
        tasks_now += sign
        cpu_max, mem_max = max(cpu_max, cpu_now), max(mem_max, mem_now)
        tasks_max = max(tasks_max, tasks_now)
        (starts if is_start else ends)[i] += 1
    return cpu_max, mem_max, tasks_max, starts, ends


# -- 1. the stress test: servers, many runs, one quota ---------------------------------------
def test_servers_running_many_runs_never_exceed_the_project_quota(project: Project) -> None:
    """PostgreSQL: 2 servers x 2 runs x 3 workers, 8 jobs of 50 tasks (400), in a project
    of cpu 4 / memory 4Gi. SQLite (one server per database): 1 server x 4 runs."""
    postgres = project.database_url.startswith("postgresql")
    jobs_n, per = 8, 50
    log = project.root / "events.log"
    (project.root / "flow.py").write_text(FLOW.format(seed=SEED, per=per, log=str(log), sleep=0.03))
    made = project.dagmill("projects", "create", "stress", "--cpu", "4", "--memory", "4Gi")
    assert made.returncode == 0, made.stdout + made.stderr
    jobs = []
    for b in range(jobs_n):
        built = project.dagmill(
            "jobs", "build", "flow.py:Batch", "-p", f"b={b}", "--data", "data",
            "--name", f"batch{b}", "--project", "stress",
        )  # fmt: skip
        assert built.returncode == 0, built.stdout + built.stderr
        jobs.append(built.stdout.split()[-1])

    if postgres:
        with project.store() as s, s._tx():
            for statement in LEDGER_RECORDER:
                s._execute(statement)
        servers = [project.server("--max-runs", "2", "-w", "3", "--log-json") for _ in range(2)]
    else:
        servers = [project.server("--max-runs", "4", "-w", "3", "--log-json")]
    queued = [
        subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "jobs", "run", job],
            cwd=project.root,
            env=project.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for job in jobs
    ]
    for q in queued:
        _, err = q.communicate(timeout=60)
        assert q.returncode == 0, err

    def all_ended() -> bool:
        return all(len(project.ended_runs(job)) == 1 for job in jobs)

    wait_for(all_ended, 120, "every run to end")
    runs = [project.runs(job)[0] for job in jobs]
    assert [r.status for r in runs] == ["SUCCESS"] * jobs_n, [(r.id, r.error) for r in runs]
    assert all(r.project == "stress" for r in runs)

    cpu_max, mem_max, tasks_max, starts, ends = replay(log.read_text().splitlines())
    every = set(range(jobs_n * per))
    assert set(starts) == every and set(ends) == every
    assert [i for i, n in starts.items() if n != 1] == [], "a task ran more than once"
    assert [i for i, n in ends.items() if n != 1] == []
    assert cpu_max <= QUOTA_CPU_MILLI, f"cpu {cpu_max}m in use > quota {QUOTA_CPU_MILLI}m"
    assert mem_max <= QUOTA_MEMORY, f"memory {mem_max / MI:.0f}Mi in use > quota 4Gi"
    # the quota was what limited them: tasks ran side by side and some waited for room
    assert tasks_max >= 2
    with project.store() as s:
        waited, longest = s._execute(
            "SELECT COUNT(*), MAX(t.waited) FROM task_runs t JOIN runs r ON r.id = t.run_id"
            " WHERE r.project = 'stress' AND t.waited > 0"
        ).fetchone()
        left = s._execute("SELECT COUNT(*) FROM leases").fetchone()[0]
        sized = s._execute(
            "SELECT rt.resources, t.waited FROM task_runs t JOIN run_tasks rt"
            " ON rt.run_id = t.run_id AND rt.task_id = t.task_id"
            " WHERE t.status = 'SUCCESS' AND rt.resources <> '{}'"
        ).fetchall()
    # how long tasks waited by the size of their request (small: cpu <= 0.75, large: >= 1.5)
    waits: dict[str, list[float]] = {"small": [], "large": []}
    for res, w in sized:
        cpu = Resources.parse(json.loads(res)).cpu_milli
        if cpu <= 750 or cpu >= 1500:
            waits["small" if cpu <= 750 else "large"].append(float(w or 0.0))
    print({k: f"median {statistics.median(v):.2f} s, max {max(v):.2f} s" for k, v in waits.items()})
    started = [sum(e["event"] == "run_started" for e in x.events()) for x in servers]
    print(
        f"max in use: cpu {cpu_max}m, memory {mem_max // MI}Mi, {tasks_max} tasks;"
        f" {waited} attempts waited (longest {longest or 0:.1f} s);"
        f" runs started per server {started}"
    )
    assert waited > 0, "no task waited for the quota: the test did not press on it"
    assert left == 0, "leases outlived their runs"
    if postgres:
        # the ledger's own record of admissions and releases, in the order they took
        # effect (every change of a project's leases holds its row's lock to commit)
        with project.store() as s:
            rows = s._execute(
                "SELECT op, cpu, memory FROM ledger_record WHERE project = 'stress' ORDER BY id"
            ).fetchall()
        in_use = [0, 0]
        peak = [0, 0]
        for _op, cpu, memory in rows:
            in_use = [in_use[0] + int(cpu), in_use[1] + int(memory)]
            peak = [max(peak[0], in_use[0]), max(peak[1], in_use[1])]
        admitted = sum(op == "INSERT" for op, _, _ in rows)
        print(f"ledger record: {admitted} admissions, peak cpu {peak[0]}m, {peak[1] // MI}Mi")
        assert admitted >= jobs_n * per, "the recorder missed admissions"
        assert in_use == [0, 0], "the recorded admissions and releases do not balance"
        assert peak[0] <= QUOTA_CPU_MILLI and peak[1] <= QUOTA_MEMORY, peak
    if postgres:  # both servers executed runs, at the same time
        assert all(started), started
        spans = [_run_spans(x.events()) for x in servers]
        assert any(a0 < b1 and b0 < a1 for a0, a1 in spans[0] for b0, b1 in spans[1]), spans


def _run_spans(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(started, ended) of each run a server's log shows."""
    began = {e["run"]: float(e["at"]) for e in events if e["event"] == "run_started"}
    return [
        (began[e["run"]], float(e["at"]))
        for e in events
        if e["event"] == "run_ended" and e.get("run") in began
    ]


# -- 2. the ledger itself ---------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys
    from dagmill.executors.machine import machine_capacity
    from dagmill.model.resources import Resources
    from dagmill.store import open_store

    store = open_store(sys.argv[1])
    store.create_run("Rholder", "holder", (), project="p")
    got = store.admit("p", "Rholder", "t", 1, Resources(cpu_milli=2000),
                      machine=machine_capacity())
    print("held" if not isinstance(got, str) else got, flush=True)
    sys.stdin.readline()
    store.close()  # ends without releasing the lease nor ending the run
    """
)


def _store_with_project(url: str, cpu: float = 2) -> Store:
    store = open_store(url)
    assert store.create_project("p", Quota.parse({"cpu": cpu})) is not None
    return store


def _admit(store: Store, run: str, task: str, cpu_milli: int, **kw: str) -> Lease | str:
    return store.admit(
        "p", run, task, 1, Resources(cpu_milli=cpu_milli), machine=machine_capacity(), **kw
    )


def test_a_dead_owner_s_lease_stops_counting(database_url: str) -> None:
    store = _store_with_project(database_url)
    try:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        store.create_run("Rwaiter", "waiter", (), project="p")
        refused = _admit(store, "Rwaiter", "w", 1000)
        assert isinstance(refused, str) and "Rholder" in refused, refused
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
        # its run is still RUNNING, its lease still in the table: only its owner is gone
        assert store.get_run("Rholder").status == "RUNNING"  # type: ignore[union-attr]
        got = _admit(store, "Rwaiter", "w", 2000)
        assert isinstance(got, Lease), got
        rows = store._execute("SELECT run_id FROM leases").fetchall()
        assert [r[0] for r in rows] == ["Rwaiter"], "the dead lease was deleted"
    finally:
        store.close()


def test_a_lease_of_a_server_whose_heartbeat_is_stale_stops_counting(database_url: str) -> None:
    store = _store_with_project(database_url)
    try:
        store.register_server("s-old", 2)
        store.create_run("Rserved", "served", (), project="p", server_id="s-old")
        store.create_run("Rother", "other", (), project="p")
        assert isinstance(_admit(store, "Rserved", "t", 2000, server_id="s-old"), Lease)
        assert isinstance(_admit(store, "Rother", "t", 1000), str)
        period = float(store._execute("SELECT heartbeat_seconds FROM servers").fetchone()[0])
        with store._tx():  # a beat just within two periods: the lease still counts
            store._execute("UPDATE servers SET heartbeat_at = ?", (time.time() - 1.5 * period,))
        assert isinstance(_admit(store, "Rother", "t", 1000), str)
        with store._tx():  # older than two periods: the server is dead...
            store._execute("UPDATE servers SET heartbeat_at = ?", (time.time() - 2.5 * period,))
        # ...but its runner still heartbeats the lease (a stalled server loop): it counts
        assert isinstance(_admit(store, "Rother", "t", 1000), str)
        with store._tx():  # the runner fell silent too (two engine heartbeats): gone
            store._execute("UPDATE leases SET heartbeat_at = ?", (time.time() - 12,))
        assert isinstance(_admit(store, "Rother", "t", 2000), Lease)
    finally:
        store.close()


def test_a_long_wait_has_its_room_kept_from_smaller_tasks(database_url: str) -> None:
    """Best effort FIFO with a reservation: once a task has waited KEEP_AFTER_SECONDS,
    the room it needs is kept for it; smaller tasks still use what is left."""
    store = _store_with_project(database_url, cpu=4)
    try:
        for run in ("Rbig", "Rsmall", "Rholder"):
            store.create_run(run, run[1:], (), project="p")
        assert isinstance(_admit(store, "Rholder", "h", 3000), Lease)  # 3 of 4 in use
        assert isinstance(_admit(store, "Rbig", "b", 2000), str)  # waits for 2
        # not waited long yet: a small task may pass it (as before)
        assert isinstance(_admit(store, "Rsmall", "s1", 1000), Lease)
        store.release_lease("Rsmall", "s1")
        with store._tx():
            store._execute("UPDATE lease_waits SET since = ?", (time.time() - 60,))
        got = _admit(store, "Rsmall", "s2", 1000)  # 3 + 1 fits, but 2 are kept for Rbig
        assert isinstance(got, str), got
        assert got.startswith("project p: cpu 3 of 4 in use, 2 kept for Rbig big (waiting 6")
        store.release_lease("Rholder", "h")  # 0 in use: 2 kept, 2 left for the others
        assert isinstance(_admit(store, "Rsmall", "s2", 1000), Lease)
        assert isinstance(_admit(store, "Rsmall", "s3", 1000), Lease)
        assert isinstance(_admit(store, "Rsmall", "s4", 1000), str)
        assert isinstance(_admit(store, "Rbig", "b", 2000), Lease)  # its turn
        assert store._execute("SELECT COUNT(*) FROM lease_waits").fetchone()[0] == 1
    finally:
        store.close()


ADMITTER = textwrap.dedent(
    """
    import json, random, sys, time
    from dagmill.executors.machine import machine_capacity
    from dagmill.model.resources import Resources
    from dagmill.store import open_store

    url, me, start_at, seconds, quota = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    store = open_store(url)
    run = f"R{me}"
    store.create_run(run, run, (), project="p")
    rng = random.Random(int(me))
    machine = machine_capacity()
    admits = refusals = worst = checks = 0
    held = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
        got = store.admit("p", run, f"t{n}", 1, Resources(cpu_milli=rng.randint(250, 2000)),
                          machine=machine)
        if isinstance(got, str):
            refusals += 1
        else:
            admits += 1
            held.append(f"t{n}")
            # what every process holds now, as one statement sees it
            used = store._execute(
                "SELECT COALESCE(SUM(cpu_milli), 0) FROM leases WHERE project = 'p'"
            ).fetchone()[0]
            worst, checks = max(worst, int(used)), checks + 1
        # hold up to two leases a while, so that the others meet a full quota
        if len(held) > rng.randint(0, 2):
            store.release_lease(run, held.pop(0))
    for t in held:
        store.release_lease(run, t)
    store.finish_run(run, "SUCCESS")
    store.close()
    print(json.dumps({"admits": admits, "refusals": refusals, "worst": worst,
                      "checks": checks}))
    """
)


def test_concurrent_admissions_from_four_processes_never_exceed_the_quota(
    database_url: str,
) -> None:
    url = database_url
    quota = 4000
    _store_with_project(url, cpu=quota / 1000).close()
    start_at = time.time() + 2.0  # after every process imported and connected
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADMITTER, url, str(k), str(start_at), "4", str(quota)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(1, 5)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    print(results)
    assert all(r["admits"] > 0 and r["refusals"] > 0 for r in results), results
    worst = max(r["worst"] for r in results)
    assert worst <= quota, f"{worst}m of cpu admitted at once, quota {quota}m: {results}"
    with open_store(url) as s:
        assert s._execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_a_release_during_a_refusal_still_wakes_the_waiter(
    request: pytest.FixtureRequest,
) -> None:
    """PostgreSQL: a release that comes while an admission is between reading the
    leases and writing its wait waits for the admission's lock on the project's row, so
    it sees the wait and wakes it (without that lock nobody was woken, and the waiter
    slept until its recheck, 5 s). The release runs inside ``_live_rows``."""
    url = fresh_postgres_database(request)
    waiter = _store_with_project(url)
    releaser = open_store(url)
    try:
        releaser.create_run("Rholder", "holder", (), project="p")
        waiter.create_run("Rwaiter", "waiter", (), project="p")
        assert isinstance(_admit(releaser, "Rholder", "t", 2000), Lease)
        from dagmill.io.wake import Waker

        wake = Waker(None)
        assert wake.address is not None
        real = type(waiter)._live_rows

        def racing(*args: object) -> object:
            out = real(waiter, *args)  # type: ignore[arg-type]
            # the release commits now, on its own connection (in a thread: were the
            # release to wait for the admission's lock, the admission goes on)
            t = threading.Thread(target=releaser.release_lease, args=("Rholder", "t"))
            t.start()
            t.join(1.0)
            return out

        waiter._live_rows = racing  # type: ignore[method-assign]
        got = _admit(waiter, "Rwaiter", "w", 2000, wake=wake.address)
        assert isinstance(got, str), "refused: it read the lease before the release"
        poked = wait_for(wake.drain, 1.0)
        wake.close()
        assert poked, "the release woke nobody: the waiter sleeps until its recheck"
    finally:
        waiter.close()
        releaser.close()
