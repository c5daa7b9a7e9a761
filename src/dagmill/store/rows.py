"""How the rows of runs and jobs are read into model values (shared by the store's
modules: the columns and the function that reads them stay side by side)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dagmill.model.resources import Resources
from dagmill.model.runs import JobInfo, RunInfo, RunTarget
from dagmill.model.schedules import JobPolicy, ScheduleSpec

__all__ = ["JOB_COLS", "RUN_COLS", "job_row", "run_row"]

RUN_COLS = (
    "id, name, status, created_at, started_at, ended_at, job_id, project, owner, error, "
    "counts, options, target, heartbeat_at, scheduled_for, server_id"
)


def _object(text: str | None) -> Any:
    # most runs have no counts or options: "{}" is not parsed (lists of runs read many)
    return {} if not text or text == "{}" else json.loads(text)


def run_row(r: Sequence[Any]) -> RunInfo:
    return RunInfo(
        id=r[0],
        name=r[1],
        status=r[2],
        created_at=r[3],
        started_at=r[4],
        ended_at=r[5],
        job_id=r[6],
        project=r[7],
        owner=r[8],
        error=r[9],
        counts=_object(r[10]),
        options=_object(r[11]),
        target=RunTarget.from_json(json.loads(r[12])) if r[12] else None,
        heartbeat_at=r[13],
        scheduled_for=r[14],
        server_id=r[15],
    )


# a job's status and last run are its latest run's: index lookups (runs_by_job)
JOB_COLS = (
    "j.id, j.name, j.project, p.kind, p.ref, p.version, j.params, j.data_dir, j.created_at,"
    " j.ttl, j.schedule,"
    " (SELECT r.status FROM runs r WHERE r.job_id = j.id ORDER BY r.created_at DESC LIMIT 1),"
    " (SELECT r.id FROM runs r WHERE r.job_id = j.id ORDER BY r.created_at DESC LIMIT 1),"
    " j.overlap, j.catchup, j.slot_param, j.paused, j.last_slot_at, j.requests,"
    " j.bundle"
)


def job_row(r: Sequence[Any]) -> JobInfo:
    return JobInfo(
        id=r[0],
        name=r[1],
        project=r[2],
        kind=r[3],
        ref=r[4],
        version=r[5],
        params=json.loads(r[6] or "{}"),
        data_dir=r[7],
        created_at=r[8],
        ttl=json.loads(r[9] or "{}"),
        schedule=ScheduleSpec.from_json(json.loads(r[10])) if r[10] else None,
        status=r[11] or "READY",
        last_run=r[12],
        policy=JobPolicy(overlap=r[13], catchup=r[14], slot_param=r[15]),
        paused=bool(r[16]),
        last_slot_at=r[17],
        requests={k: Resources.parse(v) for k, v in json.loads(r[18] or "{}").items()},
        bundle=r[19],
    )
