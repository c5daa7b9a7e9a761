"""What the commands share: exit codes, errors for people, running with progress."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from dagmill.engine import RunResult
    from dagmill.model.runs import RunInfo, RunTaskInfo
    from dagmill.services.execution import RunOptions

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 1, 2, 130

# --data: a folder, or a path to make one at; an existing file is bad input (exit 2)
DATA_DIR = click.Path(file_okay=False)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def confirm(question: str, yes: bool, doing: str = "delete") -> None:
    """Go on if ``yes`` or the user agrees; without a terminal to ask on, refuse (exit 2)
    rather than take silence for a no (click's "Aborted!"). ``doing`` names the act in
    the messages ("delete", "queue runs")."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"no terminal to ask {question!r}: pass -y/--yes to {doing} without a terminal")
    if not click.confirm(question):
        click.echo("nothing deleted" if doing == "delete" else "nothing done", err=True)
        sys.exit(EXIT_FAILED)


def guard(fn: F) -> F:
    """Turn dagmill's errors into a clear message and exit code 2 (1 when the run record
    stayed away: the input was fine, the run is resumable)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dagmill.errors import DefinitionError, RunTakenOver, StoreError, StoreUnavailable

        try:
            return fn(*args, **kwargs)
        except (StoreUnavailable, RunTakenOver) as e:
            fail(str(e), EXIT_FAILED)
        except (DefinitionError, StoreError) as e:
            fail(str(e))

    return wrapper  # type: ignore[return-value]


def parse_params(params: tuple[str, ...]) -> dict[str, str]:
    from dagmill.errors import ParameterError

    values: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"-p {item!r}: expected KEY=VALUE, e.g. -p lr=0.1")
        values[key.strip()] = value
    return values


def execute(
    start: Callable[[RunOptions], RunResult | None],
    quiet: bool,
    as_json: bool,
    options: RunOptions,
) -> None:
    """Run with live progress, then print the summary (or JSON); exit 1 if a task failed."""
    import dataclasses

    from dagmill.cli.render import Progress, result_json

    progress = None if (quiet or as_json) else Progress()
    options = dataclasses.replace(options, abort=False, execution_summary=False, reporter=progress)
    try:
        with progress if progress is not None else _Null():
            result = start(options)
    except KeyboardInterrupt:
        click.echo("cancelled", err=True)
        sys.exit(EXIT_CANCELLED)
    if result is None:  # a queued run that was cancelled before it started
        click.echo("cancelled before it started", err=True)
        sys.exit(EXIT_CANCELLED)
    if as_json:
        click.echo(json.dumps(result_json(result), indent=2))
    elif not quiet:
        click.echo(result.summary_text)
        for tid, err in result.errors.items():
            click.echo(f"\n{result.plan.graph.tasks[tid].label} failed: {err}", err=True)
            if err.traceback:
                click.echo(err.traceback.rstrip(), err=True)
        click.echo(f"run {result.run_id}: {result.status.value}")
    if not result.ok:
        sys.exit(EXIT_FAILED)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def follow_remote(run_id: str, quiet: bool, as_json: bool) -> None:
    """Follow a run queued on the configured server until it ends: its tasks as their
    statuses change (stderr), then the run's tasks and ``run ID: STATUS`` (or the JSON
    of a run's result); exit 1 if it did not succeed, as a run here does."""
    from dagmill.cli.render import run_detail
    from dagmill.services.remote import client

    remote = client()
    assert remote is not None, "follow_remote is for remote mode"
    shown: dict[str, str] = {}

    def changed(tasks: list[RunTaskInfo]) -> None:
        if quiet or as_json:
            return
        for t in tasks:
            if shown.get(t.task_id) != t.status:
                shown[t.task_id] = t.status
                click.echo(f"  {_label(t)}: {t.status}", err=True)

    try:
        run = remote.wait_run(run_id, changed)
    except KeyboardInterrupt:
        click.echo(
            f"stopped following run {run_id}; it goes on on the server "
            f"(`dagmill runs cancel {run_id}` stops it)",
            err=True,
        )
        sys.exit(EXIT_CANCELLED)
    tasks = remote.get_run_tasks(run.id)
    if as_json:
        click.echo(json.dumps(remote_result_json(run, tasks), indent=2))
    elif not quiet:
        run_detail(run, tasks)
        for t in tasks:
            if t.status == "FAILED" and t.history:
                last = t.history[-1]
                click.echo(f"\n{_label(t)} failed: {last.error}", err=True)
                if last.traceback:
                    click.echo(last.traceback.rstrip(), err=True)
        click.echo(f"run {run.id}: {run.status}")
    if run.status != "SUCCESS":
        sys.exit(EXIT_FAILED)


def _label(task: RunTaskInfo) -> str:
    params = ", ".join(f"{k}={v}" for k, v in task.params.items())
    return f"{task.family}({params})"


def remote_result_json(run: RunInfo, tasks: list[RunTaskInfo]) -> dict[str, Any]:
    """A run ended on a server in the keys of a run's result here (``render.result_json``)."""
    from dagmill.services.wire import iso

    return {
        "id": run.id,
        "status": run.status,
        "started_at": run.started_at,
        "started_at_iso": iso(run.started_at),
        "ended_at": run.ended_at,
        "ended_at_iso": iso(run.ended_at),
        "counts": dict(run.counts),
        "tasks": [
            {
                "id": t.task_id,
                "family": t.family,
                "params": dict(t.params),
                "plan": t.plan_state,
                "reason": t.plan_reason,
                "status": t.status,
                "attempts": t.attempts,
                "error": t.history[-1].error if t.history and t.status == "FAILED" else None,
            }
            for t in tasks
        ],
    }


def remote_mode() -> bool:
    """Whether the commands talk to a server (see ``settings.remote``)."""
    from dagmill.services.remote import is_remote

    return is_remote()
