"""Rich rendering for the command line: live progress, run tables, run details."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from dagmill.model.runs import JobInfo, RunInfo, RunTaskInfo
from dagmill.model.schedules import SlotInfo
from dagmill.model.states import TaskRunStatus
from dagmill.model.tokens import TokenInfo

if TYPE_CHECKING:
    from dagmill.engine import RunResult
    from dagmill.model.projects import ProjectUsage
    from dagmill.plan.planner import Plan
    from dagmill.services.jobs import JobView
    from dagmill.services.projects import ProjectView

S = TaskRunStatus
_STYLE = {
    "SUCCESS": "green",
    "SKIPPED": "green",
    "FAILED": "red",
    "UPSTREAM_FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "magenta",
    "WAITING": "dim",
}


def _styled(status: str) -> str:
    style = _STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


class Progress:
    """A live progress bar on stderr, fed by the engine's reporter calls."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task: Any = None
        self._done = 0
        self._running = 0
        self._failed = 0
        self._cancelled = 0
        self._pending = 0
        self._skipped = 0
        self._elsewhere: set[str] = set()  # waiting for another run that executes them
        self._entered = self._shown = False
        self._complete = 0  # complete before the run started

    def __enter__(self) -> Progress:
        # the bar is shown once a run starts: bad input stops before, and its error
        # should stand alone (a bar that never started still printed an empty line)
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        if self._shown:
            self._shown = False
            self._update()
            self._bar.stop()

    def run_started(self, run_id: str, plan: Plan) -> None:
        skipped = self._complete = len(plan.graph) - len(plan.to_run)
        self._task = self._bar.add_task(
            f"run {run_id}", total=len(plan.to_run), detail=f"{skipped} already complete"
        )
        if self._entered and not self._shown:
            self._shown = True
            self._bar.start()

    def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None:
        if status is S.WAITING and detail.startswith("running in run"):
            self._elsewhere.add(task_id)
        else:
            self._elsewhere.discard(task_id)
        if status is S.SKIPPED:  # another run made it meanwhile (claims)
            self._done += 1
            self._skipped += 1
        elif status is S.RUNNING:
            self._running += 1
        elif status in (S.SUCCESS, S.FAILED, S.UPSTREAM_FAILED, S.CANCELLED):
            if status is not S.UPSTREAM_FAILED:
                self._running = max(0, self._running - 1)
            self._done += 1
            if status is S.CANCELLED:  # stopped by the user, not a failure of the task
                self._cancelled += 1
            elif status is not S.SUCCESS:
                self._failed += 1
        elif status is S.PENDING:
            self._running = max(0, self._running - 1) if "retry" in detail else self._running
        self._update()

    def _update(self) -> None:
        if self._task is None:
            return
        bits = [f"{self._running} running"]
        if self._failed:
            bits.append(f"[red]{self._failed} failed[/]")
        if self._cancelled:
            bits.append(f"[yellow]{self._cancelled} cancelled[/]")
        if self._elsewhere:
            bits.append(f"{len(self._elsewhere)} running in another run")
        if self._skipped:
            bits.append(f"{self._skipped} made by another run")
        if self._complete:
            bits.append(f"{self._complete} already complete")
        self._bar.update(self._task, completed=self._done, detail=", ".join(bits))


def result_json(result: RunResult) -> dict[str, Any]:
    """A run's result in the keys of the run record's JSON (``id``, ``*_at``/``*_at_iso``)."""
    from dagmill.services.wire import iso

    graph = result.plan.graph
    return {
        "id": result.run_id,
        "status": result.status.value,
        "started_at": result.started_at or None,
        "started_at_iso": iso(result.started_at),
        "ended_at": result.ended_at or None,
        "ended_at_iso": iso(result.ended_at),
        "counts": result.counts(),
        "tasks": [
            {
                "id": tid,
                "family": graph.tasks[tid].family,
                "params": dict(graph.tasks[tid].params),
                "plan": result.plan.tasks[tid].state.value,
                "reason": result.plan.tasks[tid].reason,
                "status": result.statuses[tid].value,
                "attempts": result.attempts.get(tid, 0),
                "error": str(result.errors[tid]) if tid in result.errors else None,
            }
            for tid in graph.order
        ],
    }


def _when(ts: float | None, seconds: bool = False) -> str:
    fmt = "%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(ts)) if ts else "-"


def _dur(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    if d < 1:
        return f"{d * 1000:.0f}ms"
    if d < 600:
        return f"{d:.1f}s"
    return f"{d / 60:.0f}m" if d < 36_000 else f"{d / 3600:.0f}h"


def _console(wide: bool) -> Console:
    # --wide: nothing shortened; the lines are as long as their cells (pipe into less -S)
    return Console(width=1000) if wide else Console()


def _table(*columns: str, ids: Sequence[Sequence[str]] = ()) -> Table:
    """A table of short cells, one line per row: id columns (given with their values) are
    never cut, the last column takes what room is left (cut with … if it must be)."""
    table = _LastColumnGives(box=None, header_style="bold", pad_edge=False)
    for i, col in enumerate(columns):
        values = ids[i] if i < len(ids) else ()
        width = max([len(col), *map(len, values)]) if values else None
        last = i == len(columns) - 1
        # the last column alone may shrink (Rich shrinks only wrappable columns first;
        # with none, it cut every column evenly: STATUS became "F", TRIES went); its
        # cells keep to one line themselves (see _LastColumnGives)
        table.add_column(
            col, no_wrap=not last, min_width=width, overflow="ellipsis" if last else "fold"
        )
    return table


class _LastColumnGives(Table):
    """A table whose last cells are one line, cut with … to the room the column has."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = list(renderables)
        if cells and isinstance(cells[-1], str):
            text = Text.from_markup(cells[-1], overflow="ellipsis")
            text.no_wrap = True
            cells[-1] = text
        super().add_row(*cells, **kwargs)


def _tasks_cell(counts: Mapping[str, int]) -> str:
    """``12 ok`` or ``3/12 failed``: the one number that matters for a run's tasks."""
    if not counts:  # written as the run ends: a run still going has none yet
        return "-"
    total = sum(counts.values())
    for status in ("FAILED", "UPSTREAM_FAILED", "CANCELLED", "RUNNING", "PENDING", "WAITING"):
        if counts.get(status):
            word = "blocked" if status == "UPSTREAM_FAILED" else status.lower()
            return f"{counts[status]}/{total} {word}"
    return f"{total} ok"


def _slot_cell(run: RunInfo, wide: bool) -> str:
    """The slot a scheduled run was made for, as its schedule names it: the wall-clock
    time in the job's timezone (``12-02 10:05`` for "5 10 * * *" in Europe/Paris,
    wherever this machine is), the full ISO time with its offset with --wide. A run
    without a recorded slot string shows this machine's local time of its instant."""
    if run.scheduled_for is None:
        return "-"
    text = run.target.slot if run.target is not None else None
    if text is None:
        return _when(run.scheduled_for)
    if wide:
        return text
    return f"{text[5:10]} {text[11:16]}"  # 2022-03-01T10:05:00+01:00 -> 03-01 10:05


def runs_table(runs: Sequence[RunInfo], wide: bool = False) -> None:
    """STARTED is this machine's local time; SLOT (shown when a listed run has one) the
    slot in its job's timezone (see ``_slot_cell``)."""
    console = _console(wide)
    if not runs:
        console.print("no runs yet: start one with `dagmill run MODULE:TASK`")
        return
    ids = [[r.id for r in runs]]
    slots = any(r.scheduled_for is not None for r in runs)
    if wide:
        columns = ["RUN", "STATUS", "STARTED", "TOOK", "PROJECT", "JOB", "NAME", "TASKS"]
        if slots:
            columns[2:2] = ["SLOT"]
        table = _table(*columns, ids=ids)
        for r in runs:
            counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r.counts.items()))
            row = [
                r.id,
                _styled(r.status),
                _when(r.started_at, seconds=True),
                _dur(r.started_at, r.ended_at),
                r.project,
                r.job_id or "-",
                r.name,
                counts,
            ]
            if slots:
                row[2:2] = [_slot_cell(r, wide)]
            table.add_row(*row)
    else:
        columns = ["RUN", "STATUS", "STARTED", "TOOK", "TASKS", "NAME"]
        if slots:
            columns[2:2] = ["SLOT"]
        table = _table(*columns, ids=ids)
        for r in runs:
            row = [
                r.id,
                _styled(r.status),
                _when(r.started_at),
                _dur(r.started_at, r.ended_at),
                _tasks_cell(r.counts),
                r.name,
            ]
            if slots:
                row[2:2] = [_slot_cell(r, wide)]
            table.add_row(*row)
    console.print(table)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def run_detail(
    info: RunInfo,
    tasks: Sequence[RunTaskInfo],
    wide: bool = False,
    pending_since: Mapping[str, float] | None = None,
) -> None:
    """``pending_since``: since when each task PENDING on its project's quota waits
    (from the ledger; its attempt records the wait once it starts)."""
    console = _console(wide)
    console.print(
        f"[bold]run {info.id}[/] {escape(info.name)}: {_styled(info.status)}, "
        f"started {_when(info.started_at, seconds=True)}, "
        f"took {_dur(info.started_at, info.ended_at)}"
    )
    if info.error:
        console.print(f"[red]{escape(info.error)}[/]")
    ids = [[t.task_id for t in tasks]]
    columns = ["TASK", "STATUS", "TRIES", "TOOK", "DETAIL"]
    if wide:
        columns[-1:-1] = ["STARTED"]
    table = _table(*columns, ids=ids)
    for t in tasks:
        last = t.history[-1] if t.history else None
        # SKIPPED though its plan said it must run: found complete, another run made it
        # (claims); its plan's reason ("never ran") would read as if nothing had happened
        made = t.status == "SKIPPED" and t.plan_state != "COMPLETE"
        detail = "made by another run" if made else ""
        if last is not None:
            detail = last.waiting_for or (_first_line(last.error) if last.error else detail)
            if last.waited and not last.waiting_for:
                # it ran once its project had room: how long that took matters (a slow
                # run that only waited is not slow code)
                waited = f"waited {_seconds(last.waited)}"
                detail = f"{waited}; {detail}" if detail else waited
        row = [
            t.task_id,
            _styled(t.status),
            str(t.attempts),
            _dur(last.started_at, last.ended_at) if last else "-",
            escape(detail),
        ]
        if wide:
            row[-1:-1] = [_when(last.started_at, seconds=True) if last else "-"]
        table.add_row(*row)
    console.print(table)
    pending = [
        (t, t.history[-1].waiting_for)
        for t in tasks
        if t.status == "PENDING" and t.history and t.history[-1].waiting_for
    ]
    if pending:
        # in full, below the table: a reason cut to the DETAIL column lost the runs it
        # names, which are what a user looks for
        console.print("\n[bold]pending[/]")
        now = time.time()
        for t, why in pending:
            since = (pending_since or {}).get(t.task_id)
            waited = f" (waiting {_seconds(max(0.0, now - since))})" if since else ""
            console.print(escape(f"  {t.task_id}: {why}{waited}"), soft_wrap=True)
    failed = [(t, a) for t in tasks for a in t.history if a.error]
    if failed:
        # every failed attempt, earlier ones included (a task that succeeded on a retry
        # still shows why it had to): in full, left to the terminal to wrap, so that a
        # path stays whole
        console.print("\n[bold]errors[/]")
        for t, a in failed:
            where = f"\n    at {a.error_location}" if a.error_location else ""
            console.print(
                escape(f"  {t.task_id} attempt {a.attempt}: {(a.error or '').strip()}{where}"),
                soft_wrap=True,
            )


def local_and_utc(t: float, tz: str) -> str:
    """``2030-01-01 10:05 CET (09:05 UTC)``: a slot as its schedule names it, and in UTC."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(t, ZoneInfo(tz))
    utc = datetime.fromtimestamp(t, UTC)
    fmt = "%Y-%m-%d %H:%M" if local.second == 0 else "%Y-%m-%d %H:%M:%S"
    if local.utcoffset() == utc.utcoffset() and local.tzname() in ("UTC", "GMT"):
        return f"{utc.strftime(fmt)} UTC"  # not "07:00 UTC (07:00 UTC)"
    same_day = local.date() == utc.date()
    return (
        f"{local.strftime(fmt)} {local.tzname()} ({utc.strftime(fmt[9:] if same_day else fmt)} UTC)"
    )


def _next_cell(view: JobView, wide: bool) -> str:
    """The next slot in the job's timezone, as its cron reads ("0 2 * * *" -> 02:00)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if view.job.schedule is None:
        return "-"
    if view.next_run_at is None:
        return "paused" if view.status == "PAUSED" else "never"
    local = datetime.fromtimestamp(view.next_run_at, ZoneInfo(view.job.schedule.timezone))
    return local.strftime("%Y-%m-%d %H:%M %Z" if wide else "%m-%d %H:%M")


def jobs_table(views: Sequence[JobView], wide: bool = False) -> None:
    """KIND is manual or scheduled; NEXT RUN is the next slot in the job's own timezone
    (as its cron reads; `dagmill jobs next JOB` shows it in UTC too), CREATED this
    machine's local time."""
    console = _console(wide)
    if not views:
        console.print("no jobs yet: build one with `dagmill jobs build MODULE:TASK`")
        return
    ids = [[v.job.id for v in views], [], [], [v.last_run_id or "-" for v in views]]
    columns = ["JOB", "KIND", "STATUS", "LAST RUN", "NEXT RUN", "NAME"]
    if wide:
        columns[-1:-1] = ["PROJECT", "CREATED"]
        columns += ["SCHEDULE", "RUNS"]
    table = _table(*columns, ids=ids)
    for v in views:
        j = v.job
        row = [
            j.id,
            v.trigger,
            _styled(v.status),
            v.last_run_id or "-",
            _next_cell(v, wide),
            escape(j.name),
        ]
        if wide:
            row[-1:-1] = [j.project, _when(j.created_at)]
            params = " ".join(f"-p {k}={val}" for k, val in j.params.items())
            row.append(escape(j.schedule.describe()) if j.schedule else "-")
            row.append(escape(f"{j.ref} {params}".strip()))
        table.add_row(*row)
    console.print(table)


def next_table(job: JobInfo, fires: Sequence[float]) -> None:
    """A job's next slots: in its schedule's timezone and in UTC."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    assert job.schedule is not None
    console = Console()
    tz = job.schedule.timezone
    head = f"[bold]job {job.id}[/] {escape(job.name)}: {escape(job.schedule.describe())}"
    if job.paused:
        head += " [yellow](paused: these fire once it is resumed)[/]"
    console.print(head)
    if not fires:
        console.print("no slot after now: the schedule has ended")
        return
    table = _table(f"LOCAL ({tz})", "UTC")
    for t in fires:
        local = datetime.fromtimestamp(t, ZoneInfo(tz))
        table.add_row(
            local.strftime("%Y-%m-%d %H:%M:%S %Z"),
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def _ttl(ttl: Mapping[str, int | None]) -> str:
    """CloudHarness's TTL strategy in words: ``1200s after success, kept after failure``."""
    words = {
        "secondsAfterSuccess": "success",
        "secondsAfterFailure": "failure",
        "secondsAfterCompletion": "completion",
    }
    kept = {k: "kept" if ttl[k] is None else f"{ttl[k]}s" for k in words if k in ttl}
    return ", ".join(f"{v} after {words[k]}" for k, v in kept.items())


def job_detail(
    view: JobView,
    recent: Sequence[RunInfo],
    skipped: Sequence[SlotInfo] = (),
    wide: bool = False,
) -> None:
    job = view.job
    console = _console(wide)
    params = " ".join(f"-p {k}={v}" for k, v in job.params.items())
    console.print(f"[bold]job {job.id}[/] {escape(job.name)}: {_styled(view.status)}")
    console.print(escape(f"  runs     {job.ref} {params}".rstrip()), soft_wrap=True)
    console.print(escape(f"  pinned   {job.version}"), soft_wrap=True)
    console.print(escape(f"  data     {job.data_dir}"), soft_wrap=True)
    console.print(escape(f"  project  {job.project}"), soft_wrap=True)
    if job.schedule:
        tz = job.schedule.timezone
        console.print(escape(f"  schedule {job.schedule.describe()}"), soft_wrap=True)
        policy = f"overlap {job.policy.overlap}, catchup {job.policy.catchup}"
        if job.policy.slot_param:
            policy += f", slot -> parameter {job.policy.slot_param}"
        console.print(escape(f"  policy   {policy}"), soft_wrap=True)
        if job.paused:
            nxt = "paused (`dagmill jobs resume` to go on)"
        elif view.next_run_at is None:
            nxt = "never: the schedule has ended"
        else:
            nxt = local_and_utc(view.next_run_at, tz)
        console.print(escape(f"  next     {nxt}"), soft_wrap=True)
    console.print(escape(f"  ttl      {_ttl(job.ttl)}"), soft_wrap=True)
    console.print(f"  created  {_when(job.created_at, seconds=True)}")
    if skipped:
        console.print("\n[bold]skipped slots[/]")
        for slot in skipped:
            console.print(escape(f"  {slot.reason or 'slot skipped'}"), soft_wrap=True)
    if recent:
        console.print()
        runs_table(recent, wide)


def _seconds(d: float) -> str:
    """A wait in seconds as people read it: 350ms, 4.2s, 3m10s, 2h05m."""
    if d < 1:
        return f"{d * 1000:.0f}ms"
    if d < 60:
        return f"{d:.1f}s"
    if d < 3600:
        return f"{int(d // 60)}m{int(d % 60):02d}s"
    return f"{int(d // 3600)}h{int(d % 3600 // 60):02d}m"


def _limit(used: int, limit: int | None, fmt: Any) -> str:
    """``1.5/8``: in use of the limit (∞: no limit)."""
    return f"{fmt(used)}/{'∞' if limit is None else fmt(limit)}"


def _cpus(milli: int) -> str:
    return f"{milli / 1000:g}"


def _mem(n: int) -> str:
    from dagmill.model.resources import format_bytes

    return format_bytes(n)


def quota_text(usage: ProjectUsage) -> str:
    """``cpu 2 of 8, memory 0 of 16Gi, gpu 0 (no limit)``: use now against the limits."""
    lim, used = usage.limits, usage.used
    parts = []
    for name, u, limit, fmt in (
        ("cpu", used.cpu_milli, lim.cpu_milli, _cpus),
        ("memory", used.memory_bytes, lim.memory_bytes, _mem),
        ("gpu", used.gpu, lim.gpu, str),
    ):
        parts.append(f"{name} {fmt(u)} " + ("(no limit)" if limit is None else f"of {fmt(limit)}"))
    return ", ".join(parts)


def projects_table(views: Sequence[ProjectView], wide: bool = False) -> None:
    """CPU, MEMORY and GPU are in use/limit (∞: no limit; the default project's limits
    are this machine's unless set); RUNNING and PENDING count tasks holding part of the
    quota and waiting for room."""
    console = _console(wide)
    if not views:  # the default project always exists: a store from before projects
        console.print("no projects yet: create one with `dagmill projects create NAME`")
        return
    columns = ["PROJECT", "CPU", "MEMORY", "GPU", "RUNNING", "PENDING", "JOBS"]
    if wide:
        columns.append("DESCRIPTION")
    table = _table(*columns, ids=[[v.info.name for v in views]])
    for v in views:
        lim, used = v.usage.limits, v.usage.used
        row = [
            v.info.name,
            _limit(used.cpu_milli, lim.cpu_milli, _cpus),
            _limit(used.memory_bytes, lim.memory_bytes, _mem),
            _limit(used.gpu, lim.gpu, str),
            str(len(v.usage.leases)),
            str(len(v.usage.waits)),
            str(v.jobs),
        ]
        if wide:
            row.append(escape(v.info.description) or "-")
        table.add_row(*row)
    console.print(table)


def project_detail(view: ProjectView, now: float | None = None) -> None:
    """A project now: quota, use, the running tasks (with their runs and since when) and
    the pending ones (with their reasons, in full, and how long they have waited)."""
    console = Console()
    now = time.time() if now is None else now
    usage, info = view.usage, view.info
    head = f"[bold]project {escape(info.name)}[/]"
    if info.description:
        head += f": {escape(info.description)}"
    console.print(head)
    quota = info.quota.to_dict()
    unset = [k for k in ("cpu", "memory", "gpu") if k not in quota]
    set_parts = [f"{k} {v}" for k, v in quota.items()]
    if unset:
        what = "this machine's" if info.name == "default" else "no limit"
        set_parts.append(f"{', '.join(unset)}: {what}")
    set_text = ", ".join(set_parts)
    console.print(escape(f"  quota    {set_text}"), soft_wrap=True)
    console.print(escape(f"  in use   {quota_text(usage)}"), soft_wrap=True)
    console.print(f"  jobs     {view.jobs}; runs in progress {view.open_runs}")
    console.print(f"\n[bold]running tasks[/] ({len(usage.leases)})")
    if not usage.leases:
        console.print("  none")
    # two lines a task (three when pending): a task id and a run id are ~40 columns
    # already; what it holds and why it waits go below, whole, within 80 columns
    for x in usage.leases:
        console.print(escape(f"  {x.task_id}  run {x.run_id} {x.run_name}".rstrip()))
        since = _seconds(max(0.0, now - x.admitted_at))
        console.print(
            escape(
                f"    holds {_request(x.request)} since {_when(x.admitted_at, seconds=True)}"
                f" ({since})"
            ),
            soft_wrap=True,
        )
    console.print(f"\n[bold]pending tasks[/] ({len(usage.waits)})")
    if not usage.waits:
        console.print("  none")
    for w in usage.waits:
        console.print(escape(f"  {w.task_id}  run {w.run_id} {w.run_name}".rstrip()))
        waited = _seconds(max(0.0, now - w.since))
        console.print(escape(f"    wants {_request(w.request)}, waiting {waited}"), soft_wrap=True)
        console.print(escape(f"    {w.reason}"), soft_wrap=True)


def _request(res: Any) -> str:
    """``cpu 2, memory 4Gi``: what a task asks for."""
    return ", ".join(f"{k} {v}" for k, v in res.to_dict().items()) or "nothing"


def token_state(token: TokenInfo, now: float | None = None) -> str:
    """active, expired or revoked."""
    if token.revoked_at is not None:
        return "revoked"
    return "active" if token.usable(time.time() if now is None else now) else "expired"


def _day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts)) if ts else "never"


def tokens_table(tokens: Sequence[TokenInfo], wide: bool = False) -> None:
    """One token a line (never its secret); PROJECT only when more than one is listed."""
    console = _console(wide)
    if not tokens:
        console.print("no tokens: make one with `dagmill tokens create --role viewer --name NAME`")
        return
    projects = len({t.project for t in tokens}) > 1 or wide
    columns = ["TOKEN", "ROLE", "STATE", "EXPIRES", "LAST USED", "NAME"]
    if projects:
        columns[1:1] = ["PROJECT"]
    table = _table(*columns, ids=[[t.id for t in tokens]])
    for t in tokens:
        state = token_state(t)
        row = [
            t.id,
            t.role,
            {"active": "[green]active[/]", "expired": "[yellow]expired[/]"}.get(state, state),
            _day(t.expires_at),
            _when(t.last_used_at) if t.last_used_at else "never",
            escape(t.name),
        ]
        if projects:
            row[1:1] = [t.project]
        table.add_row(*row)
    console.print(table)


def token_detail(token: TokenInfo) -> None:
    console = _console(False)
    fields = [
        ("token", token.id),
        ("name", escape(token.name)),
        ("project", token.project),
        ("role", token.role),
        ("state", token_state(token)),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(token.created_at))),
        ("expires", _when(token.expires_at) if token.expires_at else "never"),
        ("last used", _when(token.last_used_at, seconds=True) if token.last_used_at else "never"),
    ]
    if token.revoked_at is not None:
        fields.append(("revoked", _when(token.revoked_at, seconds=True)))
    for key, value in fields:
        console.print(f"{key + ':':<11}{value}", highlight=False)
