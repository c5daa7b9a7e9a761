"""Jobs: pipelines built once (validated, their definition's version pinned), run many times,
by hand or on a schedule.

    job = build_job("flows.py:Train", {"lr": "0.1"}, data_dir="data")
    run_id = start_job(job.id)            # in the background; or run_job(job.id) to wait
    job = build_job("flows.py:Daily", {}, schedule=ScheduleSpec(cron="0 2 * * *",
                    timezone="Europe/Paris"), policy=JobPolicy(slot_param="day"))
    pause_job(job.id); resume_job(job.id); next_fires(job.id); backfill_job(job.id, ...)

**Statuses** (:func:`job_views`), as users know them. A manual job (no schedule) is READY
(nothing run yet), RUNNING, SUCCESS or FAILED; a scheduled job is PENDING (waiting for its
next slot), RUNNING, SUCCESS or FAILED, or PAUSED, or ENDED (its schedule fires no more:
past its end date). The first that holds, in this order:

1. PAUSED: a scheduled job whose schedule is paused (its queued runs still run);
2. RUNNING: one of its runs is RUNNING;
3. PENDING: one of its runs is queued (PENDING: waiting for a server, a runner, or the
   job's running run) -- a manual job's queued run shows so too, for the moment between
   ``jobs run`` and its start;
4. ENDED: a scheduled job whose schedule has no slot after now;
5. SUCCESS or FAILED: its latest run's;
6. PENDING for a scheduled job, READY for a manual one (never run, or its latest run was
   CANCELLED: nothing failed, the job waits for its next run).

Why this order: what a user must act on, or wait for, first. A paused job stays PAUSED
whatever its runs do (resume it to see the rest); a job at work is RUNNING even past its
end date; an ended job is ENDED even though its last run succeeded (it will not run again).

**Resuming** a paused job does not run the slots it missed while paused: they are
dropped (``drop_slots`` up to now), as Airflow does when unpausing a DAG with
catchup=False. Run them with :func:`backfill_job` if they are wanted.

**Backfill** creates one run per past slot in a range (dates local to the job's
timezone), each decided once with the scheduler's own row (``decide_slot``): a slot
already decided, by the scheduler or an earlier backfill, is counted, not run twice. The
runs are queued (PENDING); a server runs them in slot order, one at a time unless the
job's overlap is ``allow``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from dagmill import settings
from dagmill.engine import RunResult, new_run_id
from dagmill.errors import DefinitionError, ParameterError
from dagmill.frontends.loader import check_slot_param, load_task, module_file, target_task
from dagmill.frontends.pipeline.compile import CompiledPipeline
from dagmill.frontends.pipeline.envs import environment_python
from dagmill.model.runs import JobInfo, RunTarget
from dagmill.model.schedules import JobPolicy, ScheduleSpec, SlotInfo
from dagmill.model.servers import ServerInfo
from dagmill.scheduler.loop import slot_target
from dagmill.scheduler.triggers import (
    ScheduleError,
    Trigger,
    format_slot,
    local_to_epoch,
    make_trigger,
    parse_local_date,
)
from dagmill.services.bundles import (
    bundle_dir,
    bundle_ref,
    default_data_dir,
    forget_bundle,
    importing,
)
from dagmill.services.bundles import loadable as loadable_target
from dagmill.services.execution import RunOptions, check_quota, named_requests
from dagmill.services.pipelines import is_pipeline_file, run_target, validate
from dagmill.services.remote import remote_ok
from dagmill.services.runs import server_of
from dagmill.services.tasks import make_plan
from dagmill.services.wake import wake_server
from dagmill.store import Store, open_store

__all__ = [
    "BACKFILL_CAP",
    "DEFAULT_TTL",
    "BackfillResult",
    "JobView",
    "backfill_job",
    "backfill_slots",
    "build_job",
    "definition_version",
    "delete_job",
    "file_schedule",
    "get_job",
    "job_target_ref",
    "job_view",
    "job_views",
    "list_jobs",
    "live_server",
    "next_fires",
    "pause_job",
    "resume_job",
    "run_job",
    "skipped_slots",
    "start_job",
    "target_of",
]

# one backfill queues at most this many runs: a wider range is refused, not cut short
BACKFILL_CAP = 1000

# CloudHarness's defaults (seconds); None keeps runs forever
DEFAULT_TTL: dict[str, int | None] = {
    "secondsAfterCompletion": 3600,
    "secondsAfterSuccess": 1200,
    "secondsAfterFailure": 7200,
}


def definition_version(ref: str) -> tuple[str, str | None]:
    """(version, source) of the definition behind ``MODULE:Task``: a hash of its file."""
    path = module_file(ref)
    if path is None:
        return "unversioned", None
    with open(path, "rb") as f:
        data = f.read()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16], data.decode("utf-8", "replace")


def target_of(ref: str, params: Mapping[str, str], data_dir: str | None) -> RunTarget:
    """The target of a command-line run: what `runs rerun` runs again."""
    return RunTarget("python", _absolute(ref), dict(params), os.path.abspath(data_dir or "data"))


@remote_ok
def build_job(
    ref: str,
    params: Mapping[str, str],
    data_dir: str | None = None,
    name: str | None = None,
    ttl: Mapping[str, int | None] | None = None,
    schedule: ScheduleSpec | None = None,
    policy: JobPolicy | None = None,
    project: str | None = None,
    bundle: str | None = None,
) -> JobInfo:
    """Validate a pipeline (``MODULE:Task`` or a pipeline file) completely (parameters,
    graph, resources, requirements, schedule, slot parameter) and record a job pinning its
    definition's version. The job belongs to ``project`` (default: $DAGMILL_PROJECT, else
    ``default``), which must exist, and none of its tasks may ask for more than the
    project's whole quota (it could never start).

    With ``bundle`` (an uploaded bundle's id, :mod:`dagmill.services.bundles`), ``ref``
    is inside it, and the job records both; its data folder is by default
    ``$DAGMILL_HOME/data/<project>/<job name>``.

    A pipeline file's own ``schedule:`` is kept, unless ``schedule`` is given: it replaces
    it (:func:`file_schedule` tells what it replaced). Bad input raises DefinitionError
    (ScheduleError for the schedule) before anything is written."""
    policy = policy or JobPolicy()
    project = project or settings.project()
    with open_store() as s:  # an unknown project: said first, before loading anything
        check_quota(s, project, [])
        inner, folder = ref, bundle_dir(s, bundle) if bundle is not None else ""
        if bundle is not None:
            ref = bundle_ref(folder, ref)
    if bundle is not None and data_dir is None:
        data_dir = default_data_dir(project, name or _default_name(folder, inner))
    data = os.path.abspath(data_dir or "data")
    if schedule is not None:
        make_trigger(schedule)  # bad cron, period, timezone or dates: raise here
    if policy.slot_param is not None:
        if is_pipeline_file(ref):
            check_slot_param(RunTarget("yaml", ref, {}, data), policy.slot_param)
        if schedule is None:
            raise DefinitionError(
                f"--slot-param {policy.slot_param} needs a schedule (--cron or --every): "
                "a job without one has no slot to give it"
            )
    if is_pipeline_file(ref):
        if params:
            raise DefinitionError("a pipeline file takes no -p: put params in its process nodes")
        compiled = validate(ref, data)
        environment_python(compiled.requirements)  # an unresolvable requirement fails here
        graph, kind, ref = compiled.graph, "yaml", compiled.file
        version, source = _pipeline_version(compiled), _read(ref)
        default_name = os.path.splitext(os.path.basename(ref))[0]
        if schedule is None and compiled.spec.schedule is not None:
            schedule = ScheduleSpec.from_json(compiled.spec.schedule.model_dump(exclude_none=True))
            make_trigger(schedule)
    else:
        with importing():  # the task's modules (a bundle's: see importing)
            # again under the lock: another thread may have loaded another bundle since
            ref = _absolute(ref if bundle is None else bundle_ref(folder, inner))
            target = RunTarget("python", ref, dict(params), data)
            checked = target
            if policy.slot_param is not None and schedule is not None:
                if policy.slot_param in params:
                    raise DefinitionError(
                        f"-p {policy.slot_param}=... and --slot-param {policy.slot_param}: the "
                        f"slot gives {policy.slot_param} its value at each run; drop the -p"
                    )
                check_slot_param(target, policy.slot_param)
                checked = _sample_slot_target(target, schedule, policy.slot_param)
            task = target_task(checked)
            plan, _ = make_plan([task])  # cycles, duplicate outputs, bad definitions: raise here
            graph, kind, default_name = plan.graph, "python", task.task_family
            version, python_source = definition_version(ref)
            source = python_source or ""
    # not this machine's size: the job runs where its project's servers are (the default
    # project's quota is this machine, which check_quota applies)
    strategy = dict(DEFAULT_TTL)
    strategy.update(ttl or {})
    requests = named_requests(graph.tasks.values())
    with open_store() as s:
        check_quota(s, project, requests.items())
        job = s.create_job(
            "j" + new_run_id().rsplit("-", 1)[1] + os.urandom(2).hex(),
            name or default_name,
            kind,
            ref if bundle is None else inner,
            version,
            dict(params),
            data,
            definition=source,
            ttl=strategy,
            schedule=schedule,
            policy=policy,
            project=project,
            requests=requests,
            bundle=bundle,
        )
    wake_server()
    return job


def _default_name(folder: str, ref: str) -> str:
    """The name a job of ``ref`` (in the bundle unpacked in ``folder``) gets by default:
    the file's, or its task's family."""
    if is_pipeline_file(ref):
        return os.path.splitext(os.path.basename(ref))[0]
    with importing():
        return load_task(bundle_ref(folder, ref)).get_task_family()


def file_schedule(ref: str) -> ScheduleSpec | None:
    """The ``schedule:`` a pipeline file declares itself (None for a Python task, or a
    file without one): what schedule flags given to ``jobs build`` replace."""
    if not is_pipeline_file(ref):
        return None
    compiled = validate(ref)
    if compiled.spec.schedule is None:
        return None
    return ScheduleSpec.from_json(compiled.spec.schedule.model_dump(exclude_none=True))


def _sample_slot_target(target: RunTarget, schedule: ScheduleSpec, name: str) -> RunTarget:
    """``target`` as a run of one of its slots would have it (the slot bound to ``name``),
    to validate the task with a slot parameter that has no default."""
    trigger = make_trigger(schedule)
    slot = trigger.next_after(time.time()) or trigger.latest_at_or_before(time.time())
    when = format_slot(slot if slot is not None else time.time(), schedule.timezone)
    return dataclasses.replace(target, params={**target.params, name: when}, slot=when)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _pipeline_version(compiled: CompiledPipeline) -> str:
    """The version a job pins for a pipeline file: the hash of all its files, then each
    file's own (``sha256:… (pipeline.yaml=1a2b3c4d, clean.py=5e6f7a8b)``), so that a
    changed file can be named."""
    folder = os.path.dirname(compiled.file)
    each = ", ".join(
        f"{os.path.relpath(p, folder) if p.startswith(folder + os.sep) else p}={h}"
        for p, h in compiled.files
    )
    return f"{compiled.version} ({each})"


def _file_versions(version: str) -> dict[str, str]:
    """The files and hashes of a pipeline job's version (empty for a version without)."""
    _, sep, rest = version.partition(" (")
    if not sep:
        return {}
    pairs = (item.rpartition("=") for item in rest.removesuffix(")").split(", "))
    return {name: h for name, eq, h in pairs if eq}


def job_target_ref(job: JobInfo, store: Store | None = None) -> str:
    """The ref this process loads the job's definition from: its ref, or for a job built
    from a bundle, its ref inside the bundle unpacked here."""
    return loadable_target(job.target(), store).ref


def _current_version(job: JobInfo, store: Store | None = None) -> str:
    ref = job_target_ref(job, store)
    if job.kind == "yaml":
        return _pipeline_version(validate(ref, job.data_dir))
    return definition_version(ref)[0]


def _what_changed(job: JobInfo, version: str) -> str:
    if job.kind != "yaml":
        return f"{module_file(job_target_ref(job)) or job.ref} changed"
    pinned, now = _file_versions(job.version), _file_versions(version)
    if not pinned:  # a job built before files were pinned one by one
        return "the pipeline file or one of its modules changed"
    changed = [f for f in now if f in pinned and pinned[f] != now[f]]
    added = [f for f in now if f not in pinned]
    gone = [f for f in pinned if f not in now]
    what = [f"{f} changed" for f in changed]
    what += [f"it now runs {f}" for f in added]
    what += [f"it no longer runs {f}" for f in gone]
    return "; ".join(what) or f"it is now {version}"


def _build_command(job: JobInfo) -> str:
    """The command that builds ``job`` again, with its params and data folder (without
    them, the new job would run with defaults, into ./data of wherever it is typed)."""
    import shlex

    words = ["dagmill", "jobs", "build", job.ref]
    for key, value in job.params.items():
        words += ["-p", f"{key}={value}"]
    if job.data_dir:
        words += ["--data", job.data_dir]
    if job.schedule is not None and job.kind == "python":  # a pipeline file keeps its own
        spec = job.schedule
        words += ["--cron", spec.cron] if spec.cron else ["--every", str(spec.every)]
        words += ["--timezone", spec.timezone]
        words += ["--start", spec.start_date] if spec.start_date else []
        words += ["--end", spec.end_date] if spec.end_date else []
        words += ["--overlap", job.policy.overlap, "--catchup", job.policy.catchup]
        words += ["--slot-param", job.policy.slot_param] if job.policy.slot_param else []
    return shlex.join(words)


@remote_ok
def get_job(job_id: str) -> JobInfo:
    """One job, by id."""
    with open_store() as store:
        return _get_job(store, job_id)


@remote_ok
def list_jobs(project: str | None = None) -> list[JobInfo]:
    """The jobs as recorded (``status`` is their latest run's; :func:`job_views` gives
    the statuses users see); ``project``: only that project's."""
    with open_store() as store:
        return store.list_jobs(project=project)


def _get_job(store: Store, job_id: str) -> JobInfo:
    job = store.get_job(job_id)
    if job is None:
        raise DefinitionError(f"no job {job_id!r}: see `dagmill jobs list`")
    return job


def _runnable_job(store: Store, job_id: str) -> JobInfo:
    """The job, if its definition is still the version it pins."""
    job = _get_job(store, job_id)
    if job.bundle is not None:
        return job  # a bundle is named by its sha256: its files are the ones built
    version = _current_version(job, store)
    if version != job.version:
        raise DefinitionError(
            f"job {job.id} pins {job.ref} as it was when built, but "
            f"{_what_changed(job, version)}: build a new job (`{_build_command(job)}`) "
            "to run the changed definition"
        )
    return job


def run_job(
    job_id: str,
    run_id: str | None = None,
    params: Mapping[str, str] | None = None,
    options: RunOptions | None = None,
) -> RunResult | None:
    """Run a job here and wait for it, as ``options`` say (its job, name and project are
    the job's); ``params`` override its parameters for this run (not with ``run_id``: a
    queued run has its own).

    With ``run_id``, run that queued run: as its target says (its slot, its parameters
    for this run), whether this process claims it now or a server claimed it for this
    process (a runner)."""
    store = open_store()
    target: RunTarget | None = None
    try:
        if params and run_id is not None:
            raise DefinitionError(f"run {run_id} was queued with its parameters: no -p")
        try:
            job = _runnable_job(store, job_id)
            if params or (run_id is None and job.policy.slot_param):
                target = _with_params(job, params or {})
        except DefinitionError as e:
            if run_id is not None:
                _fail_unstarted(run_id, str(e))
            raise
        if run_id is not None:
            queued = store.get_run(run_id)
            mine = queued is not None and queued.status == "RUNNING" and queued.owner == store.owner
            if not mine and not store.claim_run(run_id):
                queued = store.get_run(run_id)
                if queued is not None and queued.status == "CANCELLED":
                    return None  # cancelled before it started
                raise DefinitionError(
                    f"run {run_id} is not waiting to start (it is "
                    f"{queued.status if queued else 'unknown'}): another process has it"
                )
            target = queued.target if queued is not None else None
    finally:
        store.close()
    try:
        return run_target(
            target or job.target(),
            dataclasses.replace(
                options or RunOptions(),
                run_id=run_id,
                job_id=job.id,
                name=job.name,
                project=job.project,
            ),
        )
    except DefinitionError as e:
        if run_id is not None:
            _fail_unstarted(run_id, str(e))
        raise


def _fail_unstarted(run_id: str, error: str) -> None:
    """A run taken over (queued, or resumed) that bad input stopped before it started ends
    FAILED with the message: left RUNNING, each `dagmill runs ...` would resume it again,
    to fail the same way in the background."""
    store = open_store()
    try:
        store.set_run_status(run_id, "FAILED", error, ["PENDING", "RUNNING"])
    finally:
        store.close()


@remote_ok
def start_job(job_id: str, params: Mapping[str, str] | None = None, workers: int = 1) -> str:
    """Queue a run of the job and have it started; returns the run id.

    ``params`` override the job's parameters for this run only (checked here: an unknown
    one is refused, with a did-you-mean). If a server serves this run record, the run
    is left in its queue (and the server woken); otherwise a background process of this
    host starts it with ``workers`` (a server runs it with its own ``--workers``)."""
    store = open_store()
    try:
        job = _runnable_job(store, job_id)
        target = _with_params(job, params or {})
        # refused here, not in the background: the project may have been deleted, or its
        # quota lowered below a task's request, since the job was built (the requests
        # were recorded then: the job's code is not imported here, a slow import would
        # hold the command up)
        check_quota(store, job.project, job.requests.items())
        run_id = new_run_id()
        server = server_of(store)
        # a server on PostgreSQL, maybe on another host, is woken by NOTIFY
        store.queue_run(
            run_id, job.name, job.id, target, project=job.project, notify=server is not None
        )
    finally:
        store.close()
    if server is not None:
        wake_server()
        return run_id
    log_dir = settings.logs_dir(run_id)
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "engine.log"), "ab") as out:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagmill.cli.main",
                "jobs",
                "run",
                job.id,
                "--wait",
                "--run-id",
                run_id,
                "--workers",
                str(workers),
                "--quiet",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "DAGMILL_HOME": settings.home()},
        )
    return run_id


def _with_params(job: JobInfo, params: Mapping[str, str]) -> RunTarget:
    """The job's target with ``params`` overriding its own, validated as a run would
    load it (an unknown parameter or a bad value raises here, not in the background)."""
    target = job.target()
    if job.policy.slot_param is not None and job.policy.slot_param not in params:
        # a run by hand has a slot too: now, as Airflow gives a manual run its trigger time
        target = slot_target(job, float(int(time.time())))
    if not params:
        return target
    if job.kind != "python":
        raise DefinitionError(
            f"job {job.id} runs the pipeline file {job.ref}: it takes no -p (put params in "
            "its process nodes)"
        )
    merged = dataclasses.replace(target, params={**target.params, **params})
    with importing():
        names = [n for n, _ in load_task(job_target_ref(job)).get_params()]
        for key in params:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ParameterError(
                    f"job {job.id}: -p {key}: {job.name} has no parameter {key!r}{hint}; "
                    f"its parameters: {', '.join(names) or 'none'}"
                )
        target_task(loadable_target(merged))  # bad values: raise naming the parameter
    return merged


def live_server() -> ServerInfo | None:
    """A server that serves this run record now (the oldest), or None: its queued runs
    are started by it. For SQLite only a server of this host whose process lives counts
    (one killed without stopping leaves a row that looks alive for a while)."""
    with open_store() as store:
        return server_of(store)


# -- schedules -----------------------------------------------------------------------------


def _scheduled_job(store: Store, job_id: str, doing: str) -> JobInfo:
    job = _get_job(store, job_id)
    if job.schedule is None:
        raise DefinitionError(
            f"job {job.id} has no schedule: nothing to {doing} (build a job with --cron or "
            "--every to run it on a schedule)"
        )
    return job


@remote_ok
def pause_job(job_id: str) -> JobInfo:
    """Pause a job's schedule: no slot of it fires until it is resumed. Its runs already
    queued or running go on (cancel them with ``dagmill runs cancel``), and it still runs
    by hand."""
    with open_store() as store:
        job = _scheduled_job(store, job_id, "pause")
        store.set_job_paused(job.id, True)
        paused = _get_job(store, job.id)
    wake_server()
    return paused


@remote_ok
def resume_job(job_id: str, now: float | None = None) -> JobInfo:
    """Resume a paused job's schedule from now on: the slots it missed while paused are
    dropped, not run (Airflow's unpause with catchup=False; :func:`backfill_job` runs them
    if they are wanted). A job that is not paused is returned as it is."""
    now = time.time() if now is None else now
    with open_store() as store:
        job = _scheduled_job(store, job_id, "resume")
        assert job.schedule is not None
        if not job.paused:
            # nothing to resume: its missed slots (a server was down) are left to its
            # catch-up policy, not dropped
            return job
        latest = make_trigger(job.schedule).latest_at_or_before(now)
        if latest is not None:
            # before unpausing: a scheduler that reloads on the unpause sees them over
            store.drop_slots(job.id, latest)
        store.set_job_paused(job.id, False)
        resumed = _get_job(store, job.id)
    wake_server()
    return resumed


def next_fires(job_id: str, count: int = 5, now: float | None = None) -> list[float]:
    """The next ``count`` slots of a job's schedule after ``now`` (epoch seconds; fewer if
    it ends before), whether or not it is paused; [] for a job without a schedule."""
    job = get_job(job_id)
    if job.schedule is None:
        return []
    return _upcoming(make_trigger(job.schedule), job, count, time.time() if now is None else now)


def _upcoming(trigger: Trigger, job: JobInfo, count: int, now: float) -> list[float]:
    after = max(now, job.last_slot_at or now)
    out: list[float] = []
    while len(out) < count:
        slot = trigger.next_after(after)
        if slot is None:
            break
        out.append(slot)
        after = slot
    return out


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as users see it: ``status`` as the module docstring says, ``trigger``
    (``manual`` or ``scheduled``; the job's ``kind`` is its front door, python or yaml),
    its next slot (None: manual, paused or ended), its latest run, and how many of its runs
    are running and queued."""

    job: JobInfo
    status: str
    trigger: str
    next_run_at: float | None
    last_run_id: str | None
    running: int = 0
    queued: int = 0


@remote_ok
def job_views(
    now: float | None = None, project: str | None = None, limit: int = 100
) -> list[JobView]:
    """The ``limit`` newest jobs (``project``: only that project's) with their status and
    next run."""
    now = time.time() if now is None else now
    with open_store() as store:
        jobs = store.list_jobs(limit=limit, project=project)
        activity = store.job_activity()
    return [_view(job, activity.get(job.id, (0, 0)), now) for job in jobs]


@remote_ok
def job_view(job_id: str, now: float | None = None) -> JobView:
    """One job (by id or unique prefix) with its status and next run."""
    now = time.time() if now is None else now
    with open_store() as store:
        job = _get_job(store, job_id)
        activity = store.job_activity()
    return _view(job, activity.get(job.id, (0, 0)), now)


def _view(job: JobInfo, activity: tuple[int, int], now: float) -> JobView:
    running, queued = activity
    next_at: float | None = None
    ended = False
    if job.schedule is not None:
        try:
            upcoming = _upcoming(make_trigger(job.schedule), job, 1, now)
        except ScheduleError:  # validated when built: a row edited by hand
            upcoming = []
        next_at = upcoming[0] if upcoming else None
        ended = next_at is None
    if job.schedule is not None and job.paused:
        status = "PAUSED"
    elif running:
        status = "RUNNING"
    elif queued:
        status = "PENDING"
    elif ended:
        status = "ENDED"
    elif job.status in ("SUCCESS", "FAILED"):
        status = job.status
    else:
        status = "READY" if job.schedule is None else "PENDING"
    return JobView(
        job=job,
        status=status,
        trigger="manual" if job.schedule is None else "scheduled",
        next_run_at=None if job.paused else next_at,
        last_run_id=job.last_run,
        running=running,
        queued=queued,
    )


@remote_ok
def skipped_slots(job_id: str, limit: int = 5) -> list[SlotInfo]:
    """The job's latest skipped slots, newest first, each with its reason ("slot
    2026-12-02 10:05 skipped: run R still RUNNING")."""
    with open_store() as store:
        job = _get_job(store, job_id)
        return store.job_slots(job.id, limit=limit, outcome="skipped")


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill did: ``queued`` the runs it made (one per slot, oldest first),
    ``already`` the slots in the range decided before (by the scheduler or an earlier
    backfill); ``until`` the end it used (``clamped`` if the range reached past now)."""

    job_id: str
    slots: tuple[float, ...]
    queued: tuple[str, ...]
    already: int
    until: float
    clamped: bool


def _backfill_range(job: JobInfo, start: str, end: str, now: float) -> tuple[float, float, bool]:
    assert job.schedule is not None
    trigger = make_trigger(job.schedule)
    try:
        lo = parse_local_date(start, trigger.tz).timestamp()
    except ScheduleError as e:
        raise ScheduleError(f"{e} for --from") from None
    try:
        hi_local = parse_local_date(end, trigger.tz)
    except ScheduleError as e:
        raise ScheduleError(f"{e} for --to") from None
    hi = hi_local.timestamp()
    if len(end.strip()) <= 10:  # a date alone: all of that day
        naive = hi_local.replace(tzinfo=None)
        hi = local_to_epoch(naive + timedelta(days=1), trigger.tz) - 1
    if hi < lo:
        raise DefinitionError(f"--to {end} is before --from {start}: swap them")
    clamped = hi > now
    return lo, min(hi, math.floor(now)), clamped


def backfill_slots(
    job_id: str, start: str, end: str, now: float | None = None
) -> tuple[list[float], float, bool]:
    """The job's slots in [start, end] (``YYYY-MM-DD[ HH:MM[:SS]]`` local to its timezone;
    a date alone as ``end`` means all of that day), up to now: (slots, end used, clamped).
    More than :data:`BACKFILL_CAP` slots is an error saying to narrow the range."""
    now = time.time() if now is None else now
    job = get_job(job_id)
    if job.schedule is None:
        raise DefinitionError(
            f"job {job.id} has no schedule: it has no slots to backfill (run it with "
            f"`dagmill jobs run {job.id}`)"
        )
    lo, hi, clamped = _backfill_range(job, start, end, now)
    trigger = make_trigger(job.schedule)
    slots: list[float] = []
    for slot in trigger.slots(lo - 1, hi):
        slots.append(slot)
        if len(slots) > BACKFILL_CAP:
            raise DefinitionError(
                f"job {job.id}: more than {BACKFILL_CAP} slots from {start} to {end}; "
                "backfill a narrower range at a time"
            )
    return slots, hi, clamped


@remote_ok
def backfill_job(job_id: str, start: str, end: str, now: float | None = None) -> BackfillResult:
    """Queue one run per slot of the job in [start, end] (see :func:`backfill_slots`),
    each bound to its slot as a scheduled run is; slots already decided are counted in
    ``already``, not run twice. A paused job can be backfilled (pausing stops the
    schedule, not runs asked for)."""
    now = time.time() if now is None else now
    slots, hi, clamped = backfill_slots(job_id, start, end, now)
    queued: list[str] = []
    already = 0
    with open_store() as store:
        job = _runnable_job(store, job_id)
        assert job.schedule is not None
        for slot in slots:
            run_id = new_run_id()
            target = slot_target(job, slot)
            if store.decide_slot(job.id, slot, "run", run_id=run_id, name=job.name, target=target):
                queued.append(run_id)
            else:
                already += 1
        if job.last_slot_at is None and make_trigger(job.schedule).period is None:
            # a brand-new cron job counts its slots from its creation: deciding older
            # ones moved its mark back before it, which would make the slots between the
            # backfill and its creation "missed"; they are not
            before = make_trigger(job.schedule).latest_at_or_before(job.created_at)
            if before is not None:
                store.drop_slots(job.id, before)
        if queued:
            store.bump_jobs()  # a server on PostgreSQL: NOTIFY
    if queued:
        wake_server()
    return BackfillResult(job.id, tuple(slots), tuple(queued), already, hi, clamped)


@remote_ok
def delete_job(job_id: str) -> list[str]:
    """Delete a job, its runs and their logs (the data the runs wrote stays)."""
    import shutil

    store = open_store()
    try:
        busy = [
            r.id
            for r in store.list_runs(job_id=job_id, limit=1000)
            if r.status in ("PENDING", "RUNNING")
        ]
        if busy:
            raise DefinitionError(
                f"job {job_id} has runs in progress ({', '.join(busy)}): cancel them first "
                f"(`dagmill runs cancel {busy[0]}`)"
            )
        job = store.get_job(job_id)
        gone = store.delete_job(job_id)
    finally:
        store.close()
    for run_id in gone:
        shutil.rmtree(settings.logs_dir(run_id), ignore_errors=True)
    if job is not None and job.bundle is not None:
        forget_bundle(job.bundle)  # if no other job is built from it
    wake_server()
    return gone


def _absolute(ref: str) -> str:
    module, sep, name = ref.rpartition(":")
    if sep and (module.endswith(".py") or os.sep in module):
        return f"{os.path.abspath(module)}:{name}"
    return ref
