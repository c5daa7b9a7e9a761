"""Rich rendering for the command line: live progress, run tables, run details."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from dagmill.model.runs import JobInfo, RunInfo, RunTaskInfo
from dagmill.model.states import TaskRunStatus

if TYPE_CHECKING:
    from dagmill.engine import RunResult
    from dagmill.plan.planner import Plan

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
        self._pending = 0

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._update()
        self._bar.__exit__(None, None, None)

    def run_started(self, run_id: str, plan: Plan) -> None:
        skipped = len(plan.graph) - len(plan.to_run)
        self._task = self._bar.add_task(
            f"run {run_id}", total=len(plan.to_run), detail=f"{skipped} already complete"
        )

    def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None:
        if status is S.RUNNING:
            self._running += 1
        elif status in (S.SUCCESS, S.FAILED, S.UPSTREAM_FAILED, S.CANCELLED):
            if status is not S.UPSTREAM_FAILED:
                self._running = max(0, self._running - 1)
            self._done += 1
            if status is not S.SUCCESS:
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
        self._bar.update(self._task, completed=self._done, detail=", ".join(bits))


def result_json(result: RunResult) -> dict[str, Any]:
    graph = result.plan.graph
    return {
        "run_id": result.run_id,
        "status": result.status.value,
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


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _dur(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    return f"{d * 1000:.0f}ms" if d < 1 else f"{d:.1f}s"


def runs_table(runs: Sequence[RunInfo]) -> None:
    console = Console()
    if not runs:
        console.print("no runs yet: start one with `dagmill run MODULE:TASK`")
        return
    table = Table(box=None, header_style="bold")
    for col in ("RUN", "NAME", "STATUS", "STARTED", "DURATION"):
        table.add_column(col, no_wrap=True)
    table.add_column("TASKS")
    for r in runs:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r.counts.items()))
        table.add_row(
            r.id,
            r.name,
            _styled(r.status),
            _when(r.started_at),
            _dur(r.started_at, r.ended_at),
            counts,
        )
    console.print(table)


def run_detail(info: RunInfo, tasks: Sequence[RunTaskInfo]) -> None:
    console = Console()
    console.print(
        f"[bold]run {info.id}[/] {info.name}: "
        f"{_styled(info.status)} "
        f"started {_when(info.started_at)}, took {_dur(info.started_at, info.ended_at)}"
    )
    if info.error:
        console.print(f"[red]{info.error}[/]")
    table = Table(box=None, header_style="bold")
    for col in ("TASK", "STATUS", "ATTEMPTS", "DURATION", "DETAIL"):
        table.add_column(col)
    for t in tasks:
        last = t.history[-1] if t.history else None
        detail = t.plan_reason if t.status == "SKIPPED" else ""
        if last is not None:
            where = f" at {last.error_location}" if last.error_location else ""
            detail = last.waiting_for or (f"{last.error}{where}" if last.error else detail)
        table.add_row(
            t.task_id,
            _styled(t.status),
            str(t.attempts),
            _dur(last.started_at, last.ended_at) if last else "-",
            detail or "",
        )
    console.print(table)


def jobs_table(jobs: Sequence[JobInfo]) -> None:
    console = Console()
    if not jobs:
        console.print("no jobs yet: build one with `dagmill jobs build MODULE:TASK`")
        return
    table = Table(box=None, header_style="bold")
    for col in ("JOB", "NAME", "STATUS", "LAST RUN", "CREATED"):
        table.add_column(col, no_wrap=True)
    table.add_column("RUNS")
    for j in jobs:
        params = " ".join(f"{k}={v}" for k, v in j.params.items())
        table.add_row(
            j.id,
            j.name,
            _styled(j.status),
            j.last_run or "-",
            _when(j.created_at),
            f"{j.ref.rsplit('/', 1)[-1]} {params}".strip(),
        )
    console.print(table)


def job_detail(job: JobInfo, recent: Sequence[RunInfo]) -> None:
    console = Console()
    console.print(f"[bold]job {job.id}[/] {job.name}: {_styled(job.status)}")
    console.print(f"  runs     {job.ref} {' '.join(f'-p {k}={v}' for k, v in job.params.items())}")
    console.print(f"  pinned   {job.version}")
    console.print(f"  data     {job.data_dir}")
    if job.schedule:
        console.print(f"  schedule {dict(job.schedule)}")
    console.print(f"  ttl      {dict(job.ttl)}")
    console.print(f"  created  {_when(job.created_at)}")
    if recent:
        runs_table(recent)
