"""The scheduler loop with an injected clock: decisions, overlap, catch-up, reloads, and
two schedulers on one database. No sleeps: ``now`` is passed in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from dagmill.model.schedules import JobPolicy, ScheduleSpec
from dagmill.scheduler.loop import Scheduler, slot_target
from dagmill.store import Store, open_store

START = "2020-01-01 00:00:00"  # every-second jobs count from here (UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}") as s:
        yield s


def _job(store: Store, policy: JobPolicy | None = None, every: str = "1s", **spec: str) -> str:
    job_id = "j" + str(len(store.list_jobs()) + 1)
    schedule = ScheduleSpec(every=every, start_date=START, **spec)
    store.create_job(
        job_id, job_id, "python", "flows.py:Daily", "v1", {}, "/data",
        schedule=schedule, policy=policy or JobPolicy(),
    )  # fmt: skip
    return job_id


def _loaded(store: Store, now: float) -> Scheduler:
    s = Scheduler(store)
    s.load(store.scheduled_jobs(), now)
    return s


def test_a_new_every_job_with_a_past_start_fires_at_once(store: Store) -> None:
    now = float(int(time.time())) + 0.25
    job = _job(store)
    s = _loaded(store, now)
    assert s.next_due() == now - 0.25  # the latest slot, due already
    [d] = s.tick(now)
    assert (d.job_id, d.outcome, d.scheduled_for) == (job, "run", now - 0.25)
    assert s.next_due() == now + 0.75
    [run] = store.queued_runs()
    assert run.id == d.run_id and run.scheduled_for == d.scheduled_for
    assert run.target is not None and run.target.slot is not None
    assert s.tick(now + 0.5) == []  # nothing more due yet


def test_overlap_skip_records_the_skipped_slot(store: Store) -> None:
    now = float(int(time.time()))
    job = _job(store)
    s = _loaded(store, now)
    [first] = s.tick(now)
    [second] = s.tick(now + 1)
    assert second.outcome == "skipped" and second.run_id is None
    assert f"run {first.run_id} still PENDING" in (second.reason or "")
    assert second.reason is not None and second.reason.startswith("slot ")
    [slot] = store.job_slots(job, outcome="skipped")
    assert slot.scheduled_for == now + 1 and slot.reason == second.reason


@pytest.mark.parametrize("overlap", ["queue", "allow"])
def test_overlap_queue_and_allow_give_every_slot_its_run(store: Store, overlap: str) -> None:
    now = float(int(time.time()))
    _job(store, JobPolicy(overlap=overlap))
    s = _loaded(store, now)
    decisions = [d for k in range(4) for d in s.tick(now + k)]
    assert [d.outcome for d in decisions] == ["run"] * 4
    assert len(store.queued_runs()) == 4


@pytest.mark.parametrize(
    ("catchup", "runs"), [("latest", 1), ("all", 5), ("none", 0)]
)  # fmt: skip
def test_catch_up_after_five_missed_slots(store: Store, catchup: str, runs: int) -> None:
    now = float(int(time.time()))
    job = _job(store, JobPolicy(catchup=catchup))
    _loaded(store, now).tick(now)  # fires `now`, then the server is down for 5 slots
    for r in store.queued_runs():
        store.set_run_status(r.id, "SUCCESS")
    back = now + 5.6
    s = _loaded(store, back)
    decisions = s.tick(back)
    assert [d.outcome for d in decisions] == ["run"] * runs
    slots = [d.scheduled_for for d in decisions]
    assert slots == sorted(slots)  # oldest first
    if catchup == "latest":
        assert slots == [now + 5]
    assert s.next_due() == now + 6
    assert store.get_job(job).last_slot_at == now + 5  # type: ignore[union-attr]


def test_a_paused_job_is_left_out_and_a_reload_takes_it_back(store: Store) -> None:
    now = float(int(time.time()))
    job = _job(store)
    store.set_job_paused(job, True)
    s = _loaded(store, now)
    assert s.jobs() == 0 and s.next_due() is None and s.tick(now) == []
    store.set_job_paused(job, False)
    s.load(store.scheduled_jobs(), now)
    assert [d.outcome for d in s.tick(now)] == ["run"]


def test_an_ended_schedule_fires_no_more(store: Store) -> None:
    now = float(int(time.time()))
    _job(store, every="1d", end_date="2020-01-03 00:00")
    s = _loaded(store, now)
    assert s.next_due() is None and s.tick(now) == []


def test_two_schedulers_on_one_database_decide_each_slot_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    now = float(int(time.time()))
    with open_store(url) as a, open_store(url) as b:
        _job(a, JobPolicy(overlap="allow"))
        one, two = _loaded(a, now), _loaded(b, now)
        decided = [d for k in range(3) for d in one.tick(now + k) + two.tick(now + k)]
        assert len(decided) == 3
        assert len(a.queued_runs()) == 3


def test_the_slot_is_bound_to_the_slot_parameter(store: Store) -> None:
    now = float(int(time.time()))
    job_id = _job(store, JobPolicy(slot_param="day"), every="1d", timezone="Europe/Paris")
    job = store.get_job(job_id)
    assert job is not None
    target = slot_target(job, 1646125500.0)  # 2022-03-01 09:05 UTC
    assert target.slot == "2022-03-01T10:05:00+01:00"
    assert target.params["day"] == target.slot
    assert now > 0


PARIS_PIPELINE = """\
processNodes:
  report:
    processor: report
schedule:
  schedule_interval: "5 10 * * *"
  start_date: "2022-01-01 00:00"
  end_date: "2022-12-31 00:00"
  timezone: "Europe/Paris"
"""


def _utc(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_documented_yaml_schedule_fires_at_the_right_utc_instants(
    store: Store, tmp_path: Path
) -> None:
    """The README's `schedule:` block, read by the YAML front door and run through the
    scheduler with an injected clock: 10:05 Paris is 09:05 UTC in winter, 08:05 UTC in
    summer; DST days included; nothing after the end date."""
    from dagmill.frontends.pipeline.compile import compile_pipeline
    from dagmill.scheduler.triggers import make_trigger

    (tmp_path / "pipeline.yaml").write_text(PARIS_PIPELINE)
    (tmp_path / "report.py").write_text("from dagmill import processor\n")
    compiled = compile_pipeline(str(tmp_path / "pipeline.yaml"), str(tmp_path / "data"))
    assert compiled.spec.schedule is not None
    spec = ScheduleSpec.from_json(compiled.spec.schedule.model_dump(exclude_none=True))
    slots = list(make_trigger(spec).slots(_utc("2021-12-31 00:00"), _utc("2023-06-01 00:00")))
    assert slots[0] == _utc("2022-01-01 09:05")
    assert len(slots) == 364 and slots[-1] == _utc("2022-12-30 09:05")  # the end is 00:00
    assert _utc("2022-03-26 09:05") in slots and _utc("2022-03-27 08:05") in slots
    assert _utc("2022-10-29 08:05") in slots and _utc("2022-10-30 09:05") in slots

    store.create_job(
        "jparis", "paris", "yaml", compiled.file, "v1", {}, str(tmp_path / "data"),
        schedule=spec, policy=JobPolicy(catchup="all"),
    )  # fmt: skip
    store.drop_slots("jparis", _utc("2022-03-25 09:05"))  # as if it ran until then
    s = Scheduler(store)
    now = _utc("2022-03-27 12:00")  # the server was down over the spring-forward night
    s.load(store.scheduled_jobs(), now)
    fired = [d.scheduled_for for d in s.tick(now)]
    assert fired == [_utc("2022-03-26 09:05"), _utc("2022-03-27 08:05")]
    assert s.next_due() == _utc("2022-03-28 08:05")
    [first, second] = store.queued_runs()
    assert first.target is not None and first.target.slot == "2022-03-26T10:05:00+01:00"
    assert second.target is not None and second.target.slot == "2022-03-27T10:05:00+02:00"
    s.tick(_utc("2023-01-01 00:00"))
    assert s.next_due() is None  # past the end date
