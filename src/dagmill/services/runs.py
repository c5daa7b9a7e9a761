"""Runs in the run record: query them (runs, their tasks, their logs, as typed objects),
cancel, delete, resume them, and remove expired ones.

    for run in get_runs(status="FAILED", limit=10):
        print(run.id, run.name, run.error)
        print(get_run_logs(run.id))

The query functions are public as :mod:`dagmill.runs`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.io.owners import owner_gone
from dagmill.logs import LogChunk, follow, run_logs
from dagmill.model.runs import RunInfo, RunTaskInfo
from dagmill.model.servers import ServerInfo
from dagmill.services.wake import wake_server
from dagmill.store import Store, open_store

if TYPE_CHECKING:
    from dagmill.engine import RunResult
    from dagmill.services.execution import RunOptions

__all__ = [
    "cancel_run",
    "collect_garbage",
    "delete_run",
    "find_run",
    "follow_run_logs",
    "get_run",
    "get_run_logs",
    "get_run_logs_list",
    "get_run_tasks",
    "get_runs",
    "orphaned_runs",
    "queue_rerun",
    "recover_orphans",
    "resume_run",
]


def get_runs(
    status: str | None = None,
    limit: int = 20,
    job_id: str | None = None,
    project: str | None = None,
    since: float | None = None,
    before: tuple[float, str] | None = None,
) -> list[RunInfo]:
    """The most recent runs first (``status``: PENDING, RUNNING, SUCCESS, FAILED, CANCELLED;
    ``project``: only that project's; ``since``: created then or later, seconds since the
    epoch; ``before``: the (created_at, id) of the last run of the page before, for the
    next page)."""
    with open_store() as s:
        return s.list_runs(
            status=status, limit=limit, since=since, job_id=job_id, project=project, before=before
        )


def find_run(run_id: str, project: str | None = None) -> RunInfo | None:
    """One run, by id or unique id prefix (``project``: among that project's runs only;
    None if there is none)."""
    with open_store() as s:
        return s.get_run(run_id, project)


def get_run(run_id: str) -> RunInfo:
    """One run, by id or unique id prefix."""
    run = find_run(run_id)
    if run is None:
        raise DefinitionError(f"no run {run_id!r}: see dagmill.runs.get_runs()")
    return run


def get_run_tasks(run_id: str) -> list[RunTaskInfo]:
    """The tasks of a run as it ran: status, attempts (with errors), plan and fingerprint."""
    run = get_run(run_id)
    with open_store() as s:
        return s.get_run_tasks(run.id)


def get_run_logs_list(run_id: str, task: str | None = None) -> list[LogChunk]:
    """Captured output of each attempt of each task (or of the tasks matching ``task``)."""
    run = get_run(run_id)
    with open_store() as s:
        return run_logs(s, run.id, task)


def follow_run_logs(
    run_id: str, task: str | None = None, stop: Callable[[], bool] | None = None
) -> Iterator[LogChunk]:
    """New output of a run (or of the tasks matching ``task``) as it is written, until the
    run has ended and all of it is read, or until ``stop()`` says the reader is gone."""
    run = get_run(run_id)
    with open_store() as s:
        yield from follow(s, run.id, task, stop)


def get_run_logs(run_id: str, task: str | None = None) -> str:
    """All captured output of a run, each attempt under a header line."""
    return "".join(
        f"── {c.task_id} (attempt {c.attempt}) ──\n{c.text}"
        + ("" if c.text.endswith("\n") or not c.text else "\n")
        for c in get_run_logs_list(run_id, task)
    )


def delete_run(run_id: str) -> bool:
    """Delete a run, its tasks and its logs."""
    run = get_run(run_id)
    with open_store() as s:
        deleted = s.delete_run(run.id)
    shutil.rmtree(settings.logs_dir(run.id), ignore_errors=True)
    return deleted


def queue_rerun(run_id: str, from_failed: bool = False) -> RunInfo:
    """Queue a new run of what a run ran (its job, target, parameters and slot, in its
    project), for a server to start: everything runs again, or with ``from_failed``
    only what is not complete (what failed, or never ran). Returns the queued run."""
    from dagmill.engine import new_run_id
    from dagmill.services.execution import check_quota

    info = get_run(run_id)
    if info.target is None:
        raise DefinitionError(
            f"run {info.id} was started from Python, so dagmill cannot start it again: "
            "run it again from your code"
        )
    with open_store() as s:
        requests = {}
        if info.job_id is not None:
            job = s.get_job(info.job_id)
            if job is None:  # deleting a job deletes its runs: deleted meanwhile
                raise DefinitionError(f"no job {info.job_id!r}: it was just deleted")
            requests = dict(job.requests)
        # refused now, not when a server starts it: the project may have been deleted,
        # or its quota lowered below what a task of the job requests
        check_quota(s, info.project, requests.items())
        new_id = new_run_id()
        s.queue_run(
            new_id,
            info.name,
            info.job_id,
            info.target,
            project=info.project,
            # the server's runner reads it (``server.runners.Assignment``)
            options={} if from_failed else {"forced_all_upstream": True},
        )
        if server_of(s) is not None:
            s.bump_jobs()  # a server on PostgreSQL, maybe on another host: NOTIFY
        queued = s.get_run(new_id)
    wake_server()
    assert queued is not None
    return queued


def _alive(owner: str | None) -> bool | None:
    """Whether a run's owner process lives (None: it is on another host, unknown)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def cancel_run(run_id: str, wait: float = 10.0) -> str:
    """Cancel a run: signal its engine (which stops its tasks and records CANCELLED), or,
    for a queued run or one whose engine is gone, record CANCELLED directly."""
    run = get_run(run_id)
    if run.status in ("SUCCESS", "FAILED", "CANCELLED"):
        return f"run {run.id} already ended: {run.status}"
    with open_store() as s:
        if run.status == "PENDING" and s.set_run_status(run.id, "CANCELLED", only_if=["PENDING"]):
            return f"cancelled run {run.id} before it started"
    run = get_run(run.id)  # an engine may have taken it meanwhile
    deadline = time.monotonic() + wait
    while run.status == "RUNNING" and run.started_at is None and time.monotonic() < deadline:
        # claimed by a server but not started: its owner may still be the server's fork
        # server (which a signal would stop, with every run it forked), not the engine
        time.sleep(0.05)
        run = get_run(run.id)
    if run.status != "RUNNING":
        return f"run {run.id} already ended: {run.status}"
    alive = _alive(run.owner)
    if alive is None:
        raise DefinitionError(f"run {run.id} runs on {run.owner}: cancel it there")
    if alive:
        os.kill(int(str(run.owner).rpartition(":")[2]), signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            now = get_run(run.id)
            if now.status != "RUNNING":
                return f"cancelled run {run.id}"
            if _alive(now.owner) is False:
                break  # it stopped before it could record anything (still starting up)
            time.sleep(0.1)
        else:
            return f"asked run {run.id} to stop (its engine has not confirmed yet)"
    with open_store() as s:
        s.set_run_status(run.id, "CANCELLED", "cancelled (its engine had stopped)", ["RUNNING"])
    return f"cancelled run {run.id}"


def orphaned_runs(stale_after: float = 60.0) -> list[RunInfo]:
    """RUNNING runs whose engine died: its process is gone (this host), or it has not
    sent a heartbeat for ``stale_after`` seconds (another host)."""
    now = time.time()
    with open_store() as s:
        runs = s.open_runs()
        served = server_of(s) is not None
    return [
        r
        for r in runs
        # handed back by a stopping server (no owner): the next server resumes it; and
        # while a server serves this record, job runs are its to resume
        if r.owner is not None
        and not (served and r.job_id is not None)
        and (
            _alive(r.owner) is False
            or (_alive(r.owner) is None and now - (r.heartbeat_at or 0) > stale_after)
        )
    ]


def server_of(store: Store, draining_too: bool = False) -> ServerInfo | None:
    """A server that serves this run record now (the oldest), or None: its job runs (queued,
    handed back, orphaned) are started and resumed by it (a draining one takes no new
    runs, so it counts only with ``draining_too``). A server of this host whose process
    is gone does not count: killed without stopping, it leaves a row that looks alive
    until its heartbeat goes stale."""
    for server in store.live_servers():
        if server.status != "running" and not draining_too:
            continue
        if owner_gone(f"{server.host}:{server.pid}"):
            continue
        return server
    return None


def resume_run(
    run_id: str,
    options: RunOptions | None = None,
    taken_from: tuple[str | None] | None = None,
) -> RunResult | None:
    """Finish a run whose engine died, under the same run id: complete tasks are not
    redone, attempts that were open become FAILED and the tasks run as new attempts.

    ``options``: how (its id, job, name, project and attempts are the run's).
    ``taken_from``: a server took the run over for this process already, from that
    owner (``(None,)``: it was handed back); the record names it as the dead engine."""
    from dagmill.services.execution import RunOptions
    from dagmill.services.pipelines import run_target

    info = get_run(run_id)
    if info.status not in ("RUNNING", "PENDING"):
        # after Ctrl-C or a failure, a plain rerun would redo what had finished too
        hint = (
            f"`dagmill runs rerun {info.id}` runs it all again"
            if info.status == "SUCCESS"
            else f"`dagmill runs rerun {info.id} --from-failed` runs what did not finish"
        )
        raise DefinitionError(f"run {info.id} is {info.status}: nothing to resume; {hint}")
    if _alive(info.owner) and info.owner != f"{os.uname().nodename}:{os.getpid()}":
        raise DefinitionError(
            f"run {info.id} is still running in {info.owner} (resumed there, or never"
            f" stopped): follow it with `dagmill runs logs {info.id} --follow`, or stop it"
            f" with `dagmill runs cancel {info.id}`"
        )
    if info.target is None:
        raise DefinitionError(
            f"run {info.id} was started from Python, so dagmill cannot start it again: "
            "run it again from your code"
        )
    with open_store() as s:
        if not s.take_over(info.id, info.owner):
            raise DefinitionError(f"run {info.id} was taken over by another process")
        dead = info.owner if taken_from is None else taken_from[0]
        attempts = s.abandon_attempts(
            info.id,
            f"EngineDied: the engine running this attempt ({dead}) died"
            if dead
            else "HandedBack: its server stopped before the attempt finished",
        )
    try:
        return run_target(
            info.target,
            dataclasses.replace(
                options or RunOptions(),
                run_id=info.id,
                job_id=info.job_id,
                attempts=attempts,
                name=info.name,
                project=info.project,
            ),
        )
    except DefinitionError as e:  # taken over, so ended here: not resumed again and again
        with open_store() as s:
            s.set_run_status(info.id, "FAILED", str(e), ["PENDING", "RUNNING"])
        raise


def recover_orphans() -> list[str]:
    """Resume, each in a background process, the runs whose engine died (those that can be
    started again); returns their ids."""
    started = []
    for r in orphaned_runs():
        if r.target is None:
            with open_store() as s:
                s.set_run_status(
                    r.id,
                    "FAILED",
                    f"its engine ({r.owner}) died, and a run started from "
                    "Python cannot be resumed: run it again",
                    ["RUNNING"],
                )
            continue
        log = os.path.join(settings.logs_dir(r.id), "engine-resume.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "dagmill.cli.main", "runs", "resume", r.id, "--quiet"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(r.id)
    return started


def _expires_at(run: RunInfo, ttl: dict[str, Any]) -> float | None:
    """When a finished job run expires under its job's TTL strategy (None: never)."""
    if run.ended_at is None:
        return None
    specific = {"SUCCESS": "secondsAfterSuccess", "FAILED": "secondsAfterFailure"}
    key = specific.get(run.status)
    seconds = ttl.get(key) if key and key in ttl else ttl.get("secondsAfterCompletion")
    return None if seconds is None else run.ended_at + float(seconds)


def collect_garbage(dry_run: bool = False, now: float | None = None) -> list[str]:
    """Remove runs of jobs (and their logs) that outlived their job's TTL strategy
    (CloudHarness's: secondsAfterSuccess, secondsAfterFailure, secondsAfterCompletion)."""
    now = time.time() if now is None else now
    expired = []
    with open_store() as s:
        for job in s.list_jobs(limit=100_000):
            for r in s.list_runs(job_id=job.id, limit=100_000):
                if r.status in ("SUCCESS", "FAILED", "CANCELLED"):
                    at = _expires_at(r, dict(job.ttl))
                    if at is not None and at <= now:
                        expired.append(r.id)
        if not dry_run:
            for run_id in expired:
                s.delete_run(run_id)
            if expired:
                s.reclaim_space()  # deleted rows leave free pages: give them back
    if not dry_run:
        for run_id in expired:
            shutil.rmtree(settings.logs_dir(run_id), ignore_errors=True)
    return expired
