"""``/projects``: the token's project, its quota and its use now (another project's name
is a 404 as a project that does not exist)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from dagmill.api.auth import Admin, Caller, Viewer
from dagmill.api.errors import ApiError, BadRequest, NotFound
from dagmill.api.pages import decode_cursor
from dagmill.api.schemas import Page
from dagmill.api.schemas.projects import ProjectIn, ProjectOut
from dagmill.model.projects import Quota
from dagmill.services import projects
from dagmill.services.wire import project_json

__all__ = ["router"]

router = APIRouter(tags=["projects"])

ProjectName = Annotated[str, Path(description="The project's name (the token's own).")]


def _own(name: str, caller: Caller) -> str:
    if name != caller.project:
        raise NotFound(f"no project {name!r}: this token's project is {caller.project}")
    return name


@router.get(
    "/projects",
    response_model=Page[ProjectOut],
    response_model_exclude_unset=True,
    summary="The token's project, with its use now",
)
def list_projects(
    caller: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before.")] = None,
) -> Any:
    # one project per token: the first page holds it, and a cursor can only come after it
    first = decode_cursor(cursor) is None
    items = [project_json(projects.show_project(caller.project))] if first else []
    return {"items": items, "next_cursor": None}


@router.get(
    "/projects/{name}",
    response_model=ProjectOut,
    response_model_exclude_unset=True,
    summary="A project: quota, use now, running tasks, and what pending ones wait for",
)
def get_project(name: ProjectName, caller: Viewer) -> Any:
    return project_json(projects.show_project(_own(name, caller)))


@router.patch(
    "/projects/{name}",
    response_model=ProjectOut,
    response_model_exclude_unset=True,
    summary="Change a project's quota or description",
    description="Tasks waiting for room in the project are woken: a larger quota may "
    "make room for them.",
)
def patch_project(name: ProjectName, body: ProjectIn, caller: Admin) -> Any:
    _own(name, caller)
    given = body.model_dump(exclude_unset=True)
    limits = {k: given[k] for k in projects.RESOURCES if given.get(k) is not None}
    if not limits and given.get("description") is None:
        raise BadRequest(
            'nothing to change: give cpu, memory, gpu ("" removes a limit) or description'
        )
    for key, value in limits.items():
        if value.strip():
            try:
                Quota.parse({key: value.strip()})
            except ValueError as e:
                raise ApiError(f"{key} {value!r}: {e}", f"body.{key}", 422) from None
    projects.set_project(
        name,
        **{k: v.strip() for k, v in limits.items() if v.strip()},
        unset=[k for k, v in limits.items() if not v.strip()],
        description=given.get("description"),
    )
    return project_json(projects.show_project(name))
