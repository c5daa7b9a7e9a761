"""The store's side of schedules and the server, on SQLite and PostgreSQL: slots decided
once, the run queue taken once, runs handed back, the server ledger, and how schedulers
learn that jobs changed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dagmill.model.runs import RunTarget
from dagmill.model.schedules import JobPolicy, ScheduleSpec
from dagmill.store import Store, open_store
from dagmill.store.migrate import LATEST, migrations, statements

EVERY_MINUTE = ScheduleSpec(cron="* * * * *", timezone="Europe/Paris")
T0 = 1_646_125_500.0  # 2022-03-01 10:05:00 +01:00


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    s.close()


def make_job(store: Store, job_id: str = "j1", **kwargs: Any) -> None:
    kwargs.setdefault("schedule", EVERY_MINUTE)
    store.create_job(job_id, f"job-{job_id}", "python", "pkg.mod:Task", "v1", {}, None, **kwargs)


def target(slot: str = "2022-03-01T10:05:00+01:00") -> RunTarget:
    return RunTarget("python", "pkg.mod:Task", {"day": "1"}, "/data", slot)


def race(url: str, n: int, act: Callable[[Store, int], bool]) -> list[bool]:
    """``act(store, i)`` in ``n`` threads at once, each with a store of its own."""
    stores = [open_store(url) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[bool | BaseException] = [False] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = act(stores[i], i)
        except BaseException as e:  # reported below, not lost in the thread
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return [bool(r) for r in results]


# -- migration -------------------------------------------------------------------------------
def test_a_fresh_database_has_the_schedule_tables(store: Store) -> None:
    assert store.schema_version == LATEST
    assert store.jobs_changed() == 0
    assert store.live_servers() == []
    assert store.queued_runs() == []


def _raw(url: str) -> tuple[Any, Callable[[str], Any]]:
    """A plain DB-API connection to the database (no dagmill), and its execute."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        return conn, conn.execute
    import psycopg

    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    return conn, lambda sql: conn.execute(sql.replace("?", "%s"))


def test_a_database_of_schema_5_is_upgraded_keeping_its_jobs_and_runs(
    database_url: str, tmp_path: Path
) -> None:
    Path(tmp_path / ".dagmill").mkdir(exist_ok=True)
    conn, execute = _raw(database_url)
    execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    execute("INSERT INTO schema_version VALUES (5)")
    for version, sql in migrations():
        if version <= 5:
            for stmt in statements(sql):
                execute(stmt)
    execute(
        "INSERT INTO pipelines (id, name, kind, ref, version, created_at)"
        " VALUES ('p1', 'old', 'yaml', 'old.yaml', 'v0', 1.0)"
    )
    execute(
        "INSERT INTO jobs (id, name, pipeline_id, schedule, created_at)"
        " VALUES ('jold', 'old', 'p1', '{\"schedule_interval\": \"@daily\"}', 1.0)"
    )
    execute(
        "INSERT INTO runs (id, job_id, name, status, created_at)"
        " VALUES ('rold', 'jold', 'old', 'SUCCESS', 2.0)"
    )
    conn.close()

    with open_store(database_url) as s:
        assert s.schema_version == LATEST
        job = s.get_job("jold")
        assert job is not None
        assert job.schedule == ScheduleSpec(cron="@daily")
        assert (job.policy, job.paused, job.last_slot_at) == (JobPolicy(), False, None)
        assert job.last_run == "rold"
        run = s.get_run("rold")
        assert run is not None and run.scheduled_for is None
        assert s.jobs_changed() == 0
        assert [j.id for j in s.scheduled_jobs()] == ["jold"]


# -- jobs ------------------------------------------------------------------------------------
def test_a_job_keeps_its_schedule_and_policy(store: Store) -> None:
    policy = JobPolicy(overlap="queue", catchup="all", slot_param="day")
    make_job(store, policy=policy)
    job = store.get_job("j1")
    assert job is not None
    assert (job.schedule, job.policy, job.paused, job.last_slot_at) == (
        EVERY_MINUTE,
        policy,
        False,
        None,
    )
    assert store.set_job_paused("j1", True)
    assert store.set_job_policy("j1", JobPolicy(overlap="allow"))
    job = store.list_jobs()[0]
    assert job.paused and job.policy == JobPolicy(overlap="allow")
    assert not store.set_job_paused("nope", True)
    assert not store.set_job_policy("nope", JobPolicy())


def test_every_job_mutation_bumps_the_jobs_counter(store: Store) -> None:
    seen = [store.jobs_changed()]

    def bumped() -> None:
        now = store.jobs_changed()
        assert now == seen[-1] + 1
        seen.append(now)

    make_job(store)
    bumped()
    store.set_job_paused("j1", True)
    bumped()
    store.set_job_policy("j1", JobPolicy(catchup="none"))
    bumped()
    store.bump_jobs()
    bumped()
    store.delete_job("j1")
    bumped()
    # nothing changed, nothing to wake for
    assert not store.set_job_paused("j1", False)
    store.delete_job("j1")
    assert store.jobs_changed() == seen[-1]


def test_scheduled_jobs_are_the_jobs_with_a_schedule(store: Store) -> None:
    make_job(store, "j1")
    make_job(store, "j2", schedule=None)
    make_job(store, "j3", schedule=ScheduleSpec(every="1h", start_date="2022-01-01"))
    store.set_job_paused("j3", True)
    jobs = store.scheduled_jobs()
    assert [j.id for j in jobs] == ["j1", "j3"]
    assert jobs[1].paused and jobs[1].schedule == ScheduleSpec(every="1h", start_date="2022-01-01")


# -- slots -----------------------------------------------------------------------------------
def test_a_slot_is_decided_once_and_its_run_is_queued_with_it(store: Store) -> None:
    make_job(store)
    assert store.decide_slot("j1", T0, "run", run_id="r1", target=target())
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.owner, run.scheduled_for, run.job_id, run.name) == (
        "PENDING",
        None,
        T0,
        "j1",
        "job-j1",
    )
    assert run.target == target()
    # decided already: nothing changes, whatever the second decision would have been
    assert not store.decide_slot("j1", T0, "skipped", reason="again")
    assert not store.decide_slot("j1", T0, "run", run_id="r2")
    assert store.get_run("r2") is None
    [slot] = store.job_slots("j1")
    assert (slot.job_id, slot.scheduled_for, slot.outcome, slot.run_id, slot.reason) == (
        "j1",
        T0,
        "run",
        "r1",
        None,
    )
    job = store.get_job("j1")
    assert job is not None and job.last_slot_at == T0


def test_skipped_slots_and_dropped_slots_move_the_last_slot_never_back(store: Store) -> None:
    make_job(store)
    assert store.decide_slot("j1", T0 + 60, "skipped", reason="previous run still RUNNING")
    assert store.decide_slot("j1", T0, "run", run_id="r0", name="late")  # an older slot
    job = store.get_job("j1")
    assert job is not None and job.last_slot_at == T0 + 60
    store.drop_slots("j1", T0 + 600)
    store.drop_slots("j1", T0 + 300)
    job = store.get_job("j1")
    assert job is not None and job.last_slot_at == T0 + 600
    slots = store.job_slots("j1")
    assert [(s.scheduled_for, s.outcome) for s in slots] == [(T0 + 60, "skipped"), (T0, "run")]
    assert slots[0].reason == "previous run still RUNNING" and slots[0].run_id is None
    assert [s.run_id for s in store.job_slots("j1", outcome="run")] == ["r0"]
    assert len(store.job_slots("j1", limit=1)) == 1
    run = store.get_run("r0")
    assert run is not None and run.name == "late"


def test_a_slot_whose_run_cannot_be_recorded_stays_undecided(store: Store) -> None:
    make_job(store)
    store.queue_run("r0", "a", "j1", scheduled_for=T0)  # the slot's run exists already
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.decide_slot("j1", T0, "run", run_id="r1")
    # one transaction: no decision, no mark moved, so it can be decided again
    assert store.job_slots("j1") == []
    job = store.get_job("j1")
    assert job is not None and job.last_slot_at is None
    assert store.decide_slot("j1", T0, "skipped", reason="its run was made by hand")


def test_a_slot_decision_needs_a_known_job_and_outcome(store: Store) -> None:
    make_job(store)
    with pytest.raises(ValueError, match="'run' or 'skipped'"):
        store.decide_slot("j1", T0, "maybe")
    with pytest.raises(ValueError, match="needs its run_id"):
        store.decide_slot("j1", T0, "run")
    with pytest.raises(ValueError, match="no job 'nope'"):
        store.decide_slot("nope", T0, "skipped")
    assert store.job_slots("j1") == []


def test_concurrent_schedulers_decide_a_slot_exactly_once(database_url: str) -> None:
    with open_store(database_url) as s:
        make_job(s)
    for k in range(3):  # a few slots: a race is won by whoever comes first
        slot = T0 + 60 * k
        won = race(
            database_url,
            6,
            lambda st, i, slot=slot: st.decide_slot("j1", slot, "run", run_id=f"r{slot}-{i}"),
        )
        assert won.count(True) == 1
    with open_store(database_url) as s:
        assert len(s.job_slots("j1")) == 3
        runs = s.list_runs(job_id="j1")
        assert sorted(r.scheduled_for or 0 for r in runs) == [T0, T0 + 60, T0 + 120]
        assert {s.run_id for s in s.job_slots("j1")} == {r.id for r in runs}


def test_one_run_per_job_and_slot(store: Store) -> None:
    make_job(store)
    make_job(store, "j2")
    store.queue_run("r1", "a", "j1", scheduled_for=T0)
    store.queue_run("r2", "a", "j2", scheduled_for=T0)  # another job: its own slot
    store.queue_run("r3", "a", "j1")  # runs by hand have no slot, as many as wanted
    store.queue_run("r4", "a", "j1")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.queue_run("r5", "a", "j1", scheduled_for=T0)
    assert store.get_run("r5") is None
    run = store.get_run("r1")
    assert run is not None and run.scheduled_for == T0
    assert {r.id: r.scheduled_for for r in store.list_runs()} == {
        "r1": T0,
        "r2": T0,
        "r3": None,
        "r4": None,
    }


# -- the run queue -----------------------------------------------------------------------------
def test_queued_runs_oldest_first_by_slot_then_creation(store: Store) -> None:
    make_job(store)
    now = time.time()
    store.queue_run("manual", "m", "j1")  # made now: after every slot below
    assert store.decide_slot("j1", T0 + 60, "run", run_id="second")
    assert store.decide_slot("j1", T0, "run", run_id="first")
    store.queue_run("taken", "t", "j1", scheduled_for=T0 - 60)
    assert store.claim_queued("taken", "elsewhere:1")
    store.queue_run("cancelled", "c", "j1", scheduled_for=T0 - 120)
    store.set_run_status("cancelled", "CANCELLED")
    assert [r.id for r in store.queued_runs()] == ["first", "second", "manual"]
    assert [r.id for r in store.queued_runs(limit=1)] == ["first"]
    assert store.get_run("manual").created_at >= now  # type: ignore[union-attr]


def test_a_queued_run_is_claimed_by_one_server_only(database_url: str) -> None:
    with open_store(database_url) as s:
        make_job(s)
        assert s.decide_slot("j1", T0, "run", run_id="r1")
    won = race(database_url, 6, lambda st, i: st.claim_queued("r1", f"host{i}:{i}"))
    assert won.count(True) == 1
    with open_store(database_url) as s:
        run = s.get_run("r1")
        assert run is not None
        assert (run.status, run.owner) == ("RUNNING", f"host{won.index(True)}:{won.index(True)}")
        assert run.heartbeat_at is not None and run.started_at is None
        assert s.queued_runs() == []
        # the crash machinery sees it; a process's own claim_run (start_job) does not take it
        assert [r.id for r in s.open_runs()] == ["r1"]
        assert not s.claim_run("r1")


def test_a_claimed_run_is_started_by_the_engine_under_its_id(store: Store) -> None:
    make_job(store)
    assert store.decide_slot("j1", T0, "run", run_id="r1", target=target())
    assert store.claim_queued("r1", store.owner)
    assert store.take_over("r1", store.owner)  # as resume_run does, then the engine:
    store.create_run("r1", "job-j1", [], job_id="j1")
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.owner, run.scheduled_for, run.target) == (
        "RUNNING",
        store.owner,
        T0,
        target(),
    )
    assert run.started_at is not None


def test_a_run_is_handed_back_only_by_its_owner(store: Store) -> None:
    make_job(store)
    assert store.decide_slot("j1", T0, "run", run_id="r1")
    assert not store.hand_back("r1", "a:1")  # queued, nobody's yet
    assert store.claim_queued("r1", "a:1")
    assert not store.hand_back("r1", "b:2")
    run = store.get_run("r1")
    assert run is not None and run.owner == "a:1"
    assert store.hand_back("r1", "a:1")
    run = store.get_run("r1")
    assert run is not None and (run.status, run.owner) == ("RUNNING", None)
    assert not store.hand_back("r1", "a:1")
    # it is not queued again (it may have done work): it is resumed by whoever takes it over
    assert store.queued_runs() == []
    assert store.take_over("r1", None)
    store.finish_run("r1", "SUCCESS")
    assert not store.hand_back("r1", store.owner)  # over: nothing to give back


def test_active_runs_are_the_jobs_pending_and_running_ones(store: Store) -> None:
    make_job(store)
    make_job(store, "j2")
    store.queue_run("done", "d", "j1")
    store.claim_run("done")
    store.finish_run("done", "SUCCESS")
    assert store.decide_slot("j1", T0, "run", run_id="running")
    assert store.claim_queued("running", "a:1")
    assert store.decide_slot("j1", T0 + 60, "run", run_id="pending")
    assert store.decide_slot("j2", T0, "run", run_id="other")
    assert [r.id for r in store.active_runs("j1")] == ["running", "pending"]
    assert store.active_runs("nope") == []


def test_job_activity_counts_each_jobs_running_and_queued_runs(store: Store) -> None:
    make_job(store)
    make_job(store, "j2")
    make_job(store, "idle")
    store.queue_run("done", "d", "j1")
    store.claim_run("done")
    store.finish_run("done", "SUCCESS")
    store.queue_run("adhoc", "a")  # a run of no job: not counted
    assert store.decide_slot("j1", T0, "run", run_id="running")
    assert store.claim_queued("running", "a:1")
    assert store.decide_slot("j1", T0 + 60, "run", run_id="pending")
    assert store.decide_slot("j1", T0 + 120, "run", run_id="pending2")
    assert store.decide_slot("j2", T0, "run", run_id="other")
    assert store.job_activity() == {"j1": (1, 2), "j2": (0, 1)}


def test_deleting_a_job_deletes_its_slots(store: Store) -> None:
    make_job(store)
    assert store.decide_slot("j1", T0, "run", run_id="r1")
    assert store.decide_slot("j1", T0 + 60, "skipped")
    assert store.delete_job("j1") == ["r1"]
    assert store.job_slots("j1") == []
    make_job(store)  # the same id again: its slots are free
    assert store.decide_slot("j1", T0, "run", run_id="r2")


# -- servers ---------------------------------------------------------------------------------
def test_live_servers_are_those_not_stopped_with_a_fresh_heartbeat(store: Store) -> None:
    a = store.register_server("a", max_runs=4)
    b = store.register_server("b", max_runs=2)
    assert (a.status, a.max_runs, a.stopped_at) == ("running", 4, None)
    assert a.pid > 0 and a.host
    now = b.heartbeat_at
    assert [s.id for s in store.live_servers(now=now)] == ["a", "b"]
    assert store.live_servers(stale_after=15, now=now + 60) == []
    store.server_heartbeat("b", "draining", now=now + 30)  # a missed its heartbeats
    beat = store.get_server("b")
    assert beat is not None and beat.heartbeat_at == now + 30
    assert [(s.id, s.status) for s in store.live_servers(stale_after=15, now=now + 40)] == [
        ("b", "draining")
    ]
    assert store.live_servers(stale_after=5, now=now + 40) == []
    store.server_heartbeat("a")  # the clock's now: older than b's injected one
    assert [s.id for s in store.live_servers(now=now + 40)] == ["b"]
    store.stop_server("b")
    assert [s.id for s in store.live_servers(now=now)] == ["a"]
    stopped = store.get_server("b")
    assert stopped is not None and stopped.status == "stopped" and stopped.stopped_at
    again = store.register_server("b", max_runs=8)  # a restart keeping its id
    assert [(s.id, s.max_runs) for s in store.live_servers(now=again.heartbeat_at)] == [
        ("a", 4),
        ("b", 8),
    ]
    with pytest.raises(ValueError, match="running, draining, stopped"):
        store.server_heartbeat("a", "asleep")


# -- wake-ups --------------------------------------------------------------------------------
@pytest.mark.parametrize("psycopg_waits", [True, False], ids=["notifies", "select"])
def test_postgres_listener_is_woken_by_a_job_created_elsewhere(
    database_url: str, store: Store, psycopg_waits: bool
) -> None:
    listener = store.jobs_listener()
    if database_url.startswith("sqlite"):
        assert listener is None  # one server per SQLite file: it wakes itself
        return
    assert listener is not None
    listener._timed = psycopg_waits  # type: ignore[attr-defined]  # select: psycopg < 3.2
    try:
        assert not listener.wait(0.05)
        with open_store(database_url) as other:
            make_job(other)
            other.set_job_paused("j1", True)
        started = time.monotonic()
        assert listener.wait(1.0)
        assert time.monotonic() - started < 1.0
        # the rest drained: a notice the server had not sent yet may wake it once more
        assert any(not listener.wait(0.2) for _ in range(3))
        # a change rolled back is not notified
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), open_store(database_url) as o:
            make_job(o)  # j1 again
        assert not listener.wait(0.2)
    finally:
        listener.close()


# -- speed -----------------------------------------------------------------------------------
def test_scheduled_jobs_of_a_thousand_jobs_is_quick(tmp_path: Path) -> None:
    """Not a bound (machines differ): prints the time for the record."""
    with open_store(f"sqlite:///{tmp_path}/speed.db") as s:
        for i in range(1000):
            make_job(s, f"j{i:04}")
            for k in range(2):
                s.queue_run(f"r{i:04}-{k}", "r", f"j{i:04}", scheduled_for=T0 + 60 * k)
        s.scheduled_jobs()  # warm
        best = min(_timed(s.scheduled_jobs) for _ in range(5))
        assert len(s.scheduled_jobs()) == 1000
    print(f"\nscheduled_jobs: 1000 jobs, 2000 runs, SQLite: {best * 1000:.1f} ms")


def _timed(f: Callable[[], object]) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start
