"""Triggers (dagmill.scheduler.triggers): slots across DST, bad schedules, catch-up.

Fixed instants only (no clock, no sleeps). The property tests compare the triggers with a
brute-force reference that walks every local minute around real DST transitions.
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagmill.errors import DefinitionError
from dagmill.model.schedules import ScheduleSpec
from dagmill.scheduler.triggers import (
    CATCHUP_ALL_CAP,
    Due,
    Period,
    ScheduleError,
    Trigger,
    due_slots,
    format_slot,
    local_to_epoch,
    make_trigger,
    parse_local_date,
    parse_period,
    parse_slot,
)

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def z(text: str) -> float:
    """An instant written in UTC: ``z("2022-03-27T01:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def utc(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron(expr: str, tz: str = "UTC", **dates: str) -> Trigger:
    return make_trigger(ScheduleSpec(cron=expr, timezone=tz, **dates))


def every(period: str, start: str, tz: str = "UTC", **dates: str) -> Trigger:
    return make_trigger(ScheduleSpec(every=period, start_date=start, timezone=tz, **dates))


def slots_utc(trigger: Trigger, after: str, until: str) -> list[str | None]:
    return [utc(s) for s in trigger.slots(z(after), z(until))]


# -- examples ---------------------------------------------------------------------------


def test_daily_cron_in_paris_across_both_dst_changes_and_end_date() -> None:
    t = cron("5 10 * * *", PARIS, start_date="2022-01-01 00:00", end_date="2022-12-31 00:00")
    assert utc(t.next_after(0)) == "2022-01-01T09:05:00Z"
    assert slots_utc(t, "2022-01-01T00:00", "2022-01-03T12:00") == [
        "2022-01-01T09:05:00Z",
        "2022-01-02T09:05:00Z",
        "2022-01-03T09:05:00Z",
    ]
    assert slots_utc(t, "2022-03-26T00:00", "2022-03-28T00:00") == [
        "2022-03-26T09:05:00Z",
        "2022-03-27T08:05:00Z",  # CEST from 2022-03-27
    ]
    assert slots_utc(t, "2022-10-29T00:00", "2022-10-31T00:00") == [
        "2022-10-29T08:05:00Z",
        "2022-10-30T09:05:00Z",  # CET again
    ]
    assert utc(t.next_after(z("2022-12-30T09:05"))) is None  # end_date is 2022-12-31 00:00
    assert utc(t.latest_at_or_before(z("2023-06-01T00:00"))) == "2022-12-30T09:05:00Z"
    assert t.latest_at_or_before(z("2021-12-31T00:00")) is None
    assert len(list(t.slots(0, z("2030-01-01T00:00")))) == 364


def test_end_date_is_inclusive_and_start_date_slot_fires() -> None:
    t = cron("0 * * * *", "UTC", start_date="2022-01-01 10:00", end_date="2022-01-01 12:00")
    assert slots_utc(t, "2022-01-01T00:00", "2022-01-02T00:00") == [
        "2022-01-01T10:00:00Z",
        "2022-01-01T11:00:00Z",
        "2022-01-01T12:00:00Z",
    ]
    assert utc(t.latest_at_or_before(z("2022-01-01T10:00"))) == "2022-01-01T10:00:00Z"
    assert t.latest_at_or_before(z("2022-01-01T09:59")) is None


@pytest.mark.parametrize(
    ("preset", "after", "expected"),
    [
        ("@hourly", "2022-03-01T10:05", "2022-03-01T11:00:00Z"),
        ("@daily", "2022-03-01T10:05", "2022-03-02T00:00:00Z"),
        ("@midnight", "2022-03-01T10:05", "2022-03-02T00:00:00Z"),
        ("@weekly", "2022-03-01T10:05", "2022-03-06T00:00:00Z"),  # Sunday
        ("@monthly", "2022-03-01T10:05", "2022-04-01T00:00:00Z"),
        ("@yearly", "2022-03-01T10:05", "2023-01-01T00:00:00Z"),
    ],
)
def test_presets(preset: str, after: str, expected: str) -> None:
    assert utc(cron(preset).next_after(z(after))) == expected


def test_daily_preset_in_new_york_follows_local_midnight() -> None:
    t = cron("@daily", NEW_YORK)
    # 2022-03-13: EST -> EDT at 02:00 local
    assert slots_utc(t, "2022-03-12T00:00", "2022-03-15T00:00") == [
        "2022-03-12T05:00:00Z",
        "2022-03-13T05:00:00Z",
        "2022-03-14T04:00:00Z",
    ]


def test_every_minutes_is_absolute_across_dst() -> None:
    t = every("30m", "2022-03-27 00:00", PARIS)
    got = slots_utc(t, "2022-03-26T22:00", "2022-03-27T02:00")
    assert got == [
        "2022-03-26T23:00:00Z",  # start_date: 00:00 CET
        "2022-03-26T23:30:00Z",
        "2022-03-27T00:00:00Z",
        "2022-03-27T00:30:00Z",
        "2022-03-27T01:00:00Z",  # 03:00 CEST: thirty minutes after 01:30 CET
        "2022-03-27T01:30:00Z",
        "2022-03-27T02:00:00Z",
    ]
    # the first slot is the start itself; arithmetic, not iteration, far away
    assert utc(t.next_after(z("2022-03-26T00:00"))) == "2022-03-26T23:00:00Z"
    far = z("2122-03-27T00:10")
    assert t.next_after(far) == pytest.approx(z("2122-03-27T00:30"))
    assert t.latest_at_or_before(far) == pytest.approx(z("2122-03-27T00:00"))


def test_every_day_keeps_the_local_time_across_dst() -> None:
    t = every("1d", "2022-03-25 10:00", PARIS)
    local = [format_slot(s, PARIS) for s in t.slots(0, z("2022-03-29T12:00"))]
    assert local == [
        "2022-03-25T10:00:00+01:00",
        "2022-03-26T10:00:00+01:00",
        "2022-03-27T10:00:00+02:00",
        "2022-03-28T10:00:00+02:00",
        "2022-03-29T10:00:00+02:00",
    ]
    autumn = [format_slot(s, PARIS) for s in t.slots(z("2022-10-29T00:00"), z("2022-10-31T23:00"))]
    assert autumn == [
        "2022-10-29T10:00:00+02:00",
        "2022-10-30T10:00:00+01:00",
        "2022-10-31T10:00:00+01:00",
    ]
    weekly = every("2w", "2022-03-20 10:00", NEW_YORK)
    assert [format_slot(s, NEW_YORK) for s in weekly.slots(0, z("2022-04-20T00:00"))] == [
        "2022-03-20T10:00:00-04:00",
        "2022-04-03T10:00:00-04:00",
        "2022-04-17T10:00:00-04:00",
    ]


def test_every_day_starting_in_a_gap_keeps_its_wall_clock_on_other_days() -> None:
    t = every("1d", "2022-03-27 02:30", PARIS)
    local = [format_slot(s, PARIS) for s in t.slots(0, z("2022-03-29T12:00"))]
    assert local == [
        "2022-03-27T03:00:00+02:00",  # 02:30 does not exist that day: the gap's end
        "2022-03-28T02:30:00+02:00",
        "2022-03-29T02:30:00+02:00",
    ]


def test_cron_in_the_spring_gap_fires_once_at_the_gap_end() -> None:
    t = cron("30 2 * * *", PARIS)
    assert slots_utc(t, "2022-03-26T12:00", "2022-03-28T12:00") == [
        "2022-03-27T01:00:00Z",  # 03:00 CEST, the first instant after the gap
        "2022-03-28T00:30:00Z",
    ]
    assert format_slot(z("2022-03-27T01:00"), PARIS) == "2022-03-27T03:00:00+02:00"


def test_cron_in_the_autumn_fold_fires_once_at_the_first_pass() -> None:
    t = cron("30 2 * * *", PARIS)
    assert slots_utc(t, "2022-10-29T12:00", "2022-10-31T12:00") == [
        "2022-10-30T00:30:00Z",  # 02:30 CEST, not 02:30 CET an hour later
        "2022-10-31T01:30:00Z",
    ]
    assert format_slot(z("2022-10-30T00:30"), PARIS) == "2022-10-30T02:30:00+02:00"
    # from inside the second pass, the next slot is the next day's
    assert utc(t.next_after(z("2022-10-30T01:10"))) == "2022-10-31T01:30:00Z"
    assert utc(t.latest_at_or_before(z("2022-10-30T01:45"))) == "2022-10-30T00:30:00Z"


def test_several_slots_in_the_gap_collapse_into_one() -> None:
    t = cron("*/15 2 * * *", PARIS)
    assert slots_utc(t, "2022-03-26T12:00", "2022-03-27T12:00") == ["2022-03-27T01:00:00Z"]
    # in the fold the hour happens twice, each slot fires once
    assert slots_utc(t, "2022-10-29T12:00", "2022-10-30T12:00") == [
        "2022-10-30T00:00:00Z",
        "2022-10-30T00:15:00Z",
        "2022-10-30T00:30:00Z",
        "2022-10-30T00:45:00Z",
    ]
    minutely = cron("* 2 * * *", PARIS)
    assert utc(minutely.next_after(z("2022-03-27T00:59"))) == "2022-03-27T01:00:00Z"
    assert utc(minutely.next_after(z("2022-03-27T01:00"))) == "2022-03-28T00:00:00Z"


def test_new_york_gap_and_fold() -> None:
    t = cron("30 2 * * *", NEW_YORK)
    # 2022-03-13 02:00 EST -> 03:00 EDT; 2022-11-06 02:00 EDT -> 01:00 EST
    assert slots_utc(t, "2022-03-12T12:00", "2022-03-14T12:00") == [
        "2022-03-13T07:00:00Z",  # 03:00 EDT
        "2022-03-14T06:30:00Z",
    ]
    fold = cron("30 1 * * *", NEW_YORK)
    assert slots_utc(fold, "2022-11-05T12:00", "2022-11-07T12:00") == [
        "2022-11-06T05:30:00Z",  # 01:30 EDT, the first pass
        "2022-11-07T06:30:00Z",
    ]


def test_named_and_special_fields() -> None:
    named = cron("5 10 * * mon", PARIS)
    plain = cron("5 10 * * 1", PARIS)
    start, end = z("2022-03-01T00:00"), z("2022-11-30T00:00")
    assert list(named.slots(start, end)) == list(plain.slots(start, end))
    assert [utc(s) for s in cron("0 12 1 jan-mar,Dec *").slots(0, z("2022-12-31T00:00"))][-4:] == [
        "2022-01-01T12:00:00Z",
        "2022-02-01T12:00:00Z",
        "2022-03-01T12:00:00Z",
        "2022-12-01T12:00:00Z",
    ]
    last_day = cron("0 2 L * *", PARIS)  # through croniter
    assert [format_slot(s, PARIS) for s in last_day.slots(z("2022-02-01T00:00"), end)][:3] == [
        "2022-02-28T02:00:00+01:00",
        "2022-03-31T02:00:00+02:00",
        "2022-04-30T02:00:00+02:00",
    ]
    assert utc(last_day.latest_at_or_before(z("2022-03-31T00:00"))) == "2022-03-31T00:00:00Z"


def test_day_of_month_and_day_of_week_match_either_when_both_given() -> None:
    # croniter's (and vixie cron's) rule: either may match when both are restricted
    t = cron("0 0 13 * 5")
    may = t.slots(z("2022-05-01T00:00"), z("2022-05-31T00:00"))
    got = [datetime.fromtimestamp(s, UTC) for s in may]
    assert [d.day for d in got] == [6, 13, 20, 27]  # the Fridays, and the 13th (a Friday)
    only_fridays = cron("0 0 * * 5")
    assert [
        datetime.fromtimestamp(s, UTC).day
        for s in only_fridays.slots(z("2022-06-01T00:00"), z("2022-06-30T00:00"))
    ] == [3, 10, 17, 24]


def test_format_and_parse_slot() -> None:
    s = z("2022-03-01T09:05")
    assert format_slot(s, PARIS) == "2022-03-01T10:05:00+01:00"
    assert format_slot(s, "UTC") == "2022-03-01T09:05:00+00:00"
    assert format_slot(s, "Asia/Kolkata") == "2022-03-01T14:35:00+05:30"
    assert parse_slot("2022-03-01T10:05:00+01:00") == s


def test_parse_period_and_dates() -> None:
    assert parse_period("30s") == Period(30, "s")
    assert parse_period("30m").seconds == 1800
    assert parse_period("1h").seconds == 3600
    assert parse_period("2d").days == 2
    assert parse_period("1w").days == 7
    assert parse_period("1h").days == 0
    paris = ZoneInfo(PARIS)
    assert parse_local_date("2022-03-01", paris).timestamp() == z("2022-02-28T23:00")
    assert parse_local_date("2022-03-01 10:05", paris).timestamp() == z("2022-03-01T09:05")
    assert parse_local_date("2022-03-01T10:05:30", paris).timestamp() == z("2022-03-01T09:05:30")
    # in the gap: the instant the gap ends; in the fold: the first pass
    assert parse_local_date("2022-03-27 02:30", paris).timestamp() == z("2022-03-27T01:00")
    assert parse_local_date("2022-10-30 02:30", paris).timestamp() == z("2022-10-30T00:30")
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # a 30-minute DST change
    assert local_to_epoch(datetime(2022, 10, 2, 2, 10), lord_howe) == z("2022-10-01T15:30")


# -- bad schedules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            ScheduleSpec(cron="61 * * * *"),
            "not a cron expression: '61 * * * *' (five fields: minute hour day-of-month "
            "month day-of-week, or @hourly @daily @weekly @monthly)",
        ),
        (ScheduleSpec(cron="* * * *"), "not a cron expression: '* * * *'"),
        (ScheduleSpec(cron="* * * * * *"), "not a cron expression: '* * * * * *'"),
        (ScheduleSpec(cron="@fortnightly"), "not a cron expression: '@fortnightly'"),
        (ScheduleSpec(cron="0 0 30 2 *"), "never fires"),
        (
            ScheduleSpec(cron="@daily", timezone="Europe/Pari"),
            "unknown timezone 'Europe/Pari' (did you mean 'Europe/Paris'?)",
        ),
        (
            ScheduleSpec(cron="@daily", timezone="europe/paris"),
            "did you mean 'Europe/Paris'?",
        ),
        (ScheduleSpec(cron="@daily", timezone="Mars/Olympus"), "unknown timezone 'Mars/Olympus'"),
        (ScheduleSpec(cron="@daily", start_date="2022-13-01"), "not a date: '2022-13-01'"),
        (ScheduleSpec(cron="@daily", start_date="yesterday"), "for start_date"),
        (ScheduleSpec(cron="@daily", end_date="2022-02-30"), "for end_date"),
        (ScheduleSpec(cron="@daily", start_date="2022-01-01 25:00"), "not a date"),
        (
            ScheduleSpec(cron="@daily", start_date="2022-02-01", end_date="2022-01-01"),
            "end_date is not after start_date",
        ),
        (
            ScheduleSpec(cron="@daily", start_date="2022-02-01", end_date="2022-02-01"),
            "end_date is not after start_date",
        ),
        (ScheduleSpec(every="1h"), "every needs a start_date"),
        (ScheduleSpec(every="1y", start_date="2022-01-01"), "not a period: '1y'"),
        (ScheduleSpec(every="0m", start_date="2022-01-01"), "not a period: '0m'"),
        (ScheduleSpec(every="1.5h", start_date="2022-01-01"), "not a period"),
        (ScheduleSpec(), "needs a cron expression"),
        (ScheduleSpec(cron="@daily", every="1h", start_date="2022-01-01"), "not both"),
    ],
)
def test_bad_schedules_say_what_and_how(spec: ScheduleSpec, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        make_trigger(spec)
    assert message in str(info.value)
    assert isinstance(info.value, DefinitionError)


def test_yaml_dates_are_accepted() -> None:
    # PyYAML reads an unquoted 2022-01-01 as a date object
    spec = ScheduleSpec(every="1d", start_date=datetime(2022, 1, 1).date(), timezone=PARIS)  # type: ignore[arg-type]
    assert utc(make_trigger(spec).next_after(0)) == "2021-12-31T23:00:00Z"


# -- catch-up ---------------------------------------------------------------------------


def test_brand_new_cron_job_misses_nothing_before_its_creation() -> None:
    t = cron("0 * * * *")
    created = z("2022-03-01T10:20")
    assert due_slots(t, None, created, z("2022-03-01T10:30"), "latest") == Due((), 0)
    assert due_slots(t, None, created, z("2022-03-01T11:00"), "latest") == Due(
        (z("2022-03-01T11:00"),), 0
    )
    # a slot exactly at creation is not before it
    at = z("2022-03-01T10:00")
    assert due_slots(t, None, at, at, "none") == Due((at,), 0)


def test_brand_new_every_job_with_a_past_start_fires_its_latest_slot_at_once() -> None:
    t = every("1h", "2022-01-01 00:00")
    created = now = z("2022-03-01T10:20")
    for catchup in ("latest", "all", "none"):
        assert due_slots(t, None, created, now, catchup) == Due((z("2022-03-01T10:00"),), 0)
    future = every("1h", "2030-01-01 00:00")
    assert due_slots(future, None, created, now, "latest") == Due((), 0)
    ended = every("1h", "2022-01-01 00:00", end_date="2022-02-01 00:00")
    assert due_slots(ended, None, created, now, "latest") == Due((), 0)


def test_missed_slots_after_downtime_by_policy() -> None:
    t = cron("*/10 * * * *")
    last = z("2022-03-01T10:00")
    now = z("2022-03-01T10:50:30")  # 10:10 .. 10:50 missed: five slots
    missed = tuple(z(f"2022-03-01T10:{m}0") for m in range(1, 6))
    assert due_slots(t, last, 0, now, "latest") == Due((missed[-1],), 4)
    assert due_slots(t, last, 0, now, "all") == Due(missed, 0)  # oldest first
    # none: 10:50 is 30 s late, within min(60 s, 5 min): it fires
    assert due_slots(t, last, 0, now, "none") == Due((missed[-1],), 4)
    late = z("2022-03-01T10:51:01")
    assert due_slots(t, last, 0, late, "none") == Due((), 5)
    # nothing new
    assert due_slots(t, missed[-1], 0, late, "latest") == Due((), 0)


def test_catchup_none_tolerance_is_half_the_gap_for_close_slots() -> None:
    t = every("30s", "2022-01-01 00:00")
    last = z("2022-03-01T10:00:00")
    assert due_slots(t, last, 0, z("2022-03-01T10:00:45"), "none") == Due(
        (z("2022-03-01T10:00:30"),), 0
    )
    assert due_slots(t, last, 0, z("2022-03-01T10:00:46"), "none") == Due((), 1)


def test_catchup_all_is_capped_and_keeps_the_newest() -> None:
    t = cron("* * * * *")
    last = z("2022-03-01T00:00")
    now = z("2022-03-02T00:00")  # 1440 missed minutes
    due = due_slots(t, last, 0, now, "all")
    assert len(due.fire) == CATCHUP_ALL_CAP
    assert due.dropped == 1440 - CATCHUP_ALL_CAP
    assert due.fire[-1] == now
    assert list(due.fire) == sorted(due.fire)
    # absolute periods count by arithmetic: a year of downtime at once
    fast = every("1m", "2022-01-01 00:00")
    year = due_slots(fast, z("2022-01-01T00:00"), 0, z("2023-01-01T00:00"), "all")
    assert len(year.fire) == CATCHUP_ALL_CAP and year.dropped == 365 * 1440 - CATCHUP_ALL_CAP
    assert year.fire[-1] == z("2023-01-01T00:00") and year.fire[0] == z("2022-12-31T07:21")
    latest = due_slots(fast, z("2022-01-01T00:00"), 0, z("2023-01-01T00:00"), "latest")
    assert latest == Due((z("2023-01-01T00:00"),), 365 * 1440 - 1)


def test_catchup_stops_at_the_end_date() -> None:
    t = cron("0 * * * *", end_date="2022-03-01 12:00")
    due = due_slots(t, z("2022-03-01T09:00"), 0, z("2022-03-05T00:00"), "all")
    assert due == Due((z("2022-03-01T10:00"), z("2022-03-01T11:00"), z("2022-03-01T12:00")), 0)


# -- properties against a brute-force reference ----------------------------------------

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Kolkata",  # no DST, +05:30
    "America/Sao_Paulo",  # DST until 2019
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
]


@functools.cache
def transitions(zone: str) -> tuple[float, ...]:
    """The instants the zone's offset changes at, 2017-2023 (a day-by-day scan, then
    bisection to the second); a zone without any gets a few ordinary instants."""
    tz = ZoneInfo(zone)
    t0 = z("2017-01-01T00:00")
    found = []
    offset = datetime.fromtimestamp(t0, tz).utcoffset()
    for day in range(1, 7 * 366):
        t = t0 + day * 86400
        now = datetime.fromtimestamp(t, tz).utcoffset()
        if now != offset:
            lo, hi = int(t - 86400), int(t)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(float(hi))
            offset = now
    return tuple(found) or (z("2019-03-10T00:00"), z("2022-10-30T12:00"))


def _field(values: range, draw: st.DrawFn, allow_star: bool, full_ok: bool) -> tuple[str, set[int]]:
    """A cron field and the set of values it matches."""
    lo, hi = values.start, values.stop - 1
    kind = draw(st.sampled_from(["star", "step", "list", "range", "range_step"]))
    if kind == "star" and allow_star:
        return "*", set(values)
    if kind == "step" and full_ok:
        k = draw(st.integers(1, max(1, (hi - lo) // 2)))
        return f"*/{k}", set(range(lo, hi + 1, k))
    if kind in ("range", "range_step"):
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(a, hi))
        k = draw(st.integers(1, 5)) if kind == "range_step" else 1
        got = set(range(a, b + 1, k))
        if full_ok or got != set(values):
            return (f"{a}-{b}/{k}" if kind == "range_step" else f"{a}-{b}"), got
    items = draw(st.lists(st.integers(lo, hi), min_size=1, max_size=4, unique=True))
    if not full_ok and set(items) == set(values):
        items = items[:-1]
    return ",".join(map(str, sorted(items))), set(items)


@st.composite
def cron_fields(draw: st.DrawFn) -> tuple[str, list[set[int]], bool, bool]:
    """(expression, matched sets, day-of-month restricted, day-of-week restricted).

    Hours lean towards the small hours, where DST changes happen. A restricted day field
    never covers every value (croniter tells "*" from "1-31" and so do we, but a
    reference that guesses between them would test nothing)."""
    minute, minutes = _field(range(60), draw, True, True)
    if draw(st.booleans()):
        hour, hours = _field(range(24), draw, True, True)
    else:
        hours = set(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True)))
        hour = ",".join(map(str, sorted(hours)))
    dom, doms = _field(range(1, 32), draw, True, False) if draw(st.booleans()) else ("*", set())
    month = "*"
    dow, dows = _field(range(7), draw, True, False) if draw(st.booleans()) else ("*", set())
    expr = f"{minute} {hour} {dom} {month} {dow}"
    return expr, [minutes, hours, doms, dows], dom != "*", dow != "*"


def _matches(local: datetime, sets: list[set[int]], dom_r: bool, dow_r: bool) -> bool:
    minutes, hours, doms, dows = sets
    if local.minute not in minutes or local.hour not in hours:
        return False
    dom_ok = local.day in doms
    dow_ok = (local.weekday() + 1) % 7 in dows
    if dom_r and dow_r:
        return dom_ok or dow_ok
    return (dom_ok or not dom_r) and (dow_ok or not dow_r)


def _reference_instant(local: datetime, tz: ZoneInfo) -> float:
    """When a local minute fires, found by walking instants (not by the code under test):
    its first pass if it exists, else the first instant whose local time is past it."""
    first = local.replace(tzinfo=tz, fold=0)
    t = first.timestamp()
    if datetime.fromtimestamp(t, tz).replace(tzinfo=None) == local:
        return t
    x = local.replace(tzinfo=tz, fold=1).timestamp() // 60 * 60  # before the gap
    while datetime.fromtimestamp(x, tz).replace(tzinfo=None) <= local:
        x += 60
    # back to the exact second the gap ends at
    while datetime.fromtimestamp(x - 1, tz).replace(tzinfo=None) > local:
        x -= 1
    return x


def reference_slots(
    sets: list[set[int]], dom_r: bool, dow_r: bool, tz: ZoneInfo, after: float, until: float
) -> list[float]:
    local = datetime.fromtimestamp(after, tz).replace(tzinfo=None, second=0, microsecond=0)
    local -= timedelta(hours=4)
    stop = datetime.fromtimestamp(until, tz).replace(tzinfo=None) + timedelta(hours=4)
    found: set[float] = set()
    while local <= stop:
        if _matches(local, sets, dom_r, dow_r):
            t = _reference_instant(local, tz)
            if after < t <= until:
                found.add(t)
        local += timedelta(minutes=1)
    return sorted(found)


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, float, float]:
    """A zone and a window of up to three days around one of its offset changes."""
    zone = draw(st.sampled_from(ZONES))
    near = draw(st.sampled_from(transitions(zone)))
    after = near - draw(st.integers(0, 36 * 3600))
    until = after + draw(st.integers(3600, 3 * 86400))
    return zone, float(after), float(until)


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cron_fields(), windows(), st.data())
def test_cron_slots_match_a_minute_by_minute_reference(
    fields: tuple[str, list[set[int]], bool, bool],
    window: tuple[str, float, float],
    data: st.DataObject,
) -> None:
    expr, sets, dom_r, dow_r = fields
    zone, after, until = window
    tz = ZoneInfo(zone)
    dates: dict[str, str] = {}
    expected = reference_slots(sets, dom_r, dow_r, tz, after, until)
    # sometimes a start_date and/or an end_date inside the window (local, to the minute)
    for key in ("start_date", "end_date"):
        if data.draw(st.booleans(), label=f"has {key}"):
            at = data.draw(st.integers(int(after), int(until)), label=key) // 60 * 60
            dates[key] = datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M")
    start = (
        local_to_epoch(datetime.fromisoformat(dates["start_date"]), tz)
        if "start_date" in dates
        else None
    )
    end = (
        local_to_epoch(datetime.fromisoformat(dates["end_date"]), tz)
        if "end_date" in dates
        else None
    )
    if start is not None and end is not None and end <= start:
        del dates["end_date"]
        end = None
    expected = [s for s in expected if (start is None or s >= start) and (end is None or s <= end)]
    trigger = cron(expr, zone, **dates)
    got = list(trigger.slots(after, until))
    assert all(a < b for a, b in itertools.pairwise(got)), "slots strictly increase (none doubled)"
    assert got == expected
    # next_after is the first of the slots, latest_at_or_before the last
    first = trigger.next_after(after)
    if got:
        assert first == got[0]
        assert trigger.latest_at_or_before(until) == got[-1]
        assert trigger.latest_at_or_before(got[0]) == got[0]
        assert trigger.next_after(got[-1] - 0.5) == got[-1]
    else:
        assert first is None or first > until
        assert (
            trigger.latest_at_or_before(until) is None
            or (trigger.latest_at_or_before(until) or 0) <= after
        )
    for s, following in itertools.pairwise(got):
        assert trigger.next_after(s) == following
        assert trigger.latest_at_or_before(following - 0.5) == s


@PROPERTY
@given(
    st.sampled_from(ZONES),
    st.integers(1, 48),
    st.sampled_from(["m", "h", "d", "w"]),
    st.integers(0, 3 * 86400),
    st.integers(0, 400 * 86400),
    st.integers(1, 40 * 86400),
)
def test_every_slots_are_regular(
    zone: str, count: int, unit: str, start_shift: int, offset: int, span: int
) -> None:
    tz = ZoneInfo(zone)
    base = datetime(2022, 1, 1) + timedelta(seconds=start_shift)
    start_text = base.strftime("%Y-%m-%d %H:%M")
    trigger = every(f"{count}{unit}", start_text, zone)
    start = local_to_epoch(datetime.fromisoformat(start_text), tz)
    after = start + offset - 1
    got = list(trigger.slots(after, after + span))
    assert all(a < b for a, b in itertools.pairwise(got))
    if got:
        assert trigger.next_after(after) == got[0]
        assert trigger.latest_at_or_before(got[-1]) == got[-1]
    if unit in "mh":
        step = count * (60 if unit == "m" else 3600)
        assert all((s - start) % step == 0 for s in got)
        assert all(b - a == step for a, b in itertools.pairwise(got))
        assert got or trigger.next_after(after)  # never ends without an end_date
        assert len(got) == span // step or len(got) == span // step + 1
    else:
        # each slot is the local wall-clock time of the start, on the right day
        days = count * (7 if unit == "w" else 1)
        wall = datetime.fromisoformat(start_text)
        for s in got:
            local = datetime.fromtimestamp(s, tz).replace(tzinfo=None)
            k = round((local - wall) / timedelta(days=days))
            assert s == local_to_epoch(wall + timedelta(days=k * days), tz)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True),
    st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True),
    st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True),
    windows(),
)
def test_croniter_path_agrees_with_the_plain_path(
    minutes: list[int], hours: list[int], dows: list[int], window: tuple[str, float, float]
) -> None:
    """Expressions with L, W or # go through croniter: on plain ones it agrees with us;
    day names are read as their numbers."""
    names = ["sun", "mon", "tue", "wed", "thu", "fri", "Sat"]
    head = f"{','.join(map(str, minutes))} {','.join(map(str, hours))} * *"
    zone, after, until = window
    plain = cron(f"{head} {','.join(map(str, dows))}", zone)
    named = cron(f"{head} {','.join(names[d] for d in dows)}", zone)
    through_croniter = cron(f"{head} {','.join(map(str, dows))}", zone)
    assert through_croniter.rule is not None and named.rule is not None
    assert named.rule.fast
    through_croniter.rule.fast = False
    got = list(plain.slots(after, until))
    assert list(named.slots(after, until)) == got
    assert list(through_croniter.slots(after, until)) == got
    latest = plain.latest_at_or_before(until)
    assert through_croniter.latest_at_or_before(until) == latest


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_fields(), windows(), st.integers(0, 5 * 86400), st.data())
def test_catchup_counts_every_missed_slot(
    fields: tuple[str, list[set[int]], bool, bool],
    window: tuple[str, float, float],
    extra: int,
    data: st.DataObject,
) -> None:
    """The day-by-day count of missed slots equals walking them one by one."""
    expr, _sets, _dom_r, _dow_r = fields
    zone, after, until = window
    until += extra
    trigger = cron(expr, zone)
    walked = list(trigger.slots(after, until))
    catchup = data.draw(st.sampled_from(["latest", "all"]))
    due = due_slots(trigger, after, 0, until, catchup)
    assert due.dropped + len(due.fire) == len(walked)
    keep = 1 if catchup == "latest" else CATCHUP_ALL_CAP
    assert list(due.fire) == walked[-keep:]
