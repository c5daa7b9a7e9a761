"""``dagmill runs``: the run record (list, show, logs, cancel, delete, rerun, resume)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from dagmill.cli.common import (
    EXIT_CANCELLED,
    confirm,
    execute,
    fail,
    follow_remote,
    guard,
    remote_mode,
)

if TYPE_CHECKING:
    from dagmill.model.runs import RunInfo

_STATUSES = ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]


def _run_or_fail(run_id: str) -> RunInfo:
    from dagmill.services.runs import find_run

    info = find_run(run_id)
    if info is None:
        fail(f"no run {run_id!r} (or more than one starts so): see `dagmill runs list`")
    return info


@click.group()
@click.pass_context
def runs(ctx: click.Context) -> None:
    """Runs in the run record: list, show, logs, cancel, delete, rerun, resume."""
    if ctx.invoked_subcommand != "resume":  # resuming one by hand: do not race it
        recover()


def recover() -> None:
    """Runs whose engine died are resumed by the next dagmill command that looks at runs."""
    from dagmill.errors import DagmillError
    from dagmill.services.runs import recover_orphans

    try:
        if remote_mode():
            return  # the server resumes its runs itself
        for run_id in recover_orphans():
            click.echo(f"run {run_id}: its engine died; resuming it in the background", err=True)
    except DagmillError:
        pass  # a broken store is reported by the command itself


@runs.command("list")
@click.option("--status", type=click.Choice(_STATUSES, case_sensitive=False))
@click.option("--job", "job_id", help="Only the runs of this job.")
@click.option("--project", help="Only the runs of this project.")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def runs_list(
    status: str | None,
    job_id: str | None,
    project: str | None,
    limit: int,
    wide: bool,
    as_json: bool,
) -> None:
    """List recent runs, newest first."""
    from dagmill.services.runs import get_runs

    if project is not None:
        from dagmill.services.projects import get_project

        get_project(project)  # a typo lists nothing, silently: say there is no such project
    items = get_runs(status=status, limit=limit, job_id=job_id, project=project)
    from dagmill.services.wire import dumps

    if as_json:
        click.echo(dumps(items))
        return
    if not items and (status or job_id or project):  # "no runs yet" would be untrue
        given = {"--status": status, "--job": job_id, "--project": project}
        said = " ".join(f"{k} {v}" for k, v in given.items() if v)
        click.echo(f"no runs match {said}: `dagmill runs list` shows them all")
        return
    if not items and remote_mode():  # `dagmill run` would run here, not on the server
        click.echo("no runs yet: queue one with `dagmill jobs run JOB` (see `dagmill jobs list`)")
        return
    from dagmill.cli.render import runs_table

    runs_table(items, wide)


@runs.command("show")
@click.argument("run_id")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def runs_show(run_id: str, wide: bool, as_json: bool) -> None:
    """One run: each task's status, attempts, duration, and what a PENDING task waits for."""
    from dagmill.services.runs import get_run_tasks

    info = _run_or_fail(run_id)
    tasks = get_run_tasks(info.id)
    from dagmill.services.wire import dumps

    if as_json:
        click.echo(dumps({"run": info, "tasks": tasks}))
        return
    from dagmill.cli.render import run_detail

    since: dict[str, float] = {}
    if any(t.status == "PENDING" for t in tasks):
        from dagmill.services.projects import pending_since

        since = pending_since(info.project, info.id)
    run_detail(info, tasks, wide, since)


@runs.command("logs")
@click.argument("run_id")
@click.option("--task", "task", help="Only this task (id, id prefix or family).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@guard
def runs_logs(run_id: str, task: str | None, follow: bool) -> None:
    """What the tasks of a run printed (stdout, stderr, logging, their subprocesses)."""
    from dagmill.services.runs import follow_run_logs, get_run_logs_list

    info = _run_or_fail(run_id)
    chunks = follow_run_logs(info.id, task) if follow else get_run_logs_list(info.id, task)
    last = None
    try:
        for c in chunks:
            if task is None and (c.task_id, c.attempt) != last:
                click.echo(f"── {c.task_id} (attempt {c.attempt}) ──")
                last = (c.task_id, c.attempt)
            click.echo(c.text, nl=False)
            sys.stdout.flush()
    except KeyboardInterrupt:  # how one stops following: quietly, as `tail -f` does
        sys.exit(EXIT_CANCELLED)


@runs.command("cancel")
@click.argument("run_id")
@guard
def runs_cancel(run_id: str) -> None:
    """Cancel a run: its tasks and everything they started stop; the record says CANCELLED."""
    from dagmill.services.runs import cancel_run

    info = _run_or_fail(run_id)
    click.echo(cancel_run(info.id))


@runs.command("delete")
@click.argument("run_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@guard
def runs_delete(run_id: str, yes: bool) -> None:
    """Delete a run from the record, with its logs (the data it wrote stays)."""
    from dagmill.services.runs import delete_run

    info = _run_or_fail(run_id)
    if info.status in ("PENDING", "RUNNING"):
        fail(f"run {info.id} is {info.status}: cancel it first (`dagmill runs cancel {info.id}`)")
    confirm(f"Delete run {info.id} ({info.name}, {info.status})?", yes)
    delete_run(info.id)
    click.echo(f"deleted run {info.id}")


@runs.command("rerun")
@click.argument("run_id")
@click.option("--from-failed", is_flag=True, help="Only what failed (or never ran) reruns.")
@click.option("-w", "--workers", default=1, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def runs_rerun(run_id: str, from_failed: bool, workers: int, quiet: bool, as_json: bool) -> None:
    """Run what a run ran again: everything, or with --from-failed what did not succeed."""
    from dagmill.services.execution import RunOptions
    from dagmill.services.pipelines import run_target

    info = _run_or_fail(run_id)
    if remote_mode():  # queued on the server, which runs it with its own --workers
        from dagmill.services.runs import queue_rerun

        follow_remote(queue_rerun(info.id, from_failed).id, quiet, as_json)
        return
    if info.target is None:
        fail(
            f"run {info.id} was started from Python, not from MODULE:TASK, so dagmill cannot "
            "start it again: run it again from your code"
        )
    target = info.target
    execute(
        lambda o: run_target(target, o),
        quiet,
        as_json,
        RunOptions(
            workers=workers,
            forced_all_upstream=not from_failed,
            job_id=info.job_id,
            project=info.project,  # its quota still applies (and it must still exist)
        ),
    )


@runs.command("resume")
@click.argument("run_id")
@click.option("-w", "--workers", type=int, help="Tasks run at once (default: as the run had).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def runs_resume(run_id: str, workers: int | None, quiet: bool, as_json: bool) -> None:
    """Finish a run whose engine died: complete tasks stay, the rest runs (same run id)."""
    from dagmill.services.execution import RunOptions
    from dagmill.services.runs import resume_run

    if remote_mode():
        fail(
            f"runs resume works on the server's own machine: a server resumes the runs its "
            f"engines left by itself; to run again what did not finish: `dagmill runs rerun "
            f"{run_id} --from-failed`"
        )
    info = _run_or_fail(run_id)
    if workers is None:  # the automatic resume too: a 2-worker run goes on with 2
        recorded = info.options.get("workers")
        workers = recorded if isinstance(recorded, int) and recorded >= 1 else 1
    execute(lambda o: resume_run(info.id, o), quiet, as_json, RunOptions(workers=workers))
