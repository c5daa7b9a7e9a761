"""``/jobs``: the caller's project's jobs. Built from an uploaded bundle (admin), run
(operator), paused, resumed and backfilled (operator), deleted (admin); another
project's job is 404, as if it did not exist."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from pydantic import ValidationError

from dagmill.api.auth import Admin, Caller, Operator, Viewer
from dagmill.api.errors import ApiError, BadRequest, NotFound, TooLarge
from dagmill.api.pages import json_response, page
from dagmill.api.schemas import Page
from dagmill.api.schemas.jobs import (
    BackfillIn,
    BackfillOut,
    JobBuildIn,
    JobOut,
    JobRunIn,
    SkippedSlotOut,
    SlotsOut,
)
from dagmill.api.schemas.runs import RunOut
from dagmill.errors import ParameterError
from dagmill.model.runs import JobInfo
from dagmill.services import jobs
from dagmill.services.wire import backfill_json, iso, job_view_json, to_json

router = APIRouter(tags=["jobs"])
# a project's jobs are read whole, then filtered and paged (jobs are few; runs are many)
_ALL_JOBS = 100_000

JobId = Annotated[
    str, Path(description="The job's id (or a unique prefix of it)", min_length=1, max_length=200)
]


def _own_job(caller: Caller, job_id: str) -> JobInfo:
    """The caller's project's job, or 404 (another project's too: no existence leak)."""
    from dagmill.store import open_store

    with open_store() as store:
        job = store.get_job(job_id)
    if job is None or job.project != caller.project:
        raise NotFound(f"no job {job_id!r} in project {caller.project}")
    return job


@router.get("/jobs", response_model=Page[JobOut], summary="The project's jobs")
def list_jobs(
    caller: Viewer,
    status: Annotated[
        str | None, Query(description="READY, PENDING, RUNNING, SUCCESS, FAILED, PAUSED, ENDED")
    ] = None,
    name: Annotated[str | None, Query(description="Jobs whose name contains this")] = None,
    kind: Annotated[str | None, Query(description="python or yaml")] = None,
    trigger: Annotated[str | None, Query(description="manual or scheduled")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Any:
    found = [
        v
        for v in jobs.job_views(project=caller.project, limit=_ALL_JOBS)
        if (status is None or v.status == status.upper())
        and (name is None or name.lower() in v.job.name.lower())
        and (kind is None or v.job.kind == kind)
        and (trigger is None or v.trigger == trigger)
    ]
    return page(
        found, limit, cursor, key=lambda v: (v.job.created_at, v.job.id), render=job_view_json
    )


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job")
def get_job(job_id: JobId, caller: Viewer) -> Any:
    return job_view_json(jobs.job_view(_own_job(caller, job_id).id))


def _data_dir(spec: JobBuildIn, project: str) -> str | None:
    """The build's data folder: as given if absolute; a relative one is under the
    project's data folder on the server; None: the default (see JobBuildIn)."""
    if spec.data is None:
        return None
    if os.path.isabs(spec.data):
        return spec.data
    if ".." in PurePosixPath(spec.data).parts:
        raise ApiError(
            f"data {spec.data!r}: a relative data folder may not contain '..'",
            "spec.data",
            422,
        )
    from dagmill import settings

    return os.path.join(os.path.abspath(settings.home()), "data", project, spec.data)


def _spec(text: str) -> JobBuildIn:
    try:
        return JobBuildIn.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        field = f"spec.{where}" if where else "spec"
        raise ApiError(f"{field}: {first.get('msg', 'invalid')}", field, 422) from None


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=201,
    summary="Build a job from an uploaded bundle",
    description=(
        "multipart/form-data: `bundle`, a tar.gz of the job's files (what `dagmill jobs "
        "build` packs against a server: a pipeline file with its modules, or a Python "
        "file's folder), and `spec`, the JSON of JobBuildIn. The pipeline is validated as "
        "`dagmill jobs build` does (400 with the problems otherwise)."
    ),
)
def build_job(
    caller: Admin,
    bundle: Annotated[UploadFile, File(description="The tar.gz of the job's files")],
    spec: Annotated[str, Form(description="JSON of JobBuildIn", examples=['{"target": "p.yaml"}'])],
) -> Any:
    from dagmill.errors import DefinitionError
    from dagmill.model.schedules import JobPolicy, ScheduleSpec
    from dagmill.services.bundles import (
        BundleError,
        BundleTooLarge,
        bundle_folder,
        check_inner_ref,
        forget_bundle,
        store_bundle,
    )

    build = _spec(spec)
    try:
        check_inner_ref(build.target)
    except BundleError as e:
        raise ApiError(str(e), "spec.target", 422) from None
    data = _data_dir(build, caller.project)
    try:
        bundle_id = store_bundle(bundle.file.read())
    except BundleTooLarge as e:
        raise TooLarge(str(e), "bundle") from None
    except BundleError as e:
        raise ApiError(str(e), "bundle", 400) from None
    schedule = None
    if build.cron is not None or build.every is not None:
        schedule = ScheduleSpec(
            cron=build.cron,
            every=build.every,
            start_date=build.start,
            end_date=build.end,
            timezone=build.timezone or "UTC",
        )
    policy = JobPolicy(build.overlap or "skip", build.catchup or "latest", build.slot_param)
    try:
        job = jobs.build_job(
            build.target,
            build.params,
            data,
            build.name,
            ttl=build.ttl,
            schedule=schedule,
            policy=policy,
            project=caller.project,
            bundle=bundle_id,
        )
    except DefinitionError as e:
        # paths inside the bundle as the client knows them, not where this server has it
        message = str(e).replace(bundle_folder(bundle_id) + os.sep, "")
        forget_bundle(bundle_id)  # unless another job is built from it
        raise BadRequest(message) from None
    except BaseException:
        forget_bundle(bundle_id)
        raise
    return job_view_json(jobs.job_view(job.id))


@router.post("/jobs/{job_id}/pause", response_model=JobOut, summary="Pause its schedule")
def pause_job(job_id: JobId, caller: Operator) -> Any:
    job = jobs.pause_job(_own_job(caller, job_id).id)
    return job_view_json(jobs.job_view(job.id))


@router.post(
    "/jobs/{job_id}/resume",
    response_model=JobOut,
    summary="Resume its schedule from now on (the slots missed while paused are not run)",
)
def resume_job(job_id: JobId, caller: Operator) -> Any:
    job = jobs.resume_job(_own_job(caller, job_id).id)
    return job_view_json(jobs.job_view(job.id))


@router.get("/jobs/{job_id}/slots", response_model=SlotsOut, summary="Its next slots")
def next_slots(
    job_id: JobId,
    caller: Viewer,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> Any:
    from dagmill.errors import DefinitionError
    from dagmill.scheduler.triggers import format_slot

    job = _own_job(caller, job_id)
    if job.schedule is None:
        raise DefinitionError(f"job {job.id} has no schedule: it runs by hand only")
    tz = job.schedule.timezone
    return {
        "job_id": job.id,
        "timezone": tz,
        "paused": job.paused,
        "next": [
            {"fires_at": t, "fires_at_iso": iso(t), "local": format_slot(t, tz)}
            for t in jobs.next_fires(job.id, count)
        ],
    }


@router.get(
    "/jobs/{job_id}/skipped",
    response_model=list[SkippedSlotOut],
    summary="Its latest skipped slots, newest first, with the reason",
)
def skipped_slots(
    job_id: JobId,
    caller: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> Any:
    return to_json(jobs.skipped_slots(_own_job(caller, job_id).id, limit))


@router.post(
    "/jobs/{job_id}/backfill",
    response_model=BackfillOut,
    summary="Queue one run per past slot in a range",
)
def backfill_job(job_id: JobId, body: BackfillIn, caller: Operator) -> Any:
    return backfill_json(jobs.backfill_job(_own_job(caller, job_id).id, body.start, body.end))


@router.delete(
    "/jobs/{job_id}", status_code=204, summary="Delete a job and its runs (409 while running)"
)
def delete_job(job_id: JobId, caller: Admin) -> Response:
    from dagmill.api.errors import Conflict
    from dagmill.errors import DefinitionError

    job = _own_job(caller, job_id)
    try:
        jobs.delete_job(job.id)
    except DefinitionError as e:  # runs in progress
        raise Conflict(str(e)) from None
    return Response(status_code=204)


@router.post(
    "/jobs/{job_id}/run",
    response_model=RunOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Run a job (queued; the server starts it)",
    description='The body is optional: `{"params": {...}}` overrides the job\'s parameters '
    "for this run only.",
)
def run_job(
    job_id: JobId,
    caller: Operator,
    body: JobRunIn | None = None,
) -> Any:
    from dagmill.services.runs import get_run

    job = _own_job(caller, job_id)
    try:
        run_id = jobs.start_job(job.id, body.params if body is not None else None)
    except ParameterError as e:
        raise ApiError(str(e), "body.params", 422) from None
    return json_response(to_json(get_run(run_id)), 201)
