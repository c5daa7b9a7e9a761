"""The ``dagmill`` command line: thin; parse, call one facade, render.

Exit codes: 0 success, 1 a task failed, 2 bad input (nothing was run or written),
130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dagmill.frontends.classes import Task

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 1, 2, 130


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _guard(fn: F) -> F:
    """Turn dagmill's errors into a clear message and exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dagmill.errors import DefinitionError, StoreError

        try:
            return fn(*args, **kwargs)
        except (DefinitionError, StoreError) as e:
            _fail(str(e))

    return wrapper  # type: ignore[return-value]


def _target_options(fn: F) -> F:
    fn = click.option(
        "--data",
        "data_dir",
        metavar="DIR",
        envvar="DAGMILL_DATA",
        show_envvar=True,
        help="Folder for task outputs (default: ./data).",
    )(fn)
    fn = click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="A parameter of the task (repeat for several).",
    )(fn)
    fn = click.argument("target", metavar="MODULE:TASK")(fn)
    return fn


def _load_target(target: str, params: tuple[str, ...], data_dir: str | None = None) -> Task:
    from dagmill.cli.loader import load_task
    from dagmill.errors import ParameterError

    if data_dir:
        from dagmill.workflow import set_dir

        set_dir(data_dir)
    cls = load_task(target)
    values: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"-p {item!r}: expected KEY=VALUE, e.g. -p lr=0.1")
        values[key.strip()] = value
    return cls(**values)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dagmill")
def cli() -> None:
    """dagmill: task graphs that run only what is incomplete, and say why.

    \b
    Examples:
      dagmill preview pipeline.py:Evaluate -p model=ols
      dagmill run pipeline.py:Evaluate -p model=ols --workers 2
      dagmill runs list
    """


@cli.command()
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_guard
def preview(target: str, params: tuple[str, ...], data_dir: str | None, as_json: bool) -> None:
    """Show the task tree with COMPLETE / PENDING / STALE and why."""
    from dagmill.summary import tree_text
    from dagmill.workflow import make_plan

    task = _load_target(target, params, data_dir)
    plan, _ = make_plan([task])
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": tid,
                        "family": plan.graph.tasks[tid].family,
                        "params": dict(plan.graph.tasks[tid].params),
                        "state": plan.tasks[tid].state.value,
                        "reason": plan.tasks[tid].reason,
                        "upstream": list(plan.graph.tasks[tid].upstream),
                    }
                    for tid in plan.graph.order
                ],
                indent=2,
            )
        )
        return
    color = sys.stdout.isatty()
    click.echo(tree_text(plan, [task.task_id], color=color))
    counts = plan.counts()
    click.echo(
        f"\n{len(plan.graph)} tasks: {counts['COMPLETE']} complete, "  # type: ignore[index]
        f"{counts['PENDING']} pending, {counts['STALE']} stale"  # type: ignore[index]
    )


@cli.command()
@_target_options
@click.option("-w", "--workers", default=1, show_default=True, help="Tasks run at once.")
@click.option("--force", is_flag=True, help="Rerun the task even if it is complete.")
@click.option("--force-all", is_flag=True, help="Rerun the task and everything upstream.")
@click.option("--pool", metavar="cpu=N,memory=Q,gpu=N", help="Resource pool (default: machine).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_guard
def run(
    target: str,
    params: tuple[str, ...],
    data_dir: str | None,
    workers: int,
    force: bool,
    force_all: bool,
    pool: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run a task and whatever it needs that is not complete."""
    from dagmill import workflow
    from dagmill.cli.render import Progress, result_json

    task = _load_target(target, params, data_dir)
    pool_spec = _parse_pool(pool) if pool else None
    _cancel_on_sigterm()
    progress = None if (quiet or as_json) else Progress()
    try:
        with progress if progress is not None else _null():
            result = workflow.run(
                [task],
                forced_all=force,
                forced_all_upstream=force_all,
                workers=workers,
                abort=False,
                execution_summary=False,
                pool=pool_spec,
                reporter=progress,
            )
    except KeyboardInterrupt:
        click.echo("cancelled", err=True)
        sys.exit(EXIT_CANCELLED)
    assert result is not None  # no confirm prompt on the command line
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


@cli.command()
@_target_options
@click.option("--upstream", is_flag=True, help="Also reset everything the task needs.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_guard
def reset(
    target: str, params: tuple[str, ...], data_dir: str | None, upstream: bool, yes: bool
) -> None:
    """Delete a task's outputs (and its upstream's with --upstream)."""
    from dagmill.frontends.classes import build_graph

    task = _load_target(target, params, data_dir)
    graph, objs = build_graph([task])
    ids = list(graph.order) if upstream else [task.task_id]
    victims = [objs[t] for t in ids if any(x.exists() for x in _targets(objs[t]))]
    if not victims:
        click.echo("nothing to reset: no outputs exist")
        return
    for t in victims:
        click.echo(f"  {t!r}")
    if not yes and not click.confirm(f"Delete the outputs of these {len(victims)} tasks?"):
        sys.exit(EXIT_FAILED)
    for t in victims:
        t.reset(confirm=False)
    click.echo(f"reset {len(victims)} tasks")


def _targets(task: Task) -> list[Any]:
    from dagmill.frontends.classes import flatten

    return flatten(task.output())


@cli.group()
def runs() -> None:
    """Recent runs from the run record."""


@runs.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"], case_sensitive=False
    ),
)
@click.option("-n", "--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_guard
def runs_list(status: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    from dagmill.cli.render import runs_table
    from dagmill.store import open_store

    store = open_store()
    items = store.list_runs(status=status, limit=limit)
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps([asdict(r) for r in items], indent=2))
        return
    runs_table(items)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@_guard
def runs_show(run_id: str, as_json: bool) -> None:
    """Show one run: its tasks, statuses, attempts and errors."""
    from dagmill.cli.render import run_detail
    from dagmill.store import open_store

    store = open_store()
    info = store.get_run(run_id)
    if info is None:
        _fail(f"no run {run_id!r}: see `dagmill runs list`")
        return
    tasks = store.get_run_tasks(info.id)
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps({"run": asdict(info), "tasks": [asdict(t) for t in tasks]}, indent=2))
        return
    run_detail(info, tasks)


def _cancel_on_sigterm() -> None:
    """`kill PID` cancels a run the way Ctrl-C does: recorded, workers and children stopped."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _parse_pool(text: str) -> dict[str, str]:
    from dagmill.errors import ResourceError

    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ResourceError(f"--pool {text!r}: expected cpu=N,memory=Q,gpu=N")
        out[key.strip()] = value.strip()
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    cli(prog_name="dagmill")


if __name__ == "__main__":  # pragma: no cover
    main()
