"""When a schedule fires: pure functions of (schedule, last slot, now).

A slot is an instant (epoch seconds, UTC) a schedule fires at. Cron expressions are
matched on the LOCAL wall-clock time of the schedule's timezone, and so are ``every`` periods
in days or weeks; periods in seconds, minutes or hours are absolute durations counted
from ``start_date``. Across DST:

- a local time that does not exist (spring forward) fires once, at the first instant
  after the gap; several slots in one gap collapse into that one instant;
- a local time that happens twice (fall back) fires once, at its first occurrence.

Dates (``start_date``, ``end_date``) are local: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM`` or
``YYYY-MM-DD HH:MM:SS`` (a ``T`` separator works too). A date alone means 00:00 of that
day, as Airflow reads it, for ``end_date`` too; ``end_date`` is inclusive (a slot exactly
at it fires). A start or end date in a DST gap means the instant the gap ends.

Cron expressions are matched on naive local wall-clock times (croniter misplaces slots
with timezone-aware datetimes around DST): plain numeric ones by :class:`_CronRule`
itself, in microseconds; others (L, W, #) by croniter, which sees naive times
disguised as UTC, where no DST exists. Each matching local time is mapped to its instant
by :func:`local_to_epoch`. That mapping never goes backward as local time goes forward
(the gap collapses, a repeated hour keeps its first occurrence), which is what lets the
searches below start from the local time of an instant and skip what maps at or before
it. Slots are whole seconds.

No clock, no store, no I/O: the scheduler passes ``now`` in.
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from dagmill.errors import DefinitionError
from dagmill.model.schedules import PRESETS, ScheduleSpec

__all__ = [
    "CATCHUP_ALL_CAP",
    "Due",
    "Period",
    "ScheduleError",
    "Trigger",
    "due_slots",
    "format_slot",
    "local_to_epoch",
    "make_trigger",
    "parse_local_date",
    "parse_period",
    "parse_slot",
]

# catchup "all" fires at most this many missed slots at once (the newest ones)
CATCHUP_ALL_CAP = 1000
# catchup "none" still fires a slot this late at most (or half the gap to the next slot)
NONE_TOLERANCE = 60.0

_CRON_HELP = (
    "five fields: minute hour day-of-month month day-of-week, or @hourly @daily @weekly @monthly"
)
_DATE_HELP = "YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS, local to the timezone"
_PERIOD_RE = re.compile(r"\s*(\d+)\s*([smhdw])\s*", re.IGNORECASE)
_DATE_RE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST_PERIOD = 36500 * 86400


class ScheduleError(DefinitionError):
    """A schedule is malformed: bad cron expression, period, timezone or date."""


@dataclass(frozen=True, slots=True)
class Period:
    """An ``every`` period: ``count`` times ``unit`` (s, m, h: absolute; d, w: calendar)."""

    count: int
    unit: str

    @property
    def seconds(self) -> int:
        """Length in seconds (nominal for d and w, whose days may be 23 or 25 h long)."""
        return self.count * _UNIT_SECONDS[self.unit]

    @property
    def days(self) -> int:
        """Length in calendar days (d, w), or 0 for an absolute period (s, m, h)."""
        return self.count * {"d": 1, "w": 7}.get(self.unit, 0)


@dataclass(frozen=True, slots=True)
class Due:
    """What to do now: ``fire`` these slots (oldest first); ``dropped`` missed slots are
    neither run nor recorded as runs (the caller logs how many)."""

    fire: tuple[float, ...]
    dropped: int


@dataclass(frozen=True)
class Trigger:
    """A validated schedule (build it with :func:`make_trigger`): the parsed rule, the
    timezone, and start/end as epoch seconds (None when open)."""

    spec: ScheduleSpec
    tz: ZoneInfo = field(repr=False)
    start: float | None
    end: float | None
    cron: str | None = None  # five fields, presets resolved
    period: Period | None = None
    rule: _CronRule | None = field(default=None, repr=False, compare=False)
    start_local: datetime | None = field(default=None, repr=False)  # naive wall-clock

    def next_after(self, t: float) -> float | None:
        """The first slot strictly after ``t``, or None when there is none (past end_date)."""
        return next(self._forward(t), None)

    def slots(self, after: float, until: float) -> Iterator[float]:
        """The slots in ``(after, until]``, increasing."""
        for s in self._forward(after):
            if s > until:
                return
            yield s

    def latest_at_or_before(self, t: float) -> float | None:
        """The last slot at or before ``t`` (None if the schedule has not fired by then)."""
        t = math.floor(t)  # slots are whole seconds
        if self.end is not None and t > self.end:
            t = self.end
        if self.start is not None and t < self.start:
            return None
        s = self._cron_latest(t) if self.rule is not None else self._every_latest(t)
        if s is None or (self.start is not None and s < self.start):
            return None
        return s

    # -- forward search --------------------------------------------------------------

    def _forward(self, after: float) -> Iterator[float]:
        """Slots strictly after ``after`` (and from start_date), increasing, up to end_date."""
        # slots are whole seconds: a slot is after `after` iff it is after its floor (and
        # the local time of the floor is exact, where a float a hair below it is not)
        after = math.floor(after)
        if self.start is not None and after < self.start:
            after = self.start - 1  # keeps a slot exactly at start_date
        source = self._cron_forward(after) if self.rule is not None else self._every_forward(after)
        try:
            for s in source:
                if self.end is not None and s > self.end:
                    return
                yield s
        except OverflowError:  # the next slot is past year 9999: there is none
            return

    def _cron_forward(self, after: float) -> Iterator[float]:
        rule = self.rule
        assert rule is not None
        # every local time <= local(after) maps at or before `after`; later ones may too (a
        # repeated hour, or a gap), and are skipped by the `s > last` test, which also
        # collapses the slots of one gap into one
        local = _local_naive(after, self.tz)
        last = after
        while (found := rule.next_after(local)) is not None:
            local = found
            s = local_to_epoch(local, self.tz)
            if s > last:
                yield s
                last = s

    def _every_forward(self, after: float) -> Iterator[float]:
        period = self.period
        assert period is not None and self.start is not None
        if not period.days:
            step = period.seconds
            k = max(0, math.floor((after - self.start) / step) + 1)
            while self.start + k * step <= after:  # float rounding
                k += 1
            while k > 0 and self.start + (k - 1) * step > after:
                k -= 1
            while True:
                yield self.start + k * step
                k += 1
        assert self.start_local is not None
        k = self._every_days_index(after)
        last = after
        while True:
            s = self._every_days_slot(k)
            if s > last:
                yield s
                last = s
            k += 1

    def _every_days_index(self, t: float) -> int:
        """An index k >= 0 whose slot is at or before ``t`` (or 0): a day before it, in local
        time, so no DST shift can put it after ``t``."""
        assert self.period is not None and self.start_local is not None
        elapsed = _local_naive(t, self.tz) - self.start_local
        return max(0, elapsed.days // self.period.days - 1)

    def _every_days_slot(self, k: int) -> float:
        assert self.period is not None and self.start_local is not None
        return local_to_epoch(self.start_local + timedelta(days=k * self.period.days), self.tz)

    # -- backward search -------------------------------------------------------------

    def _cron_latest(self, t: float) -> float | None:
        rule = self.rule
        assert rule is not None
        aware = datetime.fromtimestamp(t, self.tz)
        local: datetime | None = aware.replace(tzinfo=None, fold=0)
        assert local is not None
        if aware.fold:
            # t is in the second pass of a repeated hour: local times after its wall-clock
            # time, up to the end of that hour, fired at their first pass, before t
            local += _fold_length(local, self.tz)
        local = rule.at_or_before(local)
        while local is not None:
            s = local_to_epoch(local, self.tz)
            if s <= t:
                return s
            local = rule.at_or_before(local - _MINUTE)
        return None

    def _every_latest(self, t: float) -> float | None:
        period = self.period
        assert period is not None and self.start is not None
        if t < self.start:
            return None
        if not period.days:
            step = period.seconds
            k = math.floor((t - self.start) / step)
            while self.start + k * step > t:  # float rounding
                k -= 1
            while self.start + (k + 1) * step <= t:
                k += 1
            return self.start + k * step
        k = self._every_days_index(t)
        best: float | None = None
        while (s := self._every_days_slot(k)) <= t:
            best = s
            k += 1
        return best


# -- parsing and validation -------------------------------------------------------------


def make_trigger(spec: ScheduleSpec) -> Trigger:
    """Validate ``spec`` and build its trigger; raises :class:`ScheduleError` saying what is
    wrong and how to fix it."""
    tz = _zone(spec.timezone)
    if spec.cron is not None and spec.every is not None:
        raise ScheduleError(
            f"a schedule has either a cron expression or every, not both "
            f"(got {spec.cron!r} and every {spec.every!r}): keep one"
        )
    if spec.cron is None and spec.every is None:
        raise ScheduleError(
            "a schedule needs a cron expression (schedule_interval, e.g. '5 10 * * *' or "
            "@daily) or every (e.g. every: 1h with a start_date)"
        )
    start_local = _date_field(spec.start_date, "start_date", tz)
    end_local = _date_field(spec.end_date, "end_date", tz)
    start = None if start_local is None else start_local.timestamp()
    end = None if end_local is None else end_local.timestamp()
    if start is not None and end is not None and end <= start:
        raise ScheduleError(
            f"end_date is not after start_date (start_date {spec.start_date}, "
            f"end_date {spec.end_date}): move end_date later or remove it"
        )
    if spec.every is not None:
        period = parse_period(spec.every)
        if start_local is None:
            raise ScheduleError(
                f"every needs a start_date (every {spec.every} counts from it): add "
                "start_date: YYYY-MM-DD[ HH:MM[:SS]], local to the timezone"
            )
        # the wall-clock time as written: a start in a DST gap keeps its 02:30 on the
        # other days
        naive = _parse_naive(str(spec.start_date))
        assert naive is not None
        return Trigger(spec, tz, start, end, period=period, start_local=naive)
    rule = _cron(str(spec.cron))
    return Trigger(spec, tz, start, end, cron=rule.expr, rule=rule)


def _cron(text: str) -> _CronRule:
    expr = text.strip()
    expr = PRESETS.get(expr.lower(), expr)
    bad = ScheduleError(f"not a cron expression: {text!r} ({_CRON_HELP})")
    never = ScheduleError(
        f"cron expression {text!r} never fires (no such day, e.g. February 30): "
        "fix its day-of-month or month"
    )
    if len(expr.split()) != 5:
        raise bad
    try:
        rule = _CronRule(expr)
    except ValueError as exc:
        raise bad from exc
    if rule.fast:
        if rule.next_after(datetime(2000, 1, 1)) is None:
            raise never
        return rule
    try:
        croniter(expr, 0.0).get_next(float)
    except CroniterBadDateError as exc:
        raise never from exc
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise bad from exc
    return rule


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        pass
    known = sorted(zoneinfo.available_timezones())
    by_lower = {k.lower(): k for k in known}
    guess = by_lower.get(str(name).lower())
    if guess is None:
        close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
        guess = by_lower[close[0]] if close else None
    hint = f"did you mean {guess!r}?" if guess else "an IANA name such as 'Europe/Paris' or 'UTC'"
    raise ScheduleError(f"unknown timezone {name!r} ({hint})")


def _date_field(value: object, key: str, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    # YAML reads an unquoted 2022-01-01 as a date: its str() is the text we accept
    text = str(value)
    try:
        return parse_local_date(text, tz)
    except ScheduleError as exc:
        raise ScheduleError(f"{exc} for {key}") from None


def parse_period(text: str) -> Period:
    """``30s``, ``30m``, ``1h``, ``1d``, ``1w`` -> :class:`Period` (a positive whole count)."""
    m = _PERIOD_RE.fullmatch(str(text))
    if m is None or int(m.group(1)) == 0:
        raise ScheduleError(
            f"not a period: {text!r} (a positive whole number and a unit: 30s, 30m, 1h, 1d, 1w)"
        )
    period = Period(int(m.group(1)), m.group(2).lower())
    if period.seconds > _LONGEST_PERIOD:  # its slots would be past any calendar's year
        raise ScheduleError(f"period {text!r} is over 100 years: give at most 36500d (5214w)")
    return period


def _parse_naive(text: str) -> datetime | None:
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    parts = [int(g) if g is not None else 0 for g in m.groups()]
    try:
        return datetime(*parts)  # type: ignore[arg-type]
    except ValueError:  # 2022-02-30, 25:00
        return None


def parse_local_date(text: str, tz: ZoneInfo) -> datetime:
    """``YYYY-MM-DD[ HH:MM[:SS]]`` (or with ``T``), local to ``tz`` -> an aware datetime at
    the instant it means: a time in a DST gap means the instant the gap ends (its wall-clock
    time is then the end of the gap), a repeated time its first occurrence."""
    naive = _parse_naive(str(text))
    if naive is None:
        raise ScheduleError(f"not a date: {text!r} ({_DATE_HELP})")
    return datetime.fromtimestamp(local_to_epoch(naive, tz), tz)


def local_to_epoch(naive: datetime, tz: ZoneInfo) -> float:
    """The instant a local wall-clock time fires at: its first occurrence if it happens
    twice, the end of the gap if it does not exist."""
    ts0 = naive.replace(tzinfo=tz, fold=0).timestamp()
    ts1 = naive.replace(tzinfo=tz, fold=1).timestamp()
    if ts1 >= ts0:  # exists once (equal) or twice (fold=0 is the first pass)
        return ts0
    # in a gap, fold=1 reads the time with the offset after the change and fold=0 with the
    # one before: the change happened between these two instants
    before = naive.replace(tzinfo=tz, fold=0).utcoffset()
    lo, hi = math.floor(ts1), math.ceil(ts0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return float(hi)


def format_slot(slot: float, tz: str) -> str:
    """ISO 8601 local time with its offset, seconds always shown:
    ``2022-03-01T10:05:00+01:00``."""
    return datetime.fromtimestamp(slot, ZoneInfo(tz)).isoformat(timespec="seconds")


def parse_slot(text: str) -> float:
    """The instant of a slot written by :func:`format_slot`."""
    return datetime.fromisoformat(text).timestamp()


# -- catch-up -------------------------------------------------------------------------


def due_slots(
    trigger: Trigger, last_slot: float | None, created_at: float, now: float, catchup: str
) -> Due:
    """The slots to fire at ``now``, given the last slot already decided (None for a
    brand-new job) and the job's ``catchup`` policy (latest, all, none).

    A brand-new cron job counts slots from its creation (nothing before it is missed); a
    brand-new ``every`` job whose start_date is past fires the latest slot <= now at once
    (unless its end_date was past when it was created).
    When several slots are due: latest fires the newest only; all fires each, oldest first
    (the newest :data:`CATCHUP_ALL_CAP` of them; older ones are dropped, so the last slot
    decided is always the newest); none fires the newest only if it is late by at most
    min(60 s, half the gap to the next slot). Slots not fired are counted in ``dropped``.
    """
    if catchup not in ("latest", "all", "none"):
        raise ValueError(f"catchup must be latest, all or none, got {catchup!r}")
    if last_slot is None:
        if trigger.end is not None and trigger.end < created_at:
            return Due((), 0)  # created after its schedule ended: nothing was missed
        # a slot exactly at the creation instant is not "before" it
        after = math.nextafter(created_at, -math.inf)
        if trigger.period is not None:
            first = trigger.next_after(after)
            if first is None or first > now:
                # no slot since creation yet: an `every` job fires its latest one at once
                latest = trigger.latest_at_or_before(now)
                return Due((latest,), 0) if latest is not None else Due((), 0)
    else:
        after = last_slot
    return _apply_catchup(trigger, after, now, catchup)


def _apply_catchup(trigger: Trigger, after: float, now: float, catchup: str) -> Due:
    keep = 1 if catchup != "all" else CATCHUP_ALL_CAP
    newest: deque[float] = deque(maxlen=keep)
    count = _count_into(trigger, after, now, newest)
    if not newest:
        return Due((), 0)
    if catchup == "none":
        slot = newest[-1]
        following = trigger.next_after(slot)
        tolerance = NONE_TOLERANCE
        if following is not None:
            tolerance = min(tolerance, (following - slot) / 2)
        if now - slot > tolerance:
            return Due((), count)
    return Due(tuple(newest), count - len(newest))


def _count_into(trigger: Trigger, after: float, now: float, newest: deque[float]) -> int:
    """Count the slots in ``(after, now]``, keeping the newest in ``newest`` (a bounded
    deque); arithmetic for absolute periods, so a long downtime costs nothing."""
    period = trigger.period
    if period is not None and not period.days:
        assert trigger.start is not None
        first = trigger.next_after(after)
        if first is None or first > now:
            return 0
        last = trigger.latest_at_or_before(now)
        assert last is not None
        step = period.seconds
        count = round((last - first) / step) + 1
        take = min(count, newest.maxlen or count)
        newest.extend(last - (take - 1 - i) * step for i in range(take))
        return count
    rule = trigger.rule
    if rule is None or not rule.fast:
        count = 0
        for s in trigger.slots(after, now):
            newest.append(s)
            count += 1
        return count
    # the newest few by walking back from now, the count day by day
    keep = newest.maxlen or 1
    back: list[float] = []
    t: float | None = now
    while len(back) < keep and t is not None:
        t = trigger.latest_at_or_before(t)
        if t is None or t <= after:
            break
        back.append(t)
        t -= 1
    newest.extend(reversed(back))
    return _count_cron(trigger, rule, after, now) if len(back) == keep else len(back)


def _count_cron(trigger: Trigger, rule: _CronRule, after: float, now: float) -> int:
    """How many slots of a plain cron are in ``(after, now]``: a local day without a DST
    change holds its hours x minutes when its date matches; the partial days at both ends
    and days with a change are walked slot by slot."""
    tz = trigger.tz
    lo, hi = math.floor(after), math.floor(now)
    if trigger.start is not None and lo < trigger.start:
        lo = math.floor(trigger.start) - 1
    if trigger.end is not None and hi > trigger.end:
        hi = math.floor(trigger.end)
    if hi <= lo:
        return 0
    day = _local_naive(lo, tz).replace(hour=0, minute=0, second=0, microsecond=0) + _DAY
    last_day = _local_naive(hi, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if day >= last_day:
        return sum(1 for _ in trigger.slots(lo, hi))
    begin = local_to_epoch(day, tz)
    count = sum(1 for _ in trigger.slots(lo, begin - 1))
    per_day = len(rule.hours) * len(rule.minutes)
    while day < last_day:
        following = local_to_epoch(day + _DAY, tz)
        if following - begin == 86400:
            count += per_day if rule.day_ok(day) else 0
        else:  # a DST change: gaps collapse, folds fire once
            count += sum(1 for _ in trigger.slots(begin - 1, following - 1))
        day += _DAY
        begin = following
    return count + sum(1 for _ in trigger.slots(begin - 1, hi))


# -- local time helpers -----------------------------------------------------------------


def _local_naive(t: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None, fold=0)


def _fold_length(naive: datetime, tz: ZoneInfo) -> timedelta:
    first = naive.replace(tzinfo=tz, fold=0).utcoffset()
    second = naive.replace(tzinfo=tz, fold=1).utcoffset()
    assert first is not None and second is not None
    return max(first - second, timedelta(0))


_EPOCH = datetime(1970, 1, 1)
_MINUTE = timedelta(minutes=1)
# how far a search for a matching day goes before deciding the expression never matches
# again (croniter's own limit is of the same order)
_MAX_DAYS = 366 * 50
_PLAIN_FIELD = re.compile(r"[0-9*,/-]+")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MONTH_NAMES = re.compile("|".join(_MONTHS), re.IGNORECASE)
_DAY_NAMES = re.compile("|".join(_DAYS), re.IGNORECASE)


def _parse_field(text: str, lo: int, hi: int) -> list[int]:
    """A plain cron field (``*``, ``N``, ``A-B``, each with an optional ``/K``, in a comma
    list) -> the sorted values it matches."""
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            a, b = lo, hi
        elif "-" in span:
            first, _, last = span.partition("-")
            a, b = int(first), int(last)
        else:
            # N/K counts from N to the end of the range, as cron does
            a = int(span)
            b = hi if step_text else a
        if not (lo <= a <= b <= hi) or step < 1:
            raise ValueError(f"{item!r} is not within {lo}-{hi}")
        values.update(range(a, b + 1, step))
    return sorted(values)


class _CronRule:
    """Local wall-clock times matching a cron expression (naive datetimes, no DST).

    Plain expressions (the common case: numbers or month/day names, ``*``, ranges, steps,
    lists) are parsed and matched here, tens of microseconds a search (croniter also reads
    ``3-3`` as ``*``); anything else (L, W, #) goes through croniter itself, a few hundred
    microseconds. Day-of-month and day-of-week: when both are given (not ``*``) either
    may match, as in cron; a ``*`` in one leaves the other alone.
    """

    def __init__(self, expr: str) -> None:
        """Raises ValueError on a plain field out of range (``61``, ``5-3``, ``*/0``)."""
        self.expr = expr
        fields = expr.split()
        # month and day names are numbers by another name
        fields[3] = _MONTH_NAMES.sub(lambda m: str(_MONTHS.index(m[0].lower()) + 1), fields[3])
        fields[4] = _DAY_NAMES.sub(lambda m: str(_DAYS.index(m[0].lower())), fields[4])
        self.fast = all(_PLAIN_FIELD.fullmatch(f) for f in fields)
        if not self.fast:
            return
        sets = [_parse_field(f, lo, hi) for f, (lo, hi) in zip(fields, _BOUNDS, strict=True)]
        self.minutes, self.hours = sets[0], sets[1]
        self.doms, self.months = set(sets[2]), set(sets[3])
        self.dows = {d % 7 for d in sets[4]}  # 7 is Sunday too
        self.dom_star, self.dow_star = fields[2] == "*", fields[4] == "*"

    def day_ok(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom_ok = day.day in self.doms
        dow_ok = (day.weekday() + 1) % 7 in self.dows  # cron: Sunday is 0
        if self.dom_star:
            return dow_ok
        if self.dow_star:
            return dom_ok
        return dom_ok or dow_ok

    def next_after(self, local: datetime) -> datetime | None:
        """The first matching minute strictly after ``local``."""
        if not self.fast:
            try:
                return _from_fake_epoch(croniter(self.expr, _fake_epoch(local)).get_next(float))
            except CroniterBadDateError:
                return None
        c = local.replace(second=0, microsecond=0) + _MINUTE
        day = c.replace(hour=0, minute=0)
        hi = bisect.bisect_left(self.hours, c.hour)
        if hi < len(self.hours) and self.day_ok(day):
            h = self.hours[hi]
            if h == c.hour:
                mi = bisect.bisect_left(self.minutes, c.minute)
                if mi < len(self.minutes):
                    return day.replace(hour=h, minute=self.minutes[mi])
                hi += 1
            if hi < len(self.hours):
                return day.replace(hour=self.hours[hi], minute=self.minutes[0])
        for _ in range(_MAX_DAYS):
            day += _DAY
            if self.day_ok(day):
                return day.replace(hour=self.hours[0], minute=self.minutes[0])
        return None

    def at_or_before(self, local: datetime) -> datetime | None:
        """The last matching minute at or before ``local``."""
        if not self.fast:
            try:  # croniter's get_prev is strict: start just after local's minute
                start = _fake_epoch(local.replace(second=0, microsecond=0)) + 1
                return _from_fake_epoch(croniter(self.expr, start).get_prev(float))
            except CroniterBadDateError:
                return None
        c = local.replace(second=0, microsecond=0)
        day = c.replace(hour=0, minute=0)
        hi = bisect.bisect_right(self.hours, c.hour) - 1
        if hi >= 0 and self.day_ok(day):
            h = self.hours[hi]
            if h == c.hour:
                mi = bisect.bisect_right(self.minutes, c.minute) - 1
                if mi >= 0:
                    return day.replace(hour=h, minute=self.minutes[mi])
                hi -= 1
            if hi >= 0:
                return day.replace(hour=self.hours[hi], minute=self.minutes[-1])
        for _ in range(_MAX_DAYS):
            day -= _DAY
            if self.day_ok(day):
                return day.replace(hour=self.hours[-1], minute=self.minutes[-1])
        return None


_DAY = timedelta(days=1)


def _fake_epoch(naive: datetime) -> float:
    """A naive local time as if it were UTC: croniter then sees no DST at all."""
    return (naive - _EPOCH).total_seconds()


def _from_fake_epoch(fake: float) -> datetime:
    return _EPOCH + timedelta(seconds=fake)
