"""Jobs: pipelines built once (validated, their definition's version pinned), run many times.

    job = build_job("flows.py:Train", {"lr": "0.1"}, data_dir="data")
    run_id = start_job(job.id)            # in the background; or run_job(job.id) to wait

A job's status is its latest run's: READY (never run), PENDING, RUNNING, SUCCESS, FAILED.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from dagmill import settings
from dagmill.engine import RunResult, new_run_id
from dagmill.errors import DefinitionError
from dagmill.executors.machine import machine_pool
from dagmill.frontends.loader import module_file, target_task
from dagmill.frontends.pipeline.compile import CompiledPipeline
from dagmill.frontends.pipeline.envs import environment_python
from dagmill.model.runs import JobInfo, RunTarget
from dagmill.model.schedules import ScheduleSpec
from dagmill.services.pipelines import is_pipeline_file, run_target, validate
from dagmill.services.tasks import make_plan
from dagmill.store import Store, open_store

__all__ = [
    "DEFAULT_TTL",
    "build_job",
    "definition_version",
    "delete_job",
    "get_job",
    "list_jobs",
    "run_job",
    "start_job",
    "target_of",
]

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


def build_job(
    ref: str,
    params: Mapping[str, str],
    data_dir: str | None = None,
    name: str | None = None,
    ttl: Mapping[str, int | None] | None = None,
) -> JobInfo:
    """Validate a pipeline (``MODULE:Task`` or a pipeline file) completely (parameters,
    graph, resources, requirements) and record a job pinning its definition's version."""
    data = os.path.abspath(data_dir or "data")
    schedule = None
    if is_pipeline_file(ref):
        if params:
            raise DefinitionError("a pipeline file takes no -p: put params in its process nodes")
        compiled = validate(ref, data)
        environment_python(compiled.requirements)  # an unresolvable requirement fails here
        graph, kind, ref = compiled.graph, "yaml", compiled.file
        version, source = _pipeline_version(compiled), _read(ref)
        default_name = os.path.splitext(os.path.basename(ref))[0]
        if compiled.spec.schedule is not None:
            schedule = ScheduleSpec.from_json(compiled.spec.schedule.model_dump(exclude_none=True))
    else:
        ref = _absolute(ref)
        task = target_task(RunTarget("python", ref, dict(params), data))
        plan, _ = make_plan([task])  # cycles, duplicate outputs, bad definitions: raise here
        graph, kind, default_name = plan.graph, "python", task.task_family
        version, python_source = definition_version(ref)
        source = python_source or ""
    pool = machine_pool()
    for spec in graph.tasks.values():
        pool.check(spec.resources, spec.label)
    strategy = dict(DEFAULT_TTL)
    strategy.update(ttl or {})
    with open_store() as s:
        return s.create_job(
            "j" + new_run_id().rsplit("-", 1)[1] + os.urandom(2).hex(),
            name or default_name,
            kind,
            ref,
            version,
            dict(params),
            data,
            definition=source,
            ttl=strategy,
            schedule=schedule,
        )


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


def _current_version(job: JobInfo) -> str:
    if job.kind == "yaml":
        return _pipeline_version(validate(job.ref, job.data_dir))
    return definition_version(job.ref)[0]


def _what_changed(job: JobInfo, version: str) -> str:
    if job.kind != "yaml":
        return f"{module_file(job.ref) or job.ref} changed"
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
    return shlex.join(words)


def get_job(job_id: str) -> JobInfo:
    """One job, by id."""
    with open_store() as store:
        return _get_job(store, job_id)


def list_jobs() -> list[JobInfo]:
    """The jobs, with their status (their latest run's)."""
    with open_store() as store:
        return store.list_jobs()


def _get_job(store: Store, job_id: str) -> JobInfo:
    job = store.get_job(job_id)
    if job is None:
        raise DefinitionError(f"no job {job_id!r}: see `dagmill jobs list`")
    return job


def _runnable_job(store: Store, job_id: str) -> JobInfo:
    """The job, if its definition is still the version it pins."""
    job = _get_job(store, job_id)
    version = _current_version(job)
    if version != job.version:
        raise DefinitionError(
            f"job {job.id} pins {job.ref} as it was when built, but "
            f"{_what_changed(job, version)}: build a new job (`{_build_command(job)}`) "
            "to run the changed definition"
        )
    return job


def run_job(job_id: str, run_id: str | None = None, **kwargs: Any) -> RunResult | None:
    """Run a job here and wait for it (``kwargs`` go to :func:`dagmill.run`).

    With ``run_id``, run that queued run: as its target says (its slot, its parameters
    for this run), whether this process claims it now or a server claimed it for this
    process (a runner)."""
    store = open_store()
    target: RunTarget | None = None
    try:
        try:
            job = _runnable_job(store, job_id)
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
            target or job.target(), run_id=run_id, job_id=job.id, name=job.name, **kwargs
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


def start_job(job_id: str, workers: int = 1) -> str:
    """Queue a run of the job and start it in a background process; returns the run id."""
    store = open_store()
    try:
        job = _runnable_job(store, job_id)
        run_id = new_run_id()
        store.queue_run(run_id, job.name, job.id, job.target())
    finally:
        store.close()
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
        gone = store.delete_job(job_id)
    finally:
        store.close()
    for run_id in gone:
        shutil.rmtree(settings.logs_dir(run_id), ignore_errors=True)
    return gone


def _absolute(ref: str) -> str:
    module, sep, name = ref.rpartition(":")
    if sep and (module.endswith(".py") or os.sep in module):
        return f"{os.path.abspath(module)}:{name}"
    return ref
