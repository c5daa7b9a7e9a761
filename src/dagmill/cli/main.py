"""The ``dagmill`` command line: thin; parse, call :mod:`dagmill.services`, render.

Exit codes: 0 success, 1 a task failed, 2 bad input (nothing was run or written),
130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dagmill.cli.common import DATA_DIR, confirm, execute, fail, guard, parse_params
from dagmill.frontends.pipeline import is_pipeline_file

if TYPE_CHECKING:
    from dagmill.frontends.classes import Task

F = TypeVar("F", bound=Callable[..., Any])


def _target_options(fn: F) -> F:
    fn = click.option(
        "--data",
        "data_dir",
        metavar="DIR",
        type=DATA_DIR,
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
    fn = click.option(
        "--node",
        "nodes",
        multiple=True,
        metavar="NAME",
        help="Pipeline files: only this process node (and its upstream); repeat for several.",
    )(fn)
    fn = click.argument("target", metavar="MODULE:TASK|PIPELINE.yaml")(fn)
    return fn


def _no_params(target: str, params: tuple[str, ...]) -> None:
    if params:
        fail(f"{target}: a pipeline file takes no -p; put params in its process nodes")


def _plan_target(
    target: str, params: tuple[str, ...], data_dir: str | None, nodes: tuple[str, ...]
) -> tuple[Any, list[str]]:
    """(plan, root task ids) for either kind of target."""
    if is_pipeline_file(target):
        from dagmill.services.pipelines import plan_pipeline

        _no_params(target, params)
        plan, _ = plan_pipeline(target, data_dir, list(nodes) or None)
        return plan, list(plan.graph.targets)
    if nodes:
        fail("--node is for pipeline files; for MODULE:TASK name the task itself")
    from dagmill.services.tasks import make_plan

    task = _load_target(target, params, data_dir)
    plan, _ = make_plan([task])
    return plan, [task.task_id]


def _load_target(target: str, params: tuple[str, ...], data_dir: str | None = None) -> Task:
    from dagmill.services.tasks import load_target

    return load_target(target, parse_params(params), data_dir)


# the commands that work on this machine only, whatever server is configured
_LOCAL_ONLY = ("server",)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dagmill")
@click.option(
    "--server",
    metavar="URL",
    help="Talk to this dagmill server (https://host:8080) instead of the local database "
    "[env: DAGMILL_SERVER].",
)
@click.option(
    "--token",
    metavar="ID.SECRET",
    help="The access token for --server (`dagmill tokens create`) [env: DAGMILL_TOKEN].",
)
@click.option(
    "--profile",
    metavar="NAME",
    help="The server and token of [profiles.NAME] in ~/.config/dagmill/config.toml "
    "[env: DAGMILL_PROFILE].",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None, token: str | None, profile: str | None) -> None:
    """dagmill: task graphs that run only what is incomplete, and say why.

    \b
    Examples:
      dagmill preview pipeline.py:Evaluate -p model=ols
      dagmill run pipeline.py:Evaluate -p model=ols --workers 2
      dagmill runs list

    \b
    Remote mode: with a server (--server and --token, DAGMILL_SERVER and
    DAGMILL_TOKEN, or a profile of ~/.config/dagmill/config.toml:
      [default]
      server = "https://dagmill.example.com"
      token = "dm_....SECRET"
      [profiles.ci]
      server = ...
    ) the jobs, runs, projects and tokens commands work on that server
    through its API; run, preview, reset and server stay on this machine.
    """
    given = [f for f, v in (("--server", server), ("--token", token), ("--profile", profile)) if v]
    if given and ctx.invoked_subcommand in _LOCAL_ONLY:
        fail(
            f"{', '.join(given)}: `dagmill {ctx.invoked_subcommand}` works on this machine's "
            "database, never through another server; drop "
            f"{'it' if len(given) == 1 else 'them'}"
        )
    import os

    # for this process and what it starts (settings.remote() reads them)
    for name, value in (("SERVER", server), ("TOKEN", token), ("PROFILE", profile)):
        if value:
            os.environ[f"DAGMILL_{name}"] = value


@cli.command()
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@guard
def preview(
    target: str,
    params: tuple[str, ...],
    data_dir: str | None,
    nodes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show the task tree with COMPLETE / PENDING / STALE and why."""
    from dagmill.summary import tree_text

    plan, roots = _plan_target(target, params, data_dir, nodes)
    if as_json:
        tasks = plan.graph.tasks
        rows = [
            {
                "id": tid,
                "family": tasks[tid].family,
                "params": dict(tasks[tid].params),
                "state": plan.tasks[tid].state.value,
                "reason": plan.tasks[tid].reason,
                "upstream": list(tasks[tid].upstream),
            }
            for tid in plan.graph.order
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tree_text(plan, roots, color=sys.stdout.isatty()))
    counts = {state.value: n for state, n in plan.counts().items()}
    click.echo(
        f"\n{len(plan.graph)} tasks: {counts['COMPLETE']} complete, "
        f"{counts['PENDING']} pending, {counts['STALE']} stale"
    )


@cli.command()
@_target_options
@click.option("-w", "--workers", default=1, show_default=True, help="Tasks run at once.")
@click.option("--force", is_flag=True, help="Rerun the task even if it is complete.")
@click.option("--force-all", is_flag=True, help="Rerun the task and everything upstream.")
@click.option("--pool", metavar="cpu=N,memory=Q,gpu=N", help="Resource pool (default: machine).")
@click.option(
    "--project",
    metavar="NAME",
    envvar="DAGMILL_PROJECT",
    show_envvar=True,
    help="The project the run belongs to: its tasks share its quota (default: default).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@guard
def run(
    target: str,
    params: tuple[str, ...],
    data_dir: str | None,
    nodes: tuple[str, ...],
    workers: int,
    force: bool,
    force_all: bool,
    pool: str | None,
    project: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run a task (or a pipeline file) and whatever it needs that is not complete."""
    pool_spec = _parse_pool(pool) if pool else None
    if project:
        _check_project(project)
    if is_pipeline_file(target):
        from dagmill.services.execution import RunOptions
        from dagmill.services.pipelines import run_pipeline

        _no_params(target, params)
        execute(
            lambda o: run_pipeline(
                target, data_dir, list(nodes) or None, force or force_all, options=o
            ),
            quiet,
            as_json,
            RunOptions(workers=workers, pool=pool_spec, project=project or None),
        )
        return
    if nodes:
        fail("--node is for pipeline files; for MODULE:TASK name the task itself")
    from dagmill.services.execution import RunOptions
    from dagmill.services.jobs import target_of
    from dagmill.services.tasks import run_task_list

    task = _load_target(target, params, data_dir)
    execute(
        lambda o: run_task_list([task], o),
        quiet,
        as_json,
        RunOptions(
            workers=workers,
            pool=pool_spec,
            project=project or None,
            forced_all=force,
            forced_all_upstream=force_all,
            target=target_of(target, parse_params(params), data_dir),
        ),
    )


@cli.command()
@_target_options
@click.option("--upstream", is_flag=True, help="Also reset everything the task needs.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@guard
def reset(
    target: str,
    params: tuple[str, ...],
    data_dir: str | None,
    nodes: tuple[str, ...],
    upstream: bool,
    yes: bool,
) -> None:
    """Delete a task's outputs (its upstream's too with --upstream; a pipeline's nodes)."""
    if is_pipeline_file(target):
        from dagmill.services.pipelines import reset_pipeline, reset_targets

        _no_params(target, params)
        chosen = list(nodes) or None
        outputs = reset_targets(target, data_dir, chosen, upstream)
        if not outputs:
            click.echo("nothing to reset: no outputs exist")
            return
        for location in outputs:
            click.echo(f"  {location}")
        confirm(f"Delete these {len(outputs)} outputs?", yes)
        gone = reset_pipeline(target, data_dir, chosen, upstream)
        click.echo(f"deleted {len(gone)} outputs")
        return
    from dagmill.services.tasks import tasks_to_reset

    victims = tasks_to_reset(_load_target(target, params, data_dir), upstream)
    if not victims:
        click.echo("nothing to reset: no outputs exist")
        return
    for t in victims:
        click.echo(f"  {t!r}")
    confirm(f"Delete the outputs of these {len(victims)} tasks?", yes)
    for t in victims:
        t.reset(confirm=False)
    click.echo(f"reset {len(victims)} tasks")


def _check_project(name: str) -> None:
    """A project name that is not one: said before the target is loaded (an unknown
    project is said by the run's own check, with how to create it)."""
    from dagmill.errors import DefinitionError
    from dagmill.model.projects import check_project_name

    try:
        check_project_name(name)
    except ValueError as e:
        raise DefinitionError(f"--project: {e}") from None


def _parse_pool(text: str) -> dict[str, str]:
    from dagmill.errors import ResourceError

    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ResourceError(f"--pool {text!r}: expected cpu=N,memory=Q,gpu=N")
        out[key.strip()] = value.strip()
    return out


@cli.command()
@click.argument("file", metavar="PIPELINE.yaml")
@click.option(
    "--data", "data_dir", metavar="DIR", type=DATA_DIR, help="Data root (default: ./data)."
)
@guard
def validate(file: str, data_dir: str | None) -> None:
    """Check a pipeline file: exit 0 if it is valid, 2 with every problem if not."""
    from dagmill.services.pipelines import validate as check

    compiled = check(file, data_dir)
    spec, reqs = compiled.spec, len(compiled.requirements)
    click.echo(
        f"{file}: valid ({len(spec.dataNodes)} data nodes, {len(spec.processNodes)} process "
        f"nodes{', scheduled' if spec.schedule else ''}"
        f"{f', {reqs} requirements' if reqs else ''})"
    )


@cli.command()
@click.argument("what", type=click.Choice(["pipeline"]))
def schema(what: str) -> None:
    """Print the JSON Schema of pipeline files."""
    from dagmill.services.pipelines import pipeline_schema

    click.echo(json.dumps(pipeline_schema(), indent=2))


@cli.command()
@click.argument("file", metavar="PIPELINE.yaml")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text")
@click.option("--data", "data_dir", metavar="DIR", type=DATA_DIR)
@guard
def graph(file: str, fmt: str, data_dir: str | None) -> None:
    """Draw a pipeline: data nodes and the process nodes between them."""
    from dagmill.services.pipelines import graph_text

    if not is_pipeline_file(file):
        fail(
            f"{file}: graph draws pipeline files (PIPELINE.yaml); for MODULE:TASK, "
            f"`dagmill preview {file}` shows its task tree"
        )

    click.echo(graph_text(file, fmt, data_dir))


@cli.group()
def db() -> None:
    """The run record's database."""


@db.command("upgrade")
@guard
def db_upgrade() -> None:
    """Create the database, or bring its schema up to this dagmill's (done on first use)."""
    from dagmill.services.admin import upgrade_database

    info = upgrade_database()
    click.echo(f"{info.url}: schema version {info.schema_version} (latest)")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@guard
def gc(dry_run: bool) -> None:
    """Remove expired runs of jobs and their logs (each job's TTL strategy)."""
    from dagmill.services.runs import collect_garbage

    gone = collect_garbage(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(gone)} expired runs" + (": " + ", ".join(gone) if gone else ""))


def _register() -> None:
    from dagmill.cli.jobs import jobs
    from dagmill.cli.projects import projects
    from dagmill.cli.runs import runs
    from dagmill.cli.server import server
    from dagmill.cli.tokens import tokens

    cli.add_command(runs)
    cli.add_command(jobs)
    cli.add_command(projects)
    cli.add_command(server)
    cli.add_command(tokens)


_register()


def main() -> None:
    cli(prog_name="dagmill")


if __name__ == "__main__":  # pragma: no cover
    main()
