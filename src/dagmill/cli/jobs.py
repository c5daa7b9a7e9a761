"""``dagmill jobs``: build a pipeline into a job once, run it many times."""

from __future__ import annotations

import click

from dagmill.cli.common import DATA_DIR, confirm, execute, guard, parse_params


@click.group()
def jobs() -> None:
    """Jobs: validated pipelines with their definition's version pinned, run on demand."""
    from dagmill.cli.runs import recover

    recover()


@jobs.command("build")
@click.argument("target", metavar="MODULE:TASK|PIPELINE.yaml")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="MODULE:TASK only."
)
@click.option(
    "--data", "data_dir", metavar="DIR", type=DATA_DIR, help="Folder for task outputs (./data)."
)
@click.option("--name", help="The job's name (default: the task's family or the file's name).")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_build(
    target: str, params: tuple[str, ...], data_dir: str | None, name: str | None, as_json: bool
) -> None:
    """Validate a pipeline and record it as a job; prints the job id.

    \b
    TARGET is a task of a Python file (flows.py:Train -p lr=0.1) or a pipeline file
    (pipeline.yaml: its modules are pinned too, and its schedule kept).
    """
    from dagmill.services.jobs import build_job

    job = build_job(target, parse_params(params), data_dir, name)
    from dagmill.cli.jsonout import dumps

    if as_json:
        click.echo(dumps(job))
    else:
        click.echo(job.id)


@jobs.command("list")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_list(wide: bool, as_json: bool) -> None:
    """List jobs with their status (their latest run's)."""
    from dagmill.services.jobs import list_jobs

    items = list_jobs()
    from dagmill.cli.jsonout import dumps

    if as_json:
        click.echo(dumps(items))
        return
    from dagmill.cli.render import jobs_table

    jobs_table(items, wide)


@jobs.command("show")
@click.argument("job_id")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_show(job_id: str, wide: bool, as_json: bool) -> None:
    """One job: what it runs, its pinned version, and its recent runs."""
    from dagmill.services.jobs import get_job
    from dagmill.services.runs import get_runs

    job = get_job(job_id)
    recent = get_runs(limit=10, job_id=job.id)
    from dagmill.cli.jsonout import dumps

    if as_json:
        click.echo(dumps({"job": job, "runs": recent}))
        return
    from dagmill.cli.render import job_detail

    job_detail(job, recent, wide)


@jobs.command("run")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Run here and wait (default: in the background).")
@click.option("-w", "--workers", default=1, show_default=True)
@click.option("--run-id", hidden=True, help="Take over this queued run (used by `jobs run`).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_run(
    job_id: str, wait: bool, workers: int, run_id: str | None, quiet: bool, as_json: bool
) -> None:
    """Run a job: in the background (prints the run id), or here with --wait."""
    from dagmill.services.jobs import run_job, start_job

    if not wait:
        started = start_job(job_id, workers=workers)
        if as_json:  # the run as `runs list --json` shows it (queued, or already going)
            from dagmill.cli.jsonout import dumps
            from dagmill.services.runs import get_run

            click.echo(dumps(get_run(started)))
        else:
            click.echo(started)
        return
    execute(lambda **kw: run_job(job_id, run_id=run_id, **kw), quiet, as_json, workers=workers)


@jobs.command("delete")
@click.argument("job_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@guard
def jobs_delete(job_id: str, yes: bool) -> None:
    """Delete a job and its runs from the record (the data it wrote stays)."""
    from dagmill.services.jobs import delete_job, get_job

    job = get_job(job_id)
    confirm(f"Delete job {job.id} ({job.name}) and its runs?", yes)
    gone = delete_job(job.id)
    click.echo(f"deleted job {job.id} and {len(gone)} runs")
