"""``/runs``: the token's project's runs (list, get with tasks, cancel, rerun, delete) and
their logs (whole, or followed as Server-Sent Events until the run ends).

Another project's run is a 404 exactly as a run that does not exist: ids and id
prefixes resolve among the token's project's runs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dagmill.api.auth import Admin, Operator, Viewer
from dagmill.api.errors import ApiError, Conflict, NotFound
from dagmill.api.pages import decode_cursor, encode_cursor, json_response
from dagmill.api.schemas import Page
from dagmill.api.schemas.runs import LogsOut, RunCancelOut, RunDetailOut, RunOut, RunStatus
from dagmill.errors import DefinitionError
from dagmill.logs import LogChunk
from dagmill.model.runs import RunInfo
from dagmill.services import runs
from dagmill.services.projects import pending_since
from dagmill.services.wire import to_json

__all__ = ["router"]

router = APIRouter(tags=["runs"])

_KEEP_ALIVE_SECONDS = 15.0
RunId = Annotated[
    str, Path(description="A run's id, or a prefix of it that only one of the project's runs has.")
]


def _run(run_id: str, project: str) -> RunInfo:
    """The project's run by id or unique prefix; 404 otherwise (another project's too)."""
    # a NUL is in no id (and PostgreSQL refuses it in a query)
    info = None if "\x00" in run_id else runs.find_run(run_id, project)
    if info is None:
        raise NotFound(
            f"no run {run_id!r} in project {project} (or more than one starts so): see GET /runs"
        )
    return info


def _since(text: str | None) -> float | None:
    """Seconds since the epoch, from a number of them or ISO 8601 (UTC if no offset)."""
    if text is None or not text.strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApiError(
            f"since: {text!r} is neither seconds since the epoch nor an ISO 8601 time "
            "(e.g. 1767225600 or 2026-01-01T00:00:00Z)",
            "query.since",
            422,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _keyset(cursor: str | None) -> tuple[float, str] | None:
    key = decode_cursor(cursor)
    if key is None:
        return None
    if (
        len(key) != 2
        or not isinstance(key[0], int | float)
        or not math.isfinite(key[0])
        or not isinstance(key[1], str)
        or "\x00" in key[1]
    ):
        raise ApiError("cursor is not one this API gave: use next_cursor as given", "cursor")
    return float(key[0]), key[1]


@router.get(
    "/runs",
    response_model=Page[RunOut],
    response_model_exclude_unset=True,
    summary="The project's runs, newest first",
)
def list_runs(
    caller: Viewer,
    status: RunStatus | None = None,
    job_id: Annotated[str | None, Query(description="Only this job's runs.")] = None,
    since: Annotated[
        str | None,
        Query(
            description="Only runs created at or after this time: seconds since the epoch, "
            "or ISO 8601 (UTC without an offset).",
            examples=["2026-01-01T00:00:00Z"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before.")] = None,
) -> Any:
    if job_id is not None and "\x00" in job_id:
        raise ApiError("job_id: no job's id has a NUL character", "query.job_id", 422)
    found = runs.get_runs(
        status=status,
        limit=limit + 1,  # one more: is there a next page?
        job_id=job_id,
        project=caller.project,
        since=_since(since),
        before=_keyset(cursor),
    )
    chunk = found[:limit]
    more = len(found) > limit
    return json_response(
        {
            "items": [to_json(r) for r in chunk],
            "next_cursor": encode_cursor((chunk[-1].created_at, chunk[-1].id)) if more else None,
        }
    )


@router.get(
    "/runs/{run_id}",
    response_model=RunDetailOut,
    response_model_exclude_unset=True,
    summary="A run with its tasks, their attempts, and why PENDING ones wait",
)
def get_run(run_id: RunId, caller: Viewer) -> Any:
    info = _run(run_id, caller.project)
    tasks = runs.get_run_tasks(info.id)
    since: dict[str, float] = {}
    if any(t.status == "PENDING" for t in tasks):
        since = pending_since(info.project, info.id)
    return {"run": to_json(info), "tasks": to_json(tasks), "pending_since": since}


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunCancelOut,
    response_model_exclude_unset=True,
    summary="Cancel a run: its tasks and what they started stop",
    responses={409: {"description": "The run runs on another host: cancel it there"}},
)
def cancel_run(run_id: RunId, caller: Operator) -> Any:
    info = _run(run_id, caller.project)
    try:
        message = runs.cancel_run(info.id)
    except DefinitionError as e:  # it runs on another host, out of this server's reach
        raise Conflict(str(e)) from None
    return {"run": to_json(runs.find_run(info.id, caller.project) or info), "message": message}


@router.post(
    "/runs/{run_id}/rerun",
    response_model=RunOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Queue a new run of what a run ran",
    description="The server starts it as it starts its queue (a job's runs one at a time "
    "unless the job allows overlap). Everything runs again, or with `from_failed=true` "
    "only what is not complete: what failed, or never ran.",
    responses={409: {"description": "The run was started from Python: it cannot be run again"}},
)
def rerun_run(
    run_id: RunId,
    caller: Operator,
    from_failed: Annotated[
        bool, Query(description="Only what did not succeed runs again.")
    ] = False,
) -> Any:
    info = _run(run_id, caller.project)
    if info.target is None:
        raise Conflict(
            f"run {info.id} was started from Python, so dagmill cannot start it again: "
            "run it again from your code"
        )
    return to_json(runs.queue_rerun(info.id, from_failed))


@router.delete(
    "/runs/{run_id}",
    status_code=204,
    summary="Delete a run, its tasks and its logs (the data it wrote stays)",
    responses={409: {"description": "The run is PENDING or RUNNING: cancel it first"}},
)
def delete_run(run_id: RunId, caller: Admin) -> Response:
    info = _run(run_id, caller.project)
    if info.status in ("PENDING", "RUNNING"):
        raise Conflict(
            f"run {info.id} is {info.status}: cancel it first (POST /runs/{info.id}/cancel)"
        )
    runs.delete_run(info.id)
    return Response(status_code=204)


def _chunk(c: LogChunk) -> dict[str, Any]:
    return {"task_id": c.task_id, "attempt": c.attempt, "text": c.text}


_SSE_EXAMPLE = (
    'event: log\ndata: {"task_id": "train-1a2b", "attempt": 1, "text": "epoch 1\\n"}\n\n'
    ": keep-alive\n\n"
    'event: end\ndata: {"status": "SUCCESS"}\n\n'
)


@router.get(
    "/runs/{run_id}/logs",
    response_model=LogsOut,
    summary="What a run's tasks printed, whole or followed as it is written",
    description="With `follow=true`, a `text/event-stream` (Server-Sent Events): one "
    "`event: log` per new piece of output (`data`: a LogChunk as JSON), a comment line "
    f"every {_KEEP_ALIVE_SECONDS:g} s while nothing is new, and once the run has ended "
    'and all its output is sent, `event: end` with `data: {"status": "<run status>"}`; '
    "then the stream ends. Should reading the logs fail on the server, `event: error` "
    '(`data: {"message": ...}`) ends it instead.',
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": _SSE_EXAMPLE,
                }
            }
        }
    },
)
async def run_logs(
    run_id: RunId,
    caller: Viewer,
    task: Annotated[
        str | None, Query(description="Only this task (id, id prefix or family).")
    ] = None,
    follow: Annotated[bool, Query(description="Stream new output until the run ends.")] = False,
) -> Any:
    info = await run_in_threadpool(_run, run_id, caller.project)
    if not follow:
        chunks = await run_in_threadpool(runs.get_run_logs_list, info.id, task)
        return {"items": [_chunk(c) for c in chunks]}
    return StreamingResponse(
        _events(info, task),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(info: RunInfo, task: str | None) -> AsyncIterator[str]:
    """The run's output as Server-Sent Events: a thread follows the run (it polls the
    record and the log files) and hands each chunk over; it stops when the run has
    ended, or soon after the client went away (Starlette then cancels this generator)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    gone = threading.Event()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the server stopped: its loop is closed
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def follow() -> None:
        try:
            for c in runs.follow_run_logs(info.id, task, stop=gone.is_set):
                put("log", _chunk(c))
            ended = runs.find_run(info.id)
            put("end", {"status": ended.status if ended is not None else None})
        except Exception as e:  # the stream says so, then ends (nothing to retry here)
            put("error", {"message": f"following the logs stopped: {e}"})

    thread = threading.Thread(target=follow, name=f"logs-{info.id}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), _KEEP_ALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield f"event: {kind}\ndata: {json.dumps(value)}\n\n"
            if kind != "log":
                return
    finally:
        gone.set()  # the thread ends at its next poll
