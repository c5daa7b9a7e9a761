"""``dagmill jobs``: build a pipeline into a job once, run it many times."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dagmill.cli.common import (
    DATA_DIR,
    confirm,
    execute,
    follow_remote,
    guard,
    parse_params,
    remote_mode,
)
from dagmill.errors import DefinitionError

if TYPE_CHECKING:
    from dagmill.model.schedules import ScheduleSpec


@click.group()
def jobs() -> None:
    """Jobs: validated pipelines with their definition's version pinned, run on demand or
    on a schedule (a running `dagmill server` fires the slots)."""
    from dagmill.cli.runs import recover

    recover()


_OVERLAP = ["skip", "queue", "allow"]
_CATCHUP = ["latest", "all", "none"]


@jobs.command("build")
@click.argument("target", metavar="MODULE:TASK|PIPELINE.yaml")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="MODULE:TASK only."
)
@click.option(
    "--data", "data_dir", metavar="DIR", type=DATA_DIR, help="Folder for task outputs (./data)."
)
@click.option("--name", help="The job's name (default: the task's family or the file's name).")
@click.option("--cron", metavar="EXPR", help='Run on a schedule: "5 10 * * *", @daily, ...')
@click.option("--every", metavar="PERIOD", help="Or every 30s, 30m, 1h, 1d, 1w from --start.")
@click.option("--timezone", metavar="TZ", help="IANA timezone of the schedule (UTC).")
@click.option("--start", metavar="DATE", help="First slot at or after (YYYY-MM-DD[ HH:MM]).")
@click.option("--end", metavar="DATE", help="No slot after this date (inclusive).")
@click.option(
    "--overlap",
    type=click.Choice(_OVERLAP),
    help="A slot due while a run goes on: skip it (default), queue it, or allow both.",
)
@click.option(
    "--catchup",
    type=click.Choice(_CATCHUP),
    help="Slots missed while no server ran: run the latest (default), all, or none.",
)
@click.option("--slot-param", metavar="NAME", help="The task parameter that gets the slot.")
@click.option(
    "--project",
    metavar="NAME",
    envvar="DAGMILL_PROJECT",
    show_envvar=True,
    help="The project the job belongs to: its runs share its quota (default: default).",
)
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_build(
    target: str,
    params: tuple[str, ...],
    data_dir: str | None,
    name: str | None,
    cron: str | None,
    every: str | None,
    timezone: str | None,
    start: str | None,
    end: str | None,
    overlap: str | None,
    catchup: str | None,
    slot_param: str | None,
    project: str | None,
    as_json: bool,
) -> None:
    """Validate a pipeline and record it as a job; prints the job id.

    \b
    TARGET is a task of a Python file (flows.py:Train -p lr=0.1) or a pipeline file
    (pipeline.yaml: its modules are pinned too, and its schedule kept unless
    --cron/--every replace it).
    \b
    dagmill jobs build flows.py:Train --cron "5 10 * * *" --timezone Europe/Paris
    dagmill jobs build flows.py:Sync --every 1h --start "2026-12-01 00:00"
    dagmill jobs build flows.py:Daily --cron "0 2 * * *" --slot-param day
    """
    from dagmill.model.schedules import JobPolicy
    from dagmill.services.jobs import build_job, file_schedule

    schedule = _schedule(cron, every, timezone, start, end)
    policy = JobPolicy(overlap or "skip", catchup or "latest", slot_param)
    if schedule is None and (overlap or catchup):
        which = "--overlap" if overlap else "--catchup"
        raise DefinitionError(f"{which} is a policy of a schedule: add --cron or --every")
    replaced = file_schedule(target) if schedule is not None else None
    job = build_job(
        target,
        parse_params(params),
        data_dir,
        name,
        schedule=schedule,
        policy=policy,
        project=project or None,
    )
    from dagmill.services.wire import dumps

    if as_json:
        click.echo(dumps(job))
        return
    click.echo(job.id)
    if remote_mode():  # nothing of this machine's data went up: say where the job's is
        click.echo(
            f"built on the server; its data folder is there: {job.data_dir} "
            "(inputs the pipeline reads must be in it)",
            err=True,
        )
    if replaced is not None:
        click.echo(
            f"the schedule flags replace {target}'s own schedule ({replaced.describe()})",
            err=True,
        )
    if job.schedule is not None:
        from dagmill.cli.render import local_and_utc
        from dagmill.services.jobs import next_fires

        fires = next_fires(job.id, 1)
        when = local_and_utc(fires[0], job.schedule.timezone) if fires else "never (ended)"
        click.echo(f"schedule {job.schedule.describe()}; next run {when}", err=True)


def _schedule(
    cron: str | None,
    every: str | None,
    timezone: str | None,
    start: str | None,
    end: str | None,
) -> ScheduleSpec | None:
    """The schedule the flags describe (None without --cron/--every)."""
    from dagmill.model.schedules import ScheduleSpec

    if cron is not None and every is not None:
        raise DefinitionError(
            f'--cron "{cron}" and --every {every}: a schedule is one or the other; keep one'
        )
    if cron is None and every is None:
        given = [f for f, v in (("--timezone", timezone), ("--start", start), ("--end", end)) if v]
        if given:
            raise DefinitionError(
                f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} a "
                "schedule: add --cron EXPR or --every PERIOD"
            )
        return None
    return ScheduleSpec(
        cron=cron, every=every, start_date=start, end_date=end, timezone=timezone or "UTC"
    )


@jobs.command("list")
@click.option("--project", metavar="NAME", help="Only the jobs of this project.")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_list(project: str | None, wide: bool, as_json: bool) -> None:
    """List jobs: kind (manual or scheduled), status, last run, next run (the next slot,
    in the job's timezone).

    \b
    A manual job is READY, RUNNING, SUCCESS or FAILED; a scheduled one PENDING (waiting
    for its next slot), RUNNING, SUCCESS, FAILED, PAUSED or ENDED (past its end date).
    """
    from dagmill.services.jobs import job_views

    if project is not None:
        from dagmill.services.projects import get_project

        get_project(project)  # a typo lists nothing, silently: say there is no such project
    views = job_views(project=project)
    if as_json:
        import json

        from dagmill.services.wire import job_view_json

        click.echo(json.dumps([job_view_json(v) for v in views], indent=2))
        return
    from dagmill.cli.render import jobs_table

    jobs_table(views, wide)


@jobs.command("show")
@click.argument("job_id")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_show(job_id: str, wide: bool, as_json: bool) -> None:
    """One job: what it runs, its pinned version, its schedule, and its recent runs."""
    from dagmill.services.jobs import job_view, skipped_slots
    from dagmill.services.runs import get_runs

    view = job_view(job_id)
    job = view.job
    recent = get_runs(limit=10, job_id=job.id)
    skipped = skipped_slots(job.id) if job.schedule is not None else []
    if as_json:
        import json

        from dagmill.services.wire import job_view_json, to_json

        out = {
            "job": job_view_json(view),
            "runs": to_json(recent),
            "skipped_slots": to_json(skipped),
        }
        click.echo(json.dumps(out, indent=2))
        return
    from dagmill.cli.render import job_detail

    job_detail(view, recent, skipped, wide)


@jobs.command("next")
@click.argument("job_id")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_next(job_id: str, count: int, as_json: bool) -> None:
    """When a scheduled job runs next: its next slots, local and UTC."""
    from dagmill.services.jobs import get_job, next_fires

    job = get_job(job_id)
    if job.schedule is None:
        raise DefinitionError(f"job {job.id} has no schedule: it runs by hand only")
    fires = next_fires(job.id, count)
    tz = job.schedule.timezone
    if as_json:
        import json

        from dagmill.scheduler.triggers import format_slot
        from dagmill.services.wire import iso

        out = {
            "job_id": job.id,
            "timezone": tz,
            "paused": job.paused,
            "next": [
                {"fires_at": t, "fires_at_iso": iso(t), "local": format_slot(t, tz)} for t in fires
            ],
        }
        click.echo(json.dumps(out, indent=2))
        return
    from dagmill.cli.render import next_table

    next_table(job, fires)


@jobs.command("pause")
@click.argument("job_id")
@guard
def jobs_pause(job_id: str) -> None:
    """Pause a job's schedule (its queued and running runs go on; it still runs by hand)."""
    from dagmill.services.jobs import pause_job

    job = pause_job(job_id)
    click.echo(f"paused job {job.id}: no slot of it fires until `dagmill jobs resume {job.id}`")


@jobs.command("resume")
@click.argument("job_id")
@guard
def jobs_resume(job_id: str) -> None:
    """Resume a paused job's schedule from now on (the slots it missed are not run)."""
    from dagmill.services.jobs import get_job, next_fires, resume_job

    if not get_job(job_id).paused:
        click.echo(f"job {get_job(job_id).id} is not paused: nothing to resume")
        return
    job = resume_job(job_id)
    assert job.schedule is not None
    fires = next_fires(job.id, 1)
    from dagmill.cli.render import local_and_utc

    when = local_and_utc(fires[0], job.schedule.timezone) if fires else "never (ended)"
    click.echo(
        f"resumed job {job.id}; next run {when} (slots missed while paused are not run: "
        f"`dagmill jobs backfill {job.id} --from DATE --to DATE` runs them)"
    )


@jobs.command("backfill")
@click.argument("job_id")
@click.option("--from", "start", required=True, metavar="DATE", help="First slot (local).")
@click.option(
    "--to", "end", required=True, metavar="DATE", help="Last slot (local; a date: all that day)."
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_backfill(job_id: str, start: str, end: str, yes: bool, as_json: bool) -> None:
    """Queue one run per past slot of a job from --from to --to (dates in its timezone).

    \b
    Slots already decided (run or skipped by the scheduler, or backfilled before) are
    not run twice. A server runs the runs, oldest slot first, one at a time unless the
    job's overlap is allow.
    """
    from dagmill.services.jobs import backfill_job, backfill_slots, get_job, live_server

    job = get_job(job_id)
    slots, _, _ = backfill_slots(job.id, start, end)
    if not slots:
        raise DefinitionError(f"job {job.id} has no slot from {start} to {end} (up to now)")
    confirm(f"Queue up to {len(slots)} runs of job {job.id} ({job.name})?", yes, doing="queue runs")
    result = backfill_job(job.id, start, end)
    if as_json:
        import json

        from dagmill.services.wire import backfill_json

        click.echo(json.dumps(backfill_json(result), indent=2))
        return
    assert job.schedule is not None
    from dagmill.cli.render import local_and_utc

    first, last = result.slots[0], result.slots[-1]
    tz = job.schedule.timezone
    click.echo(
        f"queued {len(result.queued)} runs of job {job.id} for slots "
        f"{local_and_utc(first, tz)} .. {local_and_utc(last, tz)}; "
        f"{result.already} slots were already decided (run, or skipped, before)"
    )
    if result.clamped:
        click.echo("(the range ends in the future: it stops now; the schedule runs the rest)")
    if result.queued and not remote_mode() and live_server() is None:
        click.echo("no server is running: start `dagmill server` to run them", err=True)


@jobs.command("run")
@click.argument("job_id")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="For this run only."
)
@click.option(
    "--wait",
    is_flag=True,
    help="Run here and wait (default: in the background); with a server: follow it there.",
)
@click.option(
    "-w",
    "--workers",
    default=1,
    show_default=True,
    help="Tasks at once (a run queued to a server gets the server's --workers).",
)
@click.option("--run-id", hidden=True, help="Take over this queued run (used by `jobs run`).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def jobs_run(
    job_id: str,
    params: tuple[str, ...],
    wait: bool,
    workers: int,
    run_id: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run a job: in the background (prints the run id; a running `dagmill server`
    starts it), or here with --wait. -p overrides its parameters for this run."""
    from dagmill.services.execution import RunOptions
    from dagmill.services.jobs import run_job, start_job

    overrides = parse_params(params)
    if wait and remote_mode():  # queued on the server (with its --workers), followed here
        if run_id is not None:
            raise DefinitionError("--run-id is for a server's runners, on its machine")
        follow_remote(start_job(job_id, overrides, workers=workers), quiet, as_json)
        return
    if not wait:
        started = start_job(job_id, overrides, workers=workers)
        if as_json:  # the run as `runs list --json` shows it (queued, or already going)
            from dagmill.services.runs import get_run
            from dagmill.services.wire import dumps

            click.echo(dumps(get_run(started)))
        else:
            click.echo(started)
        return
    execute(
        lambda o: run_job(job_id, run_id=run_id, params=overrides, options=o),
        quiet,
        as_json,
        RunOptions(workers=workers),
    )


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
