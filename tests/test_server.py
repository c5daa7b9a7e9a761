"""``dagmill server`` as it is run: real server processes on SQLite and on PostgreSQL,
jobs scheduled every second, overlap and catch-up policies, a server killed mid-run or
drained, two servers on one database, and its log.

Every test starts its own servers (own DAGMILL_HOME, own database) and the ``project``
fixture kills whatever is left of them when it ends, pass or fail. Times are read from
the store (a run's slot, start and end) and from the lines the jobs' module appends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import textwrap
import time
from pathlib import Path

import pytest

from dagmill.model.runs import RunInfo
from dagmill.model.schedules import JobPolicy, SlotInfo
from helpers import wait_for
from servers import Project, alive, overlaps, tick_pipeline, ticks

pytestmark = pytest.mark.timeout(120)

ENDED = ("SUCCESS", "FAILED", "CANCELLED")
SKIP_REASON = re.compile(
    r"^slot \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? skipped: run (\S+) still RUNNING$"
)


def _succeeded(runs: list[RunInfo]) -> list[RunInfo]:
    return [r for r in runs if r.status == "SUCCESS"]


def _decided(project: Project, job: str) -> list[SlotInfo]:
    """The job's slot decisions, oldest first."""
    with project.store() as s:
        return sorted(s.job_slots(job, limit=1000), key=lambda d: d.scheduled_for)


def _slot_seconds(runs: list[RunInfo]) -> list[float]:
    return [r.scheduled_for for r in runs if r.scheduled_for is not None]


# -- 1. every second, and overlap skip ---------------------------------------------------
def test_a_job_every_second_runs_once_a_second_and_a_slow_one_skips_slots(
    project: Project,
) -> None:
    fast_log, slow_log = project.root / "fast.log", project.root / "slow.log"
    fast = project.build(project.pipeline("fast", tick_pipeline(fast_log)))
    slow = project.build(project.pipeline("slow", tick_pipeline(slow_log, sleep=2.5)))
    project.server()

    # the first run may meet a runner still warming up: look at the slots from the second
    # run's to the fourth's (how many seconds that takes depends on the machine's load)
    wait_for(lambda: len(project.ended_runs(fast)) >= 4, 60, "four fast runs")
    runs = {r.id: r for r in project.runs(fast)}
    firsts = _slot_seconds(project.ended_runs(fast))
    window = [d for d in _decided(project, fast) if firsts[1] <= d.scheduled_for <= firsts[3]]
    seconds = [d.scheduled_for for d in window]
    assert seconds == [seconds[0] + k for k in range(len(seconds))], "a slot every second"
    for d in window:
        assert d.decided_at - d.scheduled_for < 0.9, ("decided late", d)
        if d.outcome == "run":
            continue
        # skipped: only because the job's previous run had not ended (a loaded machine)
        match = SKIP_REASON.match(d.reason or "")
        assert match, d.reason
        busy = runs[match.group(2)]
        assert busy.ended_at is None or busy.ended_at > d.scheduled_for - 0.05, (d, busy)
    fired = {d.run_id for d in window if d.outcome == "run"}
    assert len(fired) == 3, window

    def window_runs() -> list[RunInfo]:
        return [r for r in project.runs(fast) if r.id in fired]

    wait_for(lambda: all(r.status in ENDED for r in window_runs()), 20, "the window's runs")
    assert all(r.status == "SUCCESS" for r in window_runs())
    assert overlaps(project.runs(fast)) == []
    ended = len(project.ended_runs(fast))
    lines = len(ticks(fast_log))
    assert ended <= lines <= len(project.runs(fast)), "the module ran once per run"

    # the slow job (2.5 s a run, a slot a second): skipped slots name the run they met
    def skipped() -> list[object]:
        with project.store() as s:
            return list(s.job_slots(slow, limit=100, outcome="skipped"))

    wait_for(lambda: len(_succeeded(project.runs(slow))) >= 2, 30, "two slow runs")
    wait_for(lambda: len(skipped()) >= 3, 10, "three skipped slots")
    slow_runs = {r.id: r for r in project.runs(slow)}
    with project.store() as s:
        decided = s.job_slots(slow, limit=100)
        skips = s.job_slots(slow, limit=100, outcome="skipped")
    for slot in skips:
        assert slot.run_id is None
        match = SKIP_REASON.match(slot.reason or "")
        assert match, slot.reason
        busy = slow_runs[match.group(2)]
        assert busy.scheduled_for is not None and busy.scheduled_for < slot.scheduled_for
        assert busy.ended_at is None or slot.scheduled_for <= busy.ended_at + 0.5
    # every second from the first slot on was decided once: a run or a skip, no hole
    seconds = sorted(d.scheduled_for for d in decided)
    assert seconds == [seconds[0] + k for k in range(len(seconds))]
    assert overlaps(list(slow_runs.values())) == []
    # the module logs as it ends, so a run ending just now may have logged already
    assert len(_succeeded(list(slow_runs.values()))) <= len(ticks(slow_log)) <= len(slow_runs)


# -- 2. overlap queue and allow, changed while the server runs ------------------------------
def test_queue_runs_every_slot_one_after_another_and_allow_overlaps_them(
    project: Project,
) -> None:
    queue_log, allow_log = project.root / "queue.log", project.root / "allow.log"
    queued = project.build(project.pipeline("queue", tick_pipeline(queue_log, sleep=1.5)))
    allowed = project.build(project.pipeline("allow", tick_pipeline(allow_log, sleep=1.5)))
    project.server("--max-runs", "3")  # the queued job's run and two allowed ones at once
    with project.store() as s:  # the server sees the change by its change counter
        assert s.set_job_policy(queued, JobPolicy(overlap="queue"))
        assert s.set_job_policy(allowed, JobPolicy(overlap="allow"))
    changed = time.time()

    def after_change(job: str) -> list[RunInfo]:
        return [r for r in project.runs(job) if (r.scheduled_for or 0.0) >= changed + 1.1]

    wait_for(lambda: len(_succeeded(after_change(queued))) >= 3, 60, "three queued runs")
    wait_for(
        lambda: overlaps(_succeeded(after_change(allowed))), 30, "two allowed runs overlapping"
    )
    with project.store() as s:
        for job in (queued, allowed):
            late = [d for d in s.job_slots(job, limit=100) if d.scheduled_for >= changed + 1.1]
            assert late and all(d.outcome == "run" for d in late), (job, late)

    # queue: every slot got its run, and they ran one at a time, oldest slot first
    runs = project.runs(queued)
    assert overlaps(runs) == []
    done = _succeeded(runs)
    starts = [r.started_at for r in done]
    assert starts == sorted(starts) and _slot_seconds(done) == sorted(_slot_seconds(done))
    waiting = [r for r in runs if r.status == "PENDING"]
    assert waiting, "slots come faster than the runs end: the queue grows"
    # allow: runs of later slots started while earlier ones ran
    assert len(overlaps(_succeeded(after_change(allowed)))) >= 1


# -- 3. catch-up after downtime ------------------------------------------------------------
def test_catch_up_latest_all_none_after_five_slots_of_downtime(project: Project) -> None:
    jobs: dict[str, str] = {}
    for catchup in ("latest", "all", "none"):
        log = project.root / f"{catchup}.log"
        jobs[catchup] = project.build(project.pipeline(catchup, tick_pipeline(log)))
    # queue: a run the stop leaves queued cannot make a catch-up slot skip behind it
    with project.store() as s:
        for job in jobs.values():
            s.set_job_policy(job, JobPolicy(overlap="queue"))
    first = project.server("--max-runs", "3")
    for job in jobs.values():
        wait_for(lambda job=job: project.runs(job), 20, f"a slot of {job}")
    assert first.stop(timeout=60) == 0
    with project.store() as s:  # the catch-up policy matters to the server that comes back
        for catchup, job in jobs.items():
            s.set_job_policy(job, JobPolicy(overlap="queue", catchup=catchup))
        last = {c: s.get_job(j).last_slot_at for c, j in jobs.items()}  # type: ignore[union-attr]
    assert all(v is not None for v in last.values())
    down_until = max(v or 0.0 for v in last.values()) + 5.3
    wait_for(lambda: time.time() >= down_until, 10, "five slots of downtime")

    second = project.server("--max-runs", "3", "--log-json")
    [started] = [e for e in second.events() if e["event"] == "server_started"]
    back = float(started["at"])  # the slots due by now were missed

    def missed(catchup: str) -> list[float]:
        lo = last[catchup] or 0.0
        return [float(s) for s in range(int(lo) + 1, math.floor(back) + 1)]

    def runs_in_downtime(catchup: str) -> list[RunInfo]:
        lo = last[catchup] or 0.0
        return [r for r in project.runs(jobs[catchup]) if lo < (r.scheduled_for or 0.0) <= back]

    assert all(len(missed(c)) >= 5 for c in jobs), (last, back)
    # all: every missed slot gets its run, oldest first, one after another
    wait_for(
        lambda: len(_succeeded(runs_in_downtime("all"))) == len(missed("all")),
        100,
        "a run for every missed slot of the `all` job",
    )
    every = runs_in_downtime("all")
    assert _slot_seconds(every) == missed("all")
    assert overlaps(every) == []

    # latest: one run, for the latest slot due as it came back
    def first_run_after() -> RunInfo | None:
        lo = last["latest"] or 0.0
        runs = [r for r in project.runs(jobs["latest"]) if (r.scheduled_for or 0.0) > lo]
        return runs[0] if runs else None

    wait_for(lambda: (r := first_run_after()) and r.status in ENDED, 30, "the latest run")
    latest = first_run_after()
    assert latest is not None and latest.status == "SUCCESS"
    assert latest.scheduled_for in (math.floor(back), math.floor(back) + 1), (back, latest)
    assert len(runs_in_downtime("latest")) <= 1
    # none: the missed slots are dropped; only one late by at most half a period may run
    none = runs_in_downtime("none")
    assert all((r.scheduled_for or 0.0) >= back - 0.5 for r in none), (back, none)
    assert len(none) <= 1
    with project.store() as s:  # dropped slots leave no rows, not even skipped ones
        for catchup in ("latest", "none"):
            lo, hi = last[catchup] or 0.0, back - 0.5
            if catchup == "latest":
                hi = min(hi, latest.scheduled_for or 0.0)
            rows = [d for d in s.job_slots(jobs[catchup], limit=100) if lo < d.scheduled_for < hi]
            assert rows == [], (catchup, rows)
    # and the job goes on every second after
    wait_for(
        lambda: any((r.scheduled_for or 0.0) > back + 1 for r in project.runs(jobs["none"])),
        10,
        "the `none` job to fire again",
    )


# -- 4. a server killed mid-run ------------------------------------------------------------
TWO_TASKS = """\
dataNodes:
  a: {{source: a.txt}}
  b: {{source: b.txt}}
processNodes:
  first:
    processor: tick
    output: [a]
    params: {{"log": "{first}"}}
  second:
    processor: tick
    input: [a]
    output: [b]
    params: {{"log": "{second}", "marker": "{marker}", "sleep": {sleep}}}
schedule:
  every: 1d
  start_date: "2020-01-01 00:00"
"""


def _two_task_job(project: Project, sleep: float) -> tuple[str, Path, Path, Path]:
    first, second = project.root / "first.log", project.root / "second.log"
    marker = project.root / "second.started"
    text = TWO_TASKS.format(first=first, second=second, marker=marker, sleep=sleep)
    job = project.build(project.pipeline("two", text))
    return job, first, second, marker


def _only_run(project: Project, job: str) -> RunInfo:
    [run] = project.runs(job)
    return run


def test_a_killed_server_s_run_resumes_in_the_next_without_redoing_or_refiring(
    project: Project,
) -> None:
    job, first_log, second_log, marker = _two_task_job(project, sleep=3.0)
    killed = project.server()
    wait_for(marker.exists, 20, "the second task to start")
    run_id = _only_run(project, job).id
    assert len(ticks(first_log)) == 1 and ticks(second_log) == []
    killed_pid = int(marker.read_text())  # the second task's module, in its own session
    killed.kill()  # SIGKILL: no drain, no hand-back

    project.server()
    wait_for(lambda: _only_run(project, job).status in ENDED, 30, "the resumed run to end")
    run = _only_run(project, job)
    assert (run.id, run.status) == (run_id, "SUCCESS")
    assert len(ticks(first_log)) == 1, "the first task finished before the kill: not redone"
    resumed = [t for t in ticks(second_log) if t["pid"] != killed_pid]
    assert len(resumed) == 1, "the second task ran again, once, in the resumed run"
    assert (project.root / "two/d/b.txt").exists()
    with project.store() as s:
        [slot] = s.job_slots(job, limit=100)
    assert (slot.outcome, slot.run_id, slot.scheduled_for) == ("run", run_id, run.scheduled_for)
    assert project.servers[1].has_logged("run_resumed")


@pytest.mark.parametrize("how", ["kill", "hand_back"])
def test_a_stopped_runner_leaves_no_task_process_behind(project: Project, how: str) -> None:
    log, marker = project.root / "tick.log", project.root / "started"
    project.build(project.pipeline("slow", tick_pipeline(log, every="1d", sleep=6, marker=marker)))
    server = project.server("--grace", "0")
    wait_for(marker.exists, 20, "the run to start")
    wait_for(lambda: marker.read_text(), 5, "the module's pid")
    module = int(marker.read_text())
    try:
        if how == "kill":
            server.kill()
        else:
            assert server.stop() == 0 and server.has_logged("run_handed_back")
        assert wait_for(lambda: not alive(module), 4), f"the module (pid {module}) still runs"
        assert ticks(log) == []
    finally:  # not left running past the test
        with contextlib.suppress(ProcessLookupError):
            os.kill(module, signal.SIGKILL)


# -- 5. drain ----------------------------------------------------------------------------
PLAIN_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) +(\w+)"
    r"(?: \w+=(?:\"(?:[^\"\\]|\\.)*\"|\S+))*$"
)


def test_sigterm_lets_a_running_run_finish_within_the_grace(project: Project) -> None:
    log, marker = project.root / "tick.log", project.root / "started"
    job = project.build(
        project.pipeline("slow", tick_pipeline(log, every="1d", sleep=2.0, marker=marker))
    )
    server = project.server("--grace", "10")
    wait_for(marker.exists, 20, "the run to start")
    assert server.stop(timeout=20) == 0
    run = _only_run(project, job)
    assert run.status == "SUCCESS" and len(ticks(log)) == 1
    assert server.has_logged("server_stopped") and not server.has_logged("run_handed_back")
    # the plain log: `time LEVEL event key=value ...`, one event a line
    events = []
    for line in server.log().splitlines():
        match = PLAIN_LINE.match(line)
        assert match, line
        events.append(match.group(2))
    for event in ("server_started", "slot_fired", "run_started", "server_draining"):
        assert event in events
    assert events.index("server_draining") < events.index("run_ended") < len(events) - 1
    assert events[-1] == "server_stopped"


def test_a_run_past_the_grace_is_handed_back_and_resumed_by_the_next_server(
    project: Project,
) -> None:
    log, marker = project.root / "tick.log", project.root / "started"
    job = project.build(
        project.pipeline("slow", tick_pipeline(log, every="1d", sleep=4.0, marker=marker))
    )
    server = project.server("--grace", "0.5")
    wait_for(marker.exists, 20, "the run to start")
    run_id = _only_run(project, job).id
    stopped = int(marker.read_text())
    assert server.stop(timeout=10) == 0
    handed = [line for line in server.log().splitlines() if " run_handed_back " in line]
    assert len(handed) == 1 and f"run={run_id}" in handed[0] and "resumable=True" in handed[0]
    assert server.has_logged("server_stopped")
    run = _only_run(project, job)
    assert (run.status, run.owner) == ("RUNNING", None)
    # a handed-back run waits for a server: `runs ...` commands do not resume it themselves
    assert project.dagmill("runs", "list").returncode == 0
    time.sleep(0.5)  # what a background resume would need to take it over
    assert _only_run(project, job).owner is None

    nxt = project.server()
    wait_for(lambda: _only_run(project, job).status in ENDED, 30, "the handed-back run to end")
    assert _only_run(project, job).status == "SUCCESS"
    assert nxt.has_logged("run_resumed")
    assert len([t for t in ticks(log) if t["pid"] != stopped]) == 1


# -- 6. two servers on one database -----------------------------------------------------
def test_a_second_server_is_refused_on_sqlite_and_shares_the_work_on_postgresql(
    project: Project,
) -> None:
    job = project.build(project.pipeline("fast", tick_pipeline(project.root / "tick.log")))
    with project.store() as s:
        s.set_job_policy(job, JobPolicy(overlap="allow"))
    one = project.server("--max-runs", "2")
    if project.database_url.startswith("sqlite"):
        two = project.server(wait=False)
        assert two.wait(30) == 2, two.log()
        assert f"pid {one.pid}" in two.log() and "another server" in two.log()
        assert one.proc.poll() is None, "the first server serves on"
        return
    two = project.server("--max-runs", "2")
    begin = time.time()
    with project.store() as s:
        assert len(s.live_servers()) == 2
    wait_for(lambda: time.time() >= begin + 5, 10, "five seconds of slots")
    assert one.stop() == 0 and two.stop() == 0
    runs = project.runs(job)
    slots = _slot_seconds(runs)
    assert len(slots) == len(set(slots)), "a slot fired twice"
    during = sorted(s for s in slots if begin <= s <= begin + 5)
    assert len(during) >= 5 and during == [during[0] + k for k in range(len(during))]
    with project.store() as s:
        decided = s.job_slots(job, limit=1000)
    assert sorted(d.scheduled_for for d in decided) == sorted(slots)
    assert {d.run_id for d in decided} == {r.id for r in runs}


# -- 7. the log and the help -------------------------------------------------------------
def test_log_json_lines_are_json_objects_with_an_event(project: Project) -> None:
    project.build(project.pipeline("once", tick_pipeline(project.root / "t.log", every="1d")))
    server = project.server("--log-json")
    wait_for(lambda: server.has_logged("run_ended"), 20, "the run to end")
    assert server.stop() == 0
    lines = server.log().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and r["event"] and r["level"] for r in records)
    events = [r["event"] for r in records]
    for event in ("server_started", "slot_fired", "run_started", "run_ended", "server_stopped"):
        assert event in events
    [ended] = [r for r in records if r["event"] == "run_ended"]
    assert ended["status"] == "SUCCESS" and isinstance(ended["at"], float)


def test_server_help_shows_the_systemd_unit(tmp_path: Path) -> None:
    helped = Project(tmp_path, f"sqlite:///{tmp_path}/db").dagmill("server", "--help")
    assert helped.returncode == 0, helped.stderr
    text = textwrap.dedent(helped.stdout)
    for needle in ("[Unit]", "[Service]", "ExecStart=", "dagmill server", "KillSignal=SIGTERM"):
        assert needle in text, needle
    assert "--grace" in text and "--log-json" in text


# -- wake-ups ------------------------------------------------------------------------------
def _drop_listeners(database_url: str) -> int:
    """Close the server's LISTEN connection from the database side (a restart would)."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_a_job_built_while_the_server_runs_fires_within_a_second(project: Project) -> None:
    """Built from the CLI, a job whose `every` started in the past fires at once: the
    CLI wakes the server (a datagram on SQLite, NOTIFY on PostgreSQL, also after the
    listening connection was dropped), which does not wait for a poll."""
    server = project.server("--log-json")
    if project.database_url.startswith("postgresql"):
        assert _drop_listeners(project.database_url) == 1
        wait_for(lambda: server.has_logged("listening_again"), 10, "the listener back")
    log = project.root / "tick.log"
    built_at = time.time()
    job = project.build(project.pipeline("new", tick_pipeline(log, every="1h")))
    wait_for(lambda: len(project.runs(job)) == 1, 10, "the job's first run")
    fired = next(e for e in server.events() if e["event"] == "slot_fired")
    # the CLI's own start-up (about 0.3 s) is in this figure; a poll would add up to 30 s
    assert fired["at"] - built_at < 3.0, fired


def test_jobs_run_queues_to_a_live_server_which_starts_it(project: Project) -> None:
    log = project.root / "tick.log"
    job = project.build(project.pipeline("manual", tick_pipeline(log, every="1d")))
    server = project.server("--log-json")
    wait_for(lambda: len(project.ended_runs(job)) == 1, 20, "the scheduled run")
    out = project.dagmill("jobs", "run", job)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    wait_for(lambda: run_id in {r.id for r in project.ended_runs(job)}, 20, "the manual run")
    started = [e for e in server.events() if e["event"] == "run_started"]
    assert run_id in {e.get("run") for e in started}, "started by the server, not by the CLI"
    [run] = [r for r in project.runs(job) if r.id == run_id]
    assert run.status == "SUCCESS" and run.scheduled_for is None


# -- the slot reaches the tasks -----------------------------------------------------------
PARTITIONS = """\
import dagmill


class Part(dagmill.tasks.TaskJson):
    at = dagmill.DateSecondParameter()

    def run(self):
        self.save({"at": self.at.isoformat()})
"""

YAML_PARTITIONS = """\
dataNodes:
  part: {source: "parts/{slot:%Y%m%dT%H%M%S}.json"}
processNodes:
  write:
    output: [part]
    processor: write
schedule: {every: 1s, start_date: "2020-01-01 00:00", timezone: Europe/Paris}
"""

WRITE = """\
from dagmill import processor

processor.save("part", {"slot": processor.slot().isoformat()})
"""


def test_each_scheduled_run_computes_its_own_partition(project: Project) -> None:
    """A Python job binds its slot to a date-time parameter (--slot-param), a YAML
    pipeline names it in a source: each slot's run writes its own partition."""
    (project.root / "flows.py").write_text(PARTITIONS)
    built = project.dagmill(
        "jobs", "build", "flows.py:Part", "--data", "pdata", "--every", "1s",
        "--start", "2020-01-01 00:00", "--timezone", "Europe/Paris", "--slot-param", "at",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    python_job = built.stdout.split()[-1]
    yaml_job = project.build(project.pipeline("yaml", YAML_PARTITIONS, {"write": WRITE}))
    server = project.server()
    for job in (python_job, yaml_job):
        wait_for(lambda job=job: len(project.ended_runs(job)) >= 3, 30, f"3 runs of {job}")
    assert server.stop() == 0
    # by hand, the job gets now as its slot
    by_hand = project.dagmill("jobs", "run", python_job, "--wait", "--json")
    assert by_hand.returncode == 0, by_hand.stderr
    python_runs = [r for r in project.ended_runs(python_job) if r.status == "SUCCESS"]
    yaml_runs = [r for r in project.ended_runs(yaml_job) if r.status == "SUCCESS"]
    assert len(python_runs) >= 3 and len(yaml_runs) >= 3
    # each run's partition: named by its own slot, in the job's timezone
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    made = {
        json.loads(p.read_text())["data"]["at"] for p in (project.root / "pdata").rglob("*.json")
    }
    for run in python_runs:
        if run.scheduled_for is None:  # the run by hand: its slot is in its target
            assert run.target is not None and run.target.slot is not None
            continue
        local = datetime.fromtimestamp(run.scheduled_for, paris).replace(tzinfo=None)
        assert local.isoformat() in made, (local, made)
    parts = project.root / "yaml/d/parts"
    for run in yaml_runs:
        assert run.scheduled_for is not None
        name = datetime.fromtimestamp(run.scheduled_for, paris).strftime("%Y%m%dT%H%M%S")
        slot = json.loads((parts / f"{name}.json").read_text())["slot"]
        assert datetime.fromisoformat(slot).timestamp() == run.scheduled_for
