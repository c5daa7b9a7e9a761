"""``dagmill projects``: projects and their resource quotas, and what uses them now."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dagmill.cli.common import confirm, fail, guard, remote_mode

if TYPE_CHECKING:
    from dagmill.services.projects import ProjectView


@click.group()
def projects() -> None:
    """Projects: jobs and runs belong to one, and the tasks of all its runs share its
    resource quota (a task that does not fit waits PENDING until room frees up).

    \b
    dagmill projects create ml --cpu 8 --memory 16Gi --gpu 1
    dagmill jobs build flows.py:Train --project ml
    dagmill projects show ml
    """


def _quota_options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option("--gpu", metavar="N", help="Whole GPUs at once.")(fn)
    fn = click.option("--memory", metavar="SIZE", help="Memory at once: 512Mi, 16Gi, 1T.")(fn)
    fn = click.option("--cpu", metavar="N", help="CPUs at once: 8, 1.5 or 500m.")(fn)
    return fn


@projects.command("create")
@click.argument("name")
@_quota_options
@click.option("--description", default="", help="What the project is for.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.option("--json", "as_json", is_flag=True)
@guard
def projects_create(
    name: str,
    cpu: str | None,
    memory: str | None,
    gpu: str | None,
    description: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Create a project with a quota: what its running tasks may request at once, summed
    over all its runs (a resource not given: no limit)."""
    from dagmill.services.projects import create_project, show_project

    if remote_mode():
        _admin_only(f"projects create {name}")
    create_project(name, cpu, memory, gpu, description)
    _done(show_project(name), quiet, as_json, "created")


@projects.command("list")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("-q", "--quiet", is_flag=True, help="Only the names, one a line.")
@click.option("--json", "as_json", is_flag=True)
@guard
def projects_list(wide: bool, quiet: bool, as_json: bool) -> None:
    """List projects: each resource as in use/limit (∞: no limit), tasks RUNNING (holding
    part of the quota) and PENDING (waiting for room), and how many JOBS belong to it."""
    from dagmill.services.projects import list_projects

    views = list_projects()
    if as_json:
        import json

        from dagmill.services.wire import project_json

        click.echo(json.dumps([project_json(v) for v in views], indent=2))
        return
    if quiet:
        for v in views:
            click.echo(v.info.name)
        return
    from dagmill.cli.render import projects_table

    projects_table(views, wide)


@projects.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@guard
def projects_show(name: str, as_json: bool) -> None:
    """One project: its quota, its use now, the running tasks holding it (with their
    runs) and the pending tasks waiting for room (why, and for how long)."""
    from dagmill.services.projects import show_project

    view = show_project(name)
    if as_json:
        import json

        from dagmill.services.wire import project_json

        click.echo(json.dumps(project_json(view), indent=2))
        return
    from dagmill.cli.render import project_detail

    project_detail(view)


@projects.command("set")
@click.argument("name")
@_quota_options
@click.option(
    "--unset",
    multiple=True,
    metavar="RESOURCE",
    help="Remove the limit on cpu, memory or gpu (repeat for several).",
)
@click.option("--description", default=None, help="A new description.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.option("--json", "as_json", is_flag=True)
@guard
def projects_set(
    name: str,
    cpu: str | None,
    memory: str | None,
    gpu: str | None,
    unset: tuple[str, ...],
    description: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Change a project's quota or description (the default project's too). Tasks
    waiting for room are tried again at once: a larger quota may fit them."""
    from dagmill.services.projects import misfits, set_project, show_project

    set_project(name, cpu, memory, gpu, unset, description)
    _done(show_project(name), quiet, as_json, "changed")
    lost = [] if remote_mode() else misfits(name)  # the server's jobs are not readable here
    if lost and not quiet:
        click.echo(
            f"warning: the quota of {name} no longer fits {len(lost)} task(s); their runs"
            " are refused or wait until it is raised:",
            err=True,
        )
        for line in lost[:10]:
            click.echo(f"  {line}", err=True)


@projects.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@guard
def projects_delete(name: str, yes: bool, quiet: bool) -> None:
    """Delete a project that no job and no run in progress belongs to (not default)."""
    from dagmill.services.projects import delete_project, show_project

    if remote_mode():
        _admin_only(f"projects delete {name}")
    show_project(name)  # an unknown name: said before asking
    confirm(f"Delete project {name}?", yes)
    delete_project(name)
    if not quiet:
        click.echo(f"deleted project {name}")


def _done(view: ProjectView, quiet: bool, as_json: bool, verb: str) -> None:
    if as_json:
        import json

        from dagmill.services.wire import project_json

        click.echo(json.dumps(project_json(view), indent=2))
    elif not quiet:
        from dagmill.cli.render import quota_text

        click.echo(f"{verb} project {view.info.name}: {quota_text(view.usage)}")


def _admin_only(command: str) -> None:
    fail(
        f"`dagmill {command}` needs local admin access on the server: run it on the "
        "server's machine, without DAGMILL_SERVER (over the API a project's admin token "
        "can change its quota: `dagmill projects set`)"
    )
