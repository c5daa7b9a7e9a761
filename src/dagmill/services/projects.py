"""Projects: the unit of resource quota that jobs and runs belong to.

    create_project("ml", cpu="8", memory="16Gi", gpu="1")
    view = show_project("ml")          # quota, use now, running and pending tasks
    set_project("ml", cpu="4", unset=("gpu",))
    delete_project("ml")               # refused while jobs or runs in progress use it

A quota limits what the running tasks of the project request at once, summed over every
run and server. A resource it does not name is unlimited, except in ``default`` (it
always exists), where it is this machine's capacity. Bad input raises DefinitionError
(ResourceError for a bad quantity) before anything is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagmill.errors import DefinitionError, ResourceError
from dagmill.executors.machine import machine_capacity
from dagmill.model.projects import (
    DEFAULT_PROJECT,
    ProjectInfo,
    ProjectUsage,
    Quota,
    check_project_name,
)
from dagmill.services.remote import remote_ok
from dagmill.services.wake import wake_server
from dagmill.store import Store, open_store

__all__ = [
    "RESOURCES",
    "ProjectView",
    "create_project",
    "delete_project",
    "get_project",
    "list_projects",
    "misfits",
    "parse_quota",
    "pending_since",
    "set_project",
    "show_project",
]

RESOURCES = ("cpu", "memory", "gpu")
_RUNS_NAMED = 5  # runs or jobs named in a refusal (then "+N more")


@dataclass(frozen=True, slots=True)
class ProjectView:
    """A project now: its usage (quota as set and as enforced, what its running tasks
    hold, what waits) and how many jobs and runs in progress (PENDING or RUNNING)
    belong to it."""

    usage: ProjectUsage
    jobs: int
    open_runs: int

    @property
    def info(self) -> ProjectInfo:
        return self.usage.project


def parse_quota(cpu: str | None = None, memory: str | None = None, gpu: str | None = None) -> Quota:
    """A quota from the command line's strings (``"8"``, ``"500m"``; ``"16Gi"``; ``"1"``);
    None leaves a resource out. A bad value raises ResourceError naming its flag."""
    given = {"cpu": cpu, "memory": memory, "gpu": gpu}
    for key, value in given.items():
        if value is None:
            continue
        try:
            Quota.parse({key: value})
        except ValueError as e:
            raise ResourceError(
                f"--{key} {value!r}: {e} (e.g. --cpu 8 --memory 16Gi --gpu 1)"
            ) from None
    return Quota.parse(given)


def _name(name: str) -> str:
    try:
        return check_project_name(name)
    except ValueError as e:
        raise DefinitionError(str(e)) from None


def _get(store: Store, name: str) -> ProjectInfo:
    info = store.get_project(name)
    if info is None:
        names = [p.name for p in store.list_projects()]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DefinitionError(
            f"no project {name!r}{hint}: see `dagmill projects list`, or create it with "
            f"`dagmill projects create {name} --cpu N --memory SIZE`"
        )
    return info


@remote_ok
def get_project(name: str) -> ProjectInfo:
    """A project by name (DefinitionError, with a did-you-mean, if there is none)."""
    with open_store() as store:
        return _get(store, name)


@remote_ok
def pending_since(project: str, run_id: str) -> dict[str, float]:
    """Since when each task of ``run_id`` waits for room in ``project`` (by task id)."""
    with open_store() as store:
        usage = store.project_usage(project, machine_capacity())
    if usage is None:
        return {}
    return {w.task_id: w.since for w in usage.waits if w.run_id == run_id}


@remote_ok
def create_project(
    name: str,
    cpu: str | None = None,
    memory: str | None = None,
    gpu: str | None = None,
    description: str = "",
) -> ProjectInfo:
    """A new project with a quota (a resource not given: unlimited)."""
    _name(name)
    quota = parse_quota(cpu, memory, gpu)
    with open_store() as store:
        info = store.create_project(name, quota, description)
    if info is None:
        raise DefinitionError(
            f"project {name!r} exists already: change its quota with "
            f"`dagmill projects set {name} --cpu N ...`"
        )
    return info


@remote_ok
def list_projects() -> list[ProjectView]:
    """Every project (by name) with its use now."""
    with open_store() as store:
        return [_view(store, p.name) for p in store.list_projects()]


@remote_ok
def show_project(name: str) -> ProjectView:
    """One project with its use now: running tasks with their runs, pending ones with
    their reasons and since when they wait."""
    with open_store() as store:
        _get(store, name)
        return _view(store, name)


def _view(store: Store, name: str) -> ProjectView:
    usage = store.project_usage(name, machine_capacity())
    if usage is None:  # deleted between the listing and now
        raise DefinitionError(f"no project {name!r}: it was just deleted")
    jobs, runs = store.project_use(name)
    return ProjectView(usage, jobs, runs)


@remote_ok
def set_project(
    name: str,
    cpu: str | None = None,
    memory: str | None = None,
    gpu: str | None = None,
    unset: Sequence[str] = (),
    description: str | None = None,
) -> ProjectInfo:
    """Change a project's quota (``unset``: resources to make unlimited; in ``default``,
    back to this machine's capacity) and/or its description. Tasks waiting in the
    project are woken: a larger quota may make room for them."""
    _name(name)
    for key in unset:
        if key not in RESOURCES:
            close = difflib.get_close_matches(key, RESOURCES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DefinitionError(f"--unset {key!r}: not a resource{hint}; use cpu, memory or gpu")
    both = [k for k, v in (("cpu", cpu), ("memory", memory), ("gpu", gpu)) if v and k in unset]
    if both:
        raise DefinitionError(
            f"--{both[0]} and --unset {both[0]}: set a limit or remove it, not both"
        )
    change = parse_quota(cpu, memory, gpu)
    if change.unlimited and not unset and description is None:
        raise DefinitionError(
            f"nothing to change in project {name}: give --cpu, --memory, --gpu, "
            "--unset RESOURCE or --description"
        )
    with open_store() as store:
        info = _get(store, name)
        quota = None
        if not change.unlimited or unset:
            quota = info.quota.merged(change, tuple(unset))
        if not store.update_project(name, quota, description):
            raise DefinitionError(f"no project {name!r}: it was just deleted")
        updated = _get(store, name)
    wake_server()
    return updated


def misfits(name: str) -> list[str]:
    """What the project's quota can no longer fit: tasks of its jobs (as built) and tasks
    waiting now that ask for more than the whole quota; one line each, for a warning."""
    with open_store() as store:
        usage = store.project_usage(name, machine_capacity())
        if usage is None:
            return []
        out = [
            f"job {job.id} ({job.name}): {label} asks for {', '.join(over)}"
            for job in store.list_jobs(limit=1000, project=name)
            for label, request in job.requests.items()
            if (over := usage.limits.too_big(request))
        ]
        out += [
            f"run {w.run_id}: {w.task_id}, waiting, asks for {', '.join(over)}"
            for w in usage.waits
            if (over := usage.limits.too_big(w.request))
        ]
    return out


@remote_ok
def delete_project(name: str) -> None:
    """Delete a project. Refused for ``default``, and while jobs or runs in progress
    belong to it (saying which, and how to be done with them); finished runs keep its
    name in their record."""
    _name(name)
    if name == DEFAULT_PROJECT:
        raise DefinitionError(
            "the project 'default' cannot be deleted: runs and jobs without a project "
            "belong to it (change its quota with `dagmill projects set default ...`)"
        )
    with open_store() as store:
        _get(store, name)
        jobs = store.list_jobs(limit=1000, project=name)
        runs = [
            r
            for status in ("RUNNING", "PENDING")
            for r in store.list_runs(status=status, limit=1000, project=name)
        ]
        problems: list[str] = []
        if jobs:
            problems.append(
                f"{len(jobs)} job{'s' if len(jobs) > 1 else ''} "
                f"({_some(j.id for j in jobs)}): delete them (`dagmill jobs delete {jobs[0].id}`)"
            )
        if runs:
            problems.append(
                f"{len(runs)} run{'s' if len(runs) > 1 else ''} in progress "
                f"({_some(r.id for r in runs)}): cancel them, or let them end "
                f"(`dagmill runs cancel {runs[0].id}`)"
            )
        if problems:
            raise DefinitionError(
                f"project {name} is in use: it has {'; and '.join(problems)}; then delete it"
            )
        if not store.delete_project(name):
            raise DefinitionError(
                f"project {name} came into use as it was being deleted (a job built or a "
                f"run started): see `dagmill projects show {name}`"
            )


def _some(ids: Iterable[str]) -> str:
    items = list(ids)
    shown = ", ".join(items[:_RUNS_NAMED])
    more = len(items) - _RUNS_NAMED
    return shown + (f" +{more} more" if more > 0 else "")
