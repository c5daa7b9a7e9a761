"""Several ``dagmill server`` processes on one PostgreSQL database (high availability).

Real servers on the loopback database, each test with its own database, DAGMILL_HOME and
folder (the ``project`` fixture kills whatever is left of its servers when it ends, and
the database is dropped). A server is killed with SIGKILL (no drain, no hand-back): its
runners die with it, and another server must resume its runs within two heartbeat
periods, without running a finished task again, while every slot fires exactly once.

The tasks append ``start`` and ``end`` lines (one ``write`` each, O_APPEND) to one file:
a task that ran twice has two ``end`` lines; one interrupted by the kill has a ``start``
without an ``end`` from that process, and its run's record an attempt more.

Measured figures (resume latencies, counts) are also appended, as JSON lines, to the file
that ``DAGMILL_HA_REPORT`` names, if set.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dagmill.model.runs import RunInfo
from dagmill.model.schedules import JobPolicy
from helpers import wait_for
from servers import Project, ServerProcess

# PostgreSQL only: several servers cannot share SQLite (they are refused: test_server.py)
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

HEARTBEAT = 1.0  # seconds: `dagmill server --heartbeat`
ENDED = ("SUCCESS", "FAILED", "CANCELLED")

# each line one write(2) on an O_APPEND descriptor: lines of concurrent tasks never mix
NOTE = """\
import json, os, time
from dagmill import processor

p = processor.params()
slot = processor.slot().timestamp()


def note(what):
    line = {"task": p["task"], "slot": slot, "pid": os.getpid(), "what": what, "at": time.time()}
    fd = os.open(p["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\\n").encode())
    finally:
        os.close(fd)


note("start")
time.sleep(p.get("sleep", 0))
for output in processor.fetch_datanodes_information()[1]:
    with open(output, "w") as f:
        f.write("done\\n")
note("end")
"""


# -- what the tasks wrote, what the servers logged ----------------------------------------
@dataclass
class Execution:
    """One process of a task: its pid, when it started, and whether it wrote its end."""

    pid: int
    started: float
    ended: bool


def in_progress(log: Path, task: str, older_than: float = 0.0) -> set[float]:
    """The slots whose ``task`` is executing (started, not ended) for ``older_than``
    seconds at least: the engine writes its record every 0.2 s, so a task that started
    long enough ago has its attempt recorded, and a kill then leaves it open."""
    now = time.time()
    return {
        slot
        for (t, slot), ex in executions(log).items()
        if t == task and not any(e.ended for e in ex) and now - ex[-1].started >= older_than
    }


def executions(log: Path) -> dict[tuple[str, float], list[Execution]]:
    """``{(task, slot): [executions]}`` from the tasks' notes."""
    notes: dict[tuple[str, float], dict[int, Execution]] = defaultdict(dict)
    if log.exists():
        for line in log.read_text().splitlines():
            note = json.loads(line)
            key = (note["task"], float(note["slot"]))
            ex = notes[key].setdefault(note["pid"], Execution(note["pid"], note["at"], False))
            if note["what"] == "end":
                ex.ended = True
    return {k: sorted(v.values(), key=lambda e: e.started) for k, v in notes.items()}


def server_id(server: ServerProcess) -> str:
    [started] = [e for e in server.events() if e["event"] == "server_started"]
    return str(started["server"])


def runs_of(server: ServerProcess) -> set[str]:
    """The runs a server started or resumed (by its log)."""
    return {str(e["run"]) for e in server.events() if e["event"] in ("run_started", "run_resumed")}


def take_overs(servers: list[ServerProcess]) -> dict[str, tuple[float, ServerProcess]]:
    """``{run: (when, by)}``: runs taken over from a dead engine or server."""
    out: dict[str, tuple[float, ServerProcess]] = {}
    for server in servers:
        for e in server.events():
            if e["event"] == "run_taken_over":
                out.setdefault(str(e["run"]), (float(e["at"]), server))
    return out


def report(**figures: Any) -> None:
    """Append measured figures to $DAGMILL_HA_REPORT (for the closing note)."""
    path = os.environ.get("DAGMILL_HA_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(figures) + "\n")


def attempts(project: Project, run_id: str) -> dict[str, int]:
    """``{task id: attempts}`` of a run, by its record (every attempt of every engine
    that ran it: one a dead engine left open is closed FAILED when the run resumes)."""
    with project.store() as s:
        return {t.task_id: len(t.history) for t in s.get_run_tasks(run_id)}


def start_server(project: Project, max_runs: int) -> ServerProcess:
    return project.server(
        "--heartbeat", str(HEARTBEAT), "--max-runs", str(max_runs), "--grace", "30", "--log-json"
    )


def open_runs_of(project: Project, killed: ServerProcess, job: str) -> list[RunInfo]:
    """The killed server's runs that are not over: claimed in its name, or started by it."""
    mine, sid = runs_of(killed), server_id(killed)
    return [
        r
        for r in project.runs(job)
        if r.status not in ENDED and (r.id in mine or r.server_id == sid)
    ]


# -- 3 servers x 200 slots, one killed midway ----------------------------------------------
EVERY_SECOND = """\
processNodes:
  note:
    processor: note
    params: {params}
schedule:
  every: 1s
  start_date: "2020-01-01 00:00"
"""
SLOTS = 200


@pytest.mark.timeout(480)
def test_three_servers_fire_200_slots_once_each_and_resume_a_killed_server_s_runs(
    project: Project,
) -> None:
    log = project.root / "notes.log"
    params = json.dumps({"task": "note", "log": str(log), "sleep": 1.5})
    job = project.build(
        project.pipeline("every", EVERY_SECOND.format(params=params), {"note": NOTE})
    )
    with project.store() as s:  # every slot gets its run, even while another one runs
        assert s.set_job_policy(job, JobPolicy(overlap="allow", catchup="all"))
    servers = [start_server(project, max_runs=3) for _ in range(3)]
    with project.store() as s:
        assert len(s.live_servers()) == 3
    first = math.floor(time.time()) + 2
    window = [float(first + k) for k in range(SLOTS)]
    last = window[-1]

    # midway: kill a server while one of its runs' task is executing (started, not ended)
    wait_for(lambda: time.time() >= first + SLOTS // 2, SLOTS, "the middle of the window")

    def busy_server() -> ServerProcess | None:
        running = in_progress(log, "note", older_than=0.5)
        by_slot = {r.scheduled_for: r.id for r in project.runs(job)}
        busy = {by_slot[s] for s in running if s in by_slot}
        return next((s for s in servers if runs_of(s) & busy), None)

    killed = wait_for(busy_server, 20, "a server with a task executing")
    killed_at = time.time()
    killed.kill()  # SIGKILL to its process group; its runners die with its fork server
    survivors = [s for s in servers if s is not killed]
    orphans = open_runs_of(project, killed, job)
    assert orphans, "the killed server had a run in progress"

    # every orphan is taken over by one of the others, within two heartbeat periods
    def all_taken() -> bool:
        return {r.id for r in orphans} <= set(take_overs(survivors))

    wait_for(all_taken, 30, "the killed server's runs to be taken over")
    taken = take_overs(survivors)
    latencies = sorted(taken[r.id][0] - killed_at for r in orphans)

    # the window's end, then every run of it over
    wait_for(lambda: time.time() >= last + 1.0, SLOTS + 30, "the end of the window")

    def window_runs() -> list[RunInfo]:
        return [r for r in project.runs(job) if first <= (r.scheduled_for or 0.0) <= last]

    wait_for(
        lambda: len(window_runs()) == SLOTS and all(r.status in ENDED for r in window_runs()),
        120,
        f"the {SLOTS} runs of the window to end",
    )
    for server in survivors:
        assert server.stop(timeout=60) == 0

    runs = window_runs()
    slots = [r.scheduled_for for r in runs]
    report(
        test="3 servers x 200 slots",
        runs_in_window=len(runs),
        distinct_slots=len(set(slots)),
        statuses=dict(Counter(r.status for r in runs)),
        killed_runs=len(orphans),
        resume_latencies=[round(x, 3) for x in latencies],
        heartbeat=HEARTBEAT,
    )
    # exactly one run per slot of the window, one decision per slot, all successful
    assert sorted(slots) == window, "a slot fired twice, or not at all"
    with project.store() as s:
        decided = [d for d in s.job_slots(job, limit=10_000) if first <= d.scheduled_for <= last]
    assert sorted(d.scheduled_for for d in decided) == window
    assert {d.run_id for d in decided} == {r.id for r in runs}
    assert Counter(r.status for r in runs) == {"SUCCESS": SLOTS}
    assert all(x <= 2 * HEARTBEAT for x in latencies), (latencies, killed.log()[-3000:])

    # each run's task ended exactly once; a second start only where the kill interrupted
    done = executions(log)
    orphan_ids = {r.id for r in orphans}
    for run in runs:
        ex = done.get(("note", run.scheduled_for or 0.0), [])
        assert sum(e.ended for e in ex) == 1, (run.id, ex)
        interrupted = [e for e in ex if not e.ended]
        assert all(e.started < killed_at for e in interrupted), (run.id, ex)
        if interrupted:
            assert run.id in orphan_ids, (run.id, ex)
        # an attempt per execution; but a task killed within 0.2 s of its start may have
        # no record of that attempt (the engine writes every 0.2 s), and one killed as
        # its process started, before it wrote its start, a record more
        recorded = attempts(project, run.id)["note"]
        killed_here = 1 if run.id in orphan_ids else 0
        assert len(ex) - len(interrupted) <= recorded <= len(ex) + killed_here, (run.id, ex)


# -- 2 servers, queued runs, kill -9 one with a run in progress, three times ---------------
TWO_TASKS = """\
dataNodes:
  a: {{source: "a/{{slot:%Y%m%dT%H%M%S}}.txt"}}
  b: {{source: "b/{{slot:%Y%m%dT%H%M%S}}.txt"}}
processNodes:
  first:
    processor: note
    output: [a]
    params: {first}
  second:
    processor: note
    input: [a]
    output: [b]
    params: {second}
schedule:
  every: 1h
  start_date: "2020-01-01 00:00"
"""
KILLS = 3


@pytest.mark.timeout(300)
def test_a_killed_server_s_queued_runs_are_resumed_by_the_other_without_redoing_tasks(
    project: Project,
) -> None:
    log = project.root / "notes.log"
    text = TWO_TASKS.format(
        first=json.dumps({"task": "first", "log": str(log)}),
        second=json.dumps({"task": "second", "log": str(log), "sleep": 4}),
    )
    job = project.build(project.pipeline("two", text, {"note": NOTE}))
    with project.store() as s:  # only the runs queued here: no slot of its own
        assert s.set_job_policy(job, JobPolicy(overlap="allow"))
        assert s.set_job_paused(job, True)
    # room for its runs and the other's: a take-over never waits for a free runner
    alive = [start_server(project, max_runs=4) for _ in range(2)]
    latencies: list[float] = []
    killed_runs: set[str] = set()
    kills: list[float] = []
    for k in range(KILLS):
        # two runs queued (the slots of two hours of 2020-01-01), shared by the servers
        queued = project.dagmill(
            "jobs", "backfill", job, "--yes", "--json",
            "--from", f"2020-01-01 {2 * k:02d}:00", "--to", f"2020-01-01 {2 * k + 1:02d}:00",
        )  # fmt: skip
        assert queued.returncode == 0, queued.stdout + queued.stderr
        these = set(json.loads(queued.stdout)["queued"])
        assert len(these) == 2, queued.stdout

        def in_second_task(these: set[str] = these) -> ServerProcess | None:
            by_slot = {r.scheduled_for: r.id for r in project.runs(job) if r.id in these}
            busy = {by_slot.get(slot) for slot in in_progress(log, "second", older_than=0.5)}
            return next((s for s in alive if runs_of(s) & busy), None)

        killed = wait_for(in_second_task, 30, "a run in its second task")
        kills.append(time.time())
        killed.kill()
        alive.remove(killed)
        orphans = open_runs_of(project, killed, job)
        assert orphans, "the killed server had a run in progress"
        killed_runs |= {r.id for r in orphans}
        wait_for(
            lambda orphans=orphans: {r.id for r in orphans} <= set(take_overs(alive)),
            30,
            "the killed server's runs to be taken over",
        )
        taken = take_overs(alive)
        latencies += [taken[r.id][0] - kills[-1] for r in orphans]
        [survivor] = alive
        assert all(taken[r.id][1] is survivor for r in orphans)
        alive.append(start_server(project, max_runs=4))  # two servers again
        # the next round starts from idle servers: a take-over waits for a free runner,
        # which is capacity, not detection (measured here)
        wait_for(
            lambda these=these: all(r.status in ENDED for r in project.runs(job) if r.id in these),
            30,
            "the round's runs to end",
        )

    wait_for(
        lambda: (
            len(project.runs(job)) == 2 * KILLS
            and all(r.status in ENDED for r in project.runs(job))
        ),
        60,
        "every run to end",
    )
    for server in alive:
        assert server.stop(timeout=30) == 0
    runs = project.runs(job)
    report(
        test="2 servers, queued runs, kill -9 x3",
        runs=len(runs),
        statuses=dict(Counter(r.status for r in runs)),
        killed_runs=len(killed_runs),
        resume_latencies=[round(x, 3) for x in sorted(latencies)],
        median=round(statistics.median(latencies), 3),
        heartbeat=HEARTBEAT,
    )
    assert [r.status for r in runs] == ["SUCCESS"] * (2 * KILLS)
    assert all(x <= 2 * HEARTBEAT for x in latencies), latencies
    done = executions(log)
    for run in runs:
        slot = run.scheduled_for or 0.0
        first, second = done[("first", slot)], done[("second", slot)]
        # the first task had finished before any kill of its run: never redone
        assert [e.ended for e in first] == [True], (run.id, first)
        assert sum(e.ended for e in second) == 1, (run.id, second)
        interrupted = [e for e in second if not e.ended]
        if interrupted:
            assert run.id in killed_runs and len(interrupted) == 1, (run.id, second)
            assert any(e.started < at for e in interrupted for at in kills)
        record = attempts(project, run.id)
        assert record == {"first": 1, "second": len(second)}, (run.id, record, second)


# -- the decisions, one by one (a server's loop on an injected clock) ----------------------
def _claimed_run(project: Project, owner: str, server: str) -> tuple[str, str]:
    """A job's run, claimed by ``owner`` for the server ``server``: (job, run)."""
    from dagmill.scheduler.loop import slot_target

    log = project.root / "n.log"
    params = json.dumps({"task": "note", "log": str(log)})
    job_id = project.build(
        project.pipeline("every", EVERY_SECOND.format(params=params), {"note": NOTE})
    )
    with project.store() as s:
        assert s.set_job_paused(job_id, True)
        job = s.get_job(job_id)
        assert job is not None
        slot = 1_600_000_000.0
        target = slot_target(job, slot)
        assert s.decide_slot(job_id, slot, "run", run_id="r1", name=job.name, target=target)
        assert s.claim_queued("r1", owner, server)
        assert not s.claim_queued("r1", "elsewhere:2", "s-other"), "claimed once"
        run = s.get_run("r1")
        assert run is not None and (run.owner, run.server_id) == (owner, server)
    return job_id, "r1"


def _server(project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Server whose runners are not started (what it would start is recorded)."""
    from dagmill.server.main import Server, ServerOptions
    from dagmill.store import open_store

    store = open_store(project.database_url)
    server = Server(ServerOptions(max_runs=2, heartbeat=HEARTBEAT), store, lambda *a, **k: None)
    server.started = []  # type: ignore[attr-defined]
    monkeypatch.setattr(server.pool, "owner", lambda: f"{os.uname().nodename}:{os.getpid()}")
    monkeypatch.setattr(server.pool, "start", server.started.append)  # type: ignore[attr-defined]
    return server


def test_a_dead_server_s_run_on_another_host_is_taken_over_once_its_heartbeat_expired(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a single host cannot show end to end: the run's engine is on another host
    (its process cannot be looked at), so only its server's heartbeat tells it is dead:
    at two of the server's periods, and the live server looks just then."""
    _claimed_run(project, "elsewhere:1", "s-dead")
    with project.store() as s:
        dead = s.register_server("s-dead", max_runs=2, heartbeat_seconds=HEARTBEAT)
        assert [x.id for x in s.live_servers(now=dead.heartbeat_at + 2 * HEARTBEAT)] == ["s-dead"]
        assert s.live_servers(now=dead.heartbeat_at + 2 * HEARTBEAT + 0.01) == []
        # an explicit staleness still overrides the server's own period
        assert len(s.live_servers(stale_after=60, now=dead.heartbeat_at + 30)) == 1
    server = _server(project, monkeypatch)
    try:
        beat = dead.heartbeat_at
        # alive for two periods: not an orphan yet, and the next look is just at expiry
        look = server._resume_orphans(beat + 1.5 * HEARTBEAT)
        assert server.started == []
        assert dead.expires_at < look <= dead.expires_at + 0.1
        look = server._resume_orphans(look)
        assert [a.run_id for a in server.started] == ["r1"]
        with project.store() as s:
            run = s.get_run("r1")
            assert run is not None and run.server_id == server.id
            assert run.owner == f"{os.uname().nodename}:{os.getpid()}"
        # the run is this server's now (its owner lives here): not taken again
        server._resume_orphans(look + 10)
        assert len(server.started) == 1
    finally:
        server.store.close()


def test_a_run_whose_engine_lives_on_this_host_is_not_taken_from_a_late_server(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server late with its heartbeats (a loaded machine) is not dead while its runner
    runs here: taking its run over would execute its tasks twice."""
    here = f"{os.uname().nodename}:{os.getpid()}"  # this process: alive
    _claimed_run(project, here, "s-late")
    with project.store() as s:
        late = s.register_server("s-late", max_runs=2, heartbeat_seconds=HEARTBEAT)
    server = _server(project, monkeypatch)
    try:
        server._resume_orphans(late.heartbeat_at + 60)
        assert server.started == []
    finally:
        server.store.close()


def test_of_servers_racing_for_an_orphan_exactly_one_takes_it(project: Project) -> None:
    import threading

    from dagmill.store import open_store

    _claimed_run(project, "elsewhere:1", "s-dead")
    stores = [open_store(project.database_url) for _ in range(6)]
    won: list[str] = []
    gate = threading.Barrier(len(stores))

    def race(n: int) -> None:
        gate.wait()
        if stores[n].take_over_orphan("r1", "elsewhere:1", f"h:{n}", f"s{n}"):
            won.append(f"s{n}")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for s in stores:
            s.close()
    assert len(won) == 1, won
    with project.store() as s:
        run = s.get_run("r1")
    assert run is not None and run.server_id == won[0]


def test_a_server_without_a_free_runner_takes_the_orphan_as_soon_as_one_ends(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A take-over needs a free runner: a full server looks again as soon as one of its
    runners ends, not at its next beat."""
    from dagmill.server.runners import Assignment, Runner

    _claimed_run(project, "elsewhere:1", "s-dead")
    with project.store() as s:
        dead = s.register_server("s-dead", max_runs=2, heartbeat_seconds=HEARTBEAT)
    server = _server(project, monkeypatch)
    try:
        monkeypatch.setattr(server.pool, "free", lambda: 0)
        server._resume_orphans(dead.expires_at + 1)
        assert server.started == []
        ended = Runner(Assignment("run", "gone", None, 1, "log", "o"), 0.0, returncode=0)
        monkeypatch.setattr(server.pool, "free", lambda: 1)
        monkeypatch.setattr(server.pool, "finished", lambda: [ended])
        server._next_look = dead.expires_at + 100  # its next beat is far
        server._ended()
        assert server._next_look == 0.0
        server._resume_orphans(dead.expires_at + 1)
        assert [a.run_id for a in server.started] == ["r1"]
    finally:
        server.store.close()
