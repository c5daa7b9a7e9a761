"""One run = plan + state + executor + store.

The loop admits ready tasks while the executor has room and the resource pool allows,
then blocks on the executor's completion events (or until the next retry is due): no
polling. Results update the state machine, the fingerprint records beside the outputs
and the run record. A task whose outputs are local files is marked in its records file
as it starts (killed after its outputs were renamed into place, it is complete: see
``io/records.py``) and recorded in full with the next batch; other outputs are recorded
as each task finishes, before anything that depends on it starts. The run record is
written in batches.

With a run record, a run claims the tasks it will run (one transaction, see
``store/claims.py``): a task another live run holds waits ("running in run R") and is
looked at again every _CLAIM_RECHECK_SECONDS; once released it is complete (skipped)
or claimed and run here. So two runs of one graph on one data folder never execute a
task twice, whichever front door started them.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import secrets
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dagmill.engine.admission import Admission
from dagmill.errors import RunTakenOver, StoreUnavailable
from dagmill.executors.base import Executor, Submission, TaskError, TaskResult
from dagmill.executors.quotas import Allocation, ResourcePool
from dagmill.io.atomic import remove_stale_temporaries
from dagmill.io.records import (
    Record,
    RecordBook,
    changed_since,
    output_version,
    versions_before,
)
from dagmill.model.projects import DEFAULT_PROJECT
from dagmill.model.runs import RunTarget
from dagmill.model.states import RunStatus, TaskRunStatus
from dagmill.model.task import TaskSpec
from dagmill.plan.fingerprint import fingerprint
from dagmill.plan.planner import Plan, make_record
from dagmill.plan.state import RunState
from dagmill.store.base import NewRunTask, Store

__all__ = ["Reporter", "RunResult", "new_run_id", "run_plan"]

S = TaskRunStatus
_log = logging.getLogger("dagmill")
_FLUSH_EVENTS = 500
_FLUSH_SECONDS = 0.2
_HEARTBEAT_SECONDS = 5.0
# a claim is another run's while its owner lives and heartbeats: a process of this host
# that is gone frees it at once, one on another host after this many silent seconds
_CLAIM_LEASE_SECONDS = 60.0
_CLAIM_RECHECK_SECONDS = 1.0  # how often a task waiting on another run looks again


class Reporter(Protocol):
    """Receives a run's progress (the CLI draws it; the Python API may ignore it)."""

    def run_started(self, run_id: str, plan: Plan) -> None: ...
    def task_changed(self, task_id: str, status: TaskRunStatus, detail: str) -> None: ...


@dataclass(slots=True)
class RunResult:
    """What a run did: final status, every task's status, attempts and errors."""

    run_id: str
    status: RunStatus
    plan: Plan
    statuses: dict[str, TaskRunStatus]
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, TaskError] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    summary_text: str = ""

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCESS

    def __bool__(self) -> bool:
        # d6tflow's run() returns True/False without a summary: `if run(...)` keeps working
        return self.ok

    @property
    def scheduling_succeeded(self) -> bool:
        """luigi's name for ``ok`` (d6tflow code checks it)."""
        return self.ok

    def __repr__(self) -> str:
        # short: the default dataclass repr prints the whole plan (tens of KB)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        return f"<RunResult {self.run_id} {self.status.value} {len(self.statuses)} tasks: {counts}>"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.statuses.values():
            out[s.value] = out.get(s.value, 0) + 1
        return out

    def with_status(self, status: TaskRunStatus) -> list[str]:
        return [t for t in self.plan.graph.order if self.statuses[t] is status]


def new_run_id() -> str:
    """Sortable by time, unique: ``20261121-101500-3fa9c2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def run_plan(
    plan: Plan,
    executor: Executor,
    *,
    pool: ResourcePool,
    records: RecordBook,
    store: Store | None = None,
    name: str = "",
    reporter: Reporter | None = None,
    run_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    target: RunTarget | None = None,
    log_dir: str | None = None,
    secrets: Sequence[str] = (),
    attempts: Mapping[str, int] | None = None,
    project: str = DEFAULT_PROJECT,
    server_id: str | None = None,
) -> RunResult:
    """Run every task of ``plan`` that is not complete; return what happened.

    ``log_dir``: capture each attempt's output there (masking ``secrets``). With a
    ``store``, the run belongs to ``project`` (its tasks that declare resources are
    admitted against the project's quota) and to the server ``server_id`` if a server's
    runner runs it. Raises KeyboardInterrupt after recording a cancelled run if
    interrupted.
    """
    graph = plan.graph
    state = RunState(graph, plan.to_run)
    run_id = run_id or new_run_id()
    result = RunResult(run_id, RunStatus.RUNNING, plan, state.status, started_at=time.time())
    result.attempts.update(attempts or {})  # a resumed run numbers its attempts on
    # what attempts of a killed engine left half-written (their writer's pid is gone)
    remove_stale_temporaries(
        o.location
        for t in plan.to_run
        for o in graph.tasks[t].outputs
        if o.kind == "file" and "://" not in o.location
    )
    if store is not None:
        store.create_run(
            run_id,
            name,
            (
                NewRunTask(
                    tid,
                    s.family,
                    dict(s.params),
                    s.upstream,
                    plan.tasks[tid].state.value,
                    plan.tasks[tid].reason,
                    s.resources.to_dict(),
                    state.status[tid].value,
                    plan.tasks[tid].fingerprint,
                )
                for tid, s in graph.tasks.items()
            ),
            dict(options or {}),
            job_id=job_id,
            target=target,
            project=project,
            server_id=server_id,
        )
    if reporter is not None:
        reporter.run_started(run_id, plan)
    loop = _Loop(plan, state, executor, pool, records, store, reporter, result)
    loop.log_dir, loop.secrets = log_dir, secrets
    if store is not None and any(not graph.tasks[t].resources.empty for t in plan.to_run):
        # the default project's quota is this machine's capacity (or the run's --pool)
        loop.admission = Admission(store, project, run_id, pool.capacity, server_id)
        executor.watch(loop.admission.waker)
    if store is not None:
        loop.claim_start()
    beat = _Heartbeat(loop) if store is not None else None
    loop.hold()
    restore = _cancel_on_sigterm()
    loop.start_executor()  # workers fork here, before the heartbeat thread exists
    if beat is not None:
        beat.start()
    interrupted = lost = False
    try:
        loop.run()
    except StoreUnavailable:
        lost = True  # the tasks in hand finished; the run stays RUNNING, resumable
        raise
    except BaseException:
        interrupted = True
        if beat is not None:
            beat.stop()
        executor.cancel()
        if loop.taken_by is not None:  # another process runs it now: write nothing more
            store.forget_run_events(run_id)  # type: ignore[union-attr]
            raise RunTakenOver(run_id, loop.taken_by[0]) from None
        # an attempt that finished its work as the interrupt came (its outputs in place)
        # is recorded as the success it is, so that it does not run again
        for r in executor.wait(0):
            if r.ok and r.task_id in loop.running:
                loop.finished(r)
        for tid in state.cancel_open():
            loop.set_status(tid, S.CANCELLED)
        for tid, att in loop.running_attempts():
            loop.attempt(tid, att, S.CANCELLED, ended=time.time())
        raise
    finally:
        restore()
        if beat is not None:
            beat.stop()
        executor.shutdown()
        records.close()
        result.ended_at = time.time()
        if interrupted:
            result.status = RunStatus.CANCELLED
        elif result.errors or any(
            s is not S.SUCCESS and s is not S.SKIPPED for s in state.status.values()
        ):
            result.status = RunStatus.FAILED
        else:
            result.status = RunStatus.SUCCESS
        if loop.admission is not None:
            loop.admission.close()
        if store is not None and not lost and loop.taken_by is None:
            first = next(iter(result.errors.values()), None)
            store.finish_run(run_id, result.status.value, str(first) if first else None)
            if loop.claim_keys:
                # the run's end freed its claims already: this only tidies the table
                with contextlib.suppress(Exception):
                    store.release_run_claims(run_id)
    return result


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _cancel_on_sigterm() -> Callable[[], None]:
    """While a run is active, `kill PID` (and `dagmill runs cancel`) cancels it the way
    Ctrl-C does: recorded, workers and what they started stopped. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _masked(error: TaskError, secrets: Sequence[str]) -> TaskError:
    """The error without the values of secrets (it goes to the record and the terminal)."""

    def mask(text: str | None) -> str | None:
        for s in secrets:
            if text and s in text:
                text = text.replace(s, "***")
        return text

    return TaskError(
        error.type, mask(error.message) or "", mask(error.location), mask(error.traceback) or ""
    )


class _Heartbeat(threading.Thread):
    """Writes what the engine buffered, and the run's heartbeat, while the engine waits on
    its workers or a task runs in this process: states and log positions reach the store
    within _FLUSH_SECONDS, and a live run can be told from a dead one."""

    def __init__(self, loop: _Loop) -> None:
        super().__init__(name="dagmill-heartbeat", daemon=True)
        self.loop = loop
        self._halt = threading.Event()

    def run(self) -> None:
        loop, store = self.loop, self.loop.store
        assert store is not None
        last_beat = time.monotonic()
        while not self._halt.wait(_FLUSH_SECONDS):
            with loop.lock:  # the engine holds it, except while it waits or a task runs
                now = time.monotonic()
                if now - last_beat >= _HEARTBEAT_SECONDS:
                    if self.taken_over():
                        return
                    store.heartbeat(loop.result.run_id)
                    if loop.claimed:
                        # a beat missed (the record busy) is made up by the next: the
                        # lease is many beats long
                        with contextlib.suppress(Exception):
                            store.heartbeat_claims(loop.result.run_id)
                    if loop.admission is not None and loop.admission.busy:
                        with contextlib.suppress(Exception):
                            store.heartbeat_leases(loop.result.run_id)
                    last_beat = now
                if store.buffered or store.beating:
                    loop.flush_store()
                    loop.last_flush = now

    def taken_over(self) -> bool:
        """Whether another process owns the run now (a server that thought this engine's
        dead took it over): if so, drop what is buffered, and stop the engine (a signal
        interrupts a wait or a task running in this process; off the main thread, the
        engine sees it after its next event)."""
        loop, store = self.loop, self.loop.store
        assert store is not None
        try:
            owner = store.run_owner(loop.result.run_id)
        except Exception:
            return False  # the record is away: its own errors say so
        if owner == store.owner:
            return False
        loop.taken_by = (owner,)
        store.forget_run_events(loop.result.run_id)
        _log.warning("run %s was taken over by %s: stopping", loop.result.run_id, owner)
        if loop.on_main:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        return True

    def stop(self) -> None:
        """Stop and wait for the thread; the engine keeps (or takes back) the lock."""
        if not self.is_alive():
            return
        self._halt.set()
        self.loop.let_go()
        self.join()
        self.loop.hold()


class _Loop:
    log_dir: str | None = None
    secrets: Sequence[str] = ()

    def __init__(
        self,
        plan: Plan,
        state: RunState,
        executor: Executor,
        pool: ResourcePool,
        records: RecordBook,
        store: Store | None,
        reporter: Reporter | None,
        result: RunResult,
    ) -> None:
        self.graph = plan.graph
        self.state = state
        self.ex = executor
        self.pool = pool
        self.records = records
        self.store = store
        self.reporter = reporter
        self.result = result
        self.versions: dict[str, str] = dict(plan.versions)
        self.running: dict[str, tuple[Allocation, dict[str, str], int, tuple[str, int] | None]] = {}
        self.waiting_for: dict[str, str] = {}
        self.retries: list[tuple[float, int, str]] = []
        self.last_flush = time.monotonic()
        self.gpu_env = pool.capacity.gpu > 0
        self.lock = threading.Lock()
        self.holding = False
        self.store_lost: StoreUnavailable | None = None
        # claims (with a store): task → its claim key; the tasks this run holds; those
        # another run holds (→ its id); those of them waiting for it now
        self.claim_keys: dict[str, str] = {}
        self.claimed: set[str] = set()
        self.elsewhere: dict[str, str] = {}
        self.parked: dict[str, str] = {}
        self.recheck_at = 0.0
        self.made_at = plan.made_at
        self.marks: dict[str, Record] = {}  # records written as tasks started (running)
        self.suspect: set[str] = set()  # recorded since the plan: made by another run?
        self.admission: Admission | None = None  # the project's ledger (with a store)
        # (owner,) once another process took the run over: nothing more is written
        self.taken_by: tuple[str | None] | None = None
        self.on_main = threading.current_thread() is threading.main_thread()
        self.pending_since: dict[str, float] = {}  # when a task began to wait for resources

    def hold(self) -> None:
        if not self.holding:
            self.lock.acquire()
            self.holding = True

    def let_go(self) -> None:
        if self.holding:
            self.holding = False
            self.lock.release()

    def run(self) -> None:
        ready: deque[str] = deque(self.state.take_ready())

        while not self.state.finished:
            if self.taken_by is not None:
                raise KeyboardInterrupt("taken over")  # stopped as a cancel is, unrecorded
            if self.store_lost is not None:
                # the record stayed away past the bound: start nothing more, let the tasks
                # in hand finish (their outputs and records are whole), then say so
                ready.clear()
                self.retries.clear()
                if not self.running:
                    raise self.store_lost.for_run(self.result.run_id)
            now = time.monotonic()
            while self.retries and self.retries[0][0] <= now:
                ready.append(heapq.heappop(self.retries)[2])
            if self.parked and now >= self.recheck_at:
                ready.extend(self.recheck_claims())
            blocked: list[str] = []
            adm = self.admission
            if adm is not None:
                adm.begin_pass()
            while ready and self.ex.can_submit():
                tid = ready.popleft()
                if tid in self.elsewhere:
                    self.park(tid)
                    continue
                if tid in self.suspect:
                    self.suspect.discard(tid)
                    if self.skip_if_made(tid, "another run"):
                        ready.extend(self.state.take_ready())
                        continue
                request = self.graph.tasks[tid].resources
                alloc = self.pool.try_acquire(request)
                if isinstance(alloc, str):
                    blocked.append(tid)
                    self.wait_resources(tid, alloc)
                    continue
                if adm is not None and not request.empty:
                    att = self.result.attempts.get(tid, 0) + 1
                    why = adm.ask(tid, att, request, self.waiting_for.get(tid))
                    if why is not None:
                        self.pool.release(alloc)
                        blocked.append(tid)
                        self.wait_resources(tid, why)
                        continue
                self.submit(tid, alloc)
            if adm is not None:
                adm.end_pass(every_task_looked_at=not ready)
            ready.extendleft(reversed(blocked))
            self.maybe_flush()
            wake = self.retries[0][0] if self.retries else None
            if self.parked and (wake is None or self.recheck_at < wake):
                wake = self.recheck_at
            if adm is not None and adm.waiting and (wake is None or adm.recheck_at < wake):
                wake = adm.recheck_at
            if self.running:
                # block until an event, a due retry or a look at the claims waited on;
                # meanwhile the heartbeat writes
                timeout = None if wake is None else max(0.0, wake - now)
                self.let_go()
                try:
                    results = self.ex.wait(timeout)
                finally:
                    self.hold()
                for r in results:
                    self.finished(r)
                ready.extend(self.state.take_ready())
            elif wake is not None:
                self.let_go()  # the heartbeat keeps the run and its claims alive meanwhile
                try:
                    left = max(0.0, wake - time.monotonic())
                    if adm is not None:
                        select.select([adm.waker], [], [], left)  # or a release wakes it
                    else:
                        time.sleep(left)
                finally:
                    self.hold()
            elif ready:
                raise RuntimeError(  # pool.check() before the run makes this unreachable
                    f"{len(ready)} tasks wait for resources while nothing runs: "
                    + self.waiting_for.get(ready[0], "")
                )

    def wait_resources(self, tid: str, why: str) -> None:
        """PENDING, and why (the record's attempt says it too), since it first waited."""
        self.pending_since.setdefault(tid, time.time())
        if self.waiting_for.get(tid) != why:
            self.waiting_for[tid] = why
            self.state.pending(tid)
            self.set_status(tid, S.PENDING, why)
            self.attempt(tid, self.result.attempts.get(tid, 0) + 1, S.PENDING, waiting_for=why)

    def start_executor(self) -> None:
        self.ex.start(
            {t: a for t in self.state.status if (a := self.graph.tasks[t].action)},
            self.log_dir,
            self.secrets,
        )

    def submit(self, tid: str, alloc: Allocation) -> None:
        spec = self.graph.tasks[tid]
        att = self.result.attempts.get(tid, 0) + 1
        self.result.attempts[tid] = att
        inputs = {u: self.versions[u] for u in spec.upstream if u in self.versions}
        where = self.ex.where_next()
        self.running[tid] = (alloc, inputs, att, where)
        self.waiting_for.pop(tid, None)
        self.state.running(tid)
        self.set_status(tid, S.RUNNING)
        now = time.time()
        since = self.pending_since.pop(tid, None)
        self.attempt(
            tid,
            att,
            S.RUNNING,
            started=now,
            log=(where[0], where[1], None) if where else None,
            waited=None if since is None else now - since,
        )
        if spec.complete_check is None and spec.outputs:
            before = versions_before(spec.outputs)
            if before is not None:
                # on disk before the task can rename an output into place: killed after
                # that, it is complete (io/records.py)
                record = make_record(spec, inputs)
                try:
                    self.records.mark(spec.outputs[0].location, record, before)
                except OSError as e:  # a full or read-only data folder: the task fails
                    self.refuse(tid, att, e)
                    return
                self.marks[tid] = record
        if self.gpu_env:
            env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, alloc.gpu_ids))}
            sub = Submission(tid, att, spec.action, env, spec.timeout)
        else:
            sub = Submission(tid, att, spec.action, timeout=spec.timeout)
        self.let_go()  # an inline task runs inside submit: let the heartbeat write meanwhile
        try:
            self.ex.submit(sub)
        finally:
            self.hold()

    def finished(self, r: TaskResult) -> None:
        tid = r.task_id
        alloc, inputs, att, where = self.running.pop(tid)
        log = (where[0], where[1], r.log_end) if where else None
        self.pool.release(alloc)
        if self.admission is not None:
            self.admission.release(tid)
        spec = self.graph.tasks[tid]
        error = r.error
        if error is not None and self.secrets:
            error = _masked(error, self.secrets)
        fp = None
        if r.ok and spec.outputs:
            version = output_version(spec.outputs)
            if version is None:
                missing = [o.key for o in spec.outputs if output_version((o,)) is None]
                in_memory = any(o.kind == "memory" for o in spec.outputs)
                hint = (
                    " (in-memory outputs stay in the worker process: use workers=1 or a file"
                    " output)"
                    if in_memory
                    else ""
                )
                # luigi (so d6tflow) does not check outputs after run(): a front door that
                # asks for it gets a warning and the task stays incomplete (it runs again
                # next time; a dependent that loads the output gets OutputError). An
                # in-memory output saved in a worker process is lost: that stays an error.
                if spec.extra.get("missing_output") == "warn" and (
                    not in_memory or self.ex.in_process
                ):
                    detail = (
                        f"run() finished without saving output {', '.join(missing)}: "
                        "the task stays incomplete"
                    )
                    _log.warning("%s: %s", spec.label, detail)
                    self.forget_mark(tid)
                    self.attempt(tid, att, S.SUCCESS, started=r.started, ended=r.ended, log=log)
                    self.set_status(tid, S.SUCCESS, detail)
                    self.state.succeed(tid)
                    return
                error = TaskError(
                    "MissingOutput",
                    f"run() finished but did not write output {', '.join(missing)}{hint}",
                    spec.source,
                    "",
                )
            else:
                self.versions[tid] = version
                mark = self.marks.pop(tid, None)
                if mark is not None:  # safe already: its record goes in the next batch
                    record = mark  # the same fingerprint, written as done now
                    self.records.put(spec.outputs[0].location, mark, time.time())
                else:
                    record = make_record(spec, inputs)
                    self.records.put(spec.outputs[0].location, record)
                    # on disk before anyone hears it is done, and before a dependent starts
                    self.records.flush()
                fp = record.fingerprint
        if error is None:
            self.attempt(tid, att, S.SUCCESS, started=r.started, ended=r.ended, log=log)
            self.set_status(tid, S.SUCCESS, fingerprint=fp)
            if self.claimed:
                self.release((tid,))
            self.state.succeed(tid)
            return
        self.attempt(tid, att, S.FAILED, started=r.started, ended=r.ended, error=error, log=log)
        self.forget_mark(tid)
        if att <= spec.retries:
            delay = spec.retry_delay * (2 ** (att - 1))
            heapq.heappush(self.retries, (time.monotonic() + delay, att, tid))
            self.state.pending(tid)
            self.set_status(tid, S.PENDING, f"retry {att} of {spec.retries} in {delay:g}s")
            return
        self.result.errors[tid] = error
        self.set_status(tid, S.FAILED, str(error))
        hit = self.state.fail(tid)
        for d in hit:
            self.set_status(d, S.UPSTREAM_FAILED, f"upstream {spec.label} failed")
        if self.claimed:  # another run waiting on them may try them itself
            self.release((tid, *hit))

    def refuse(self, tid: str, att: int, error: OSError) -> None:
        """The attempt fails before it starts: its record cannot be written beside its
        outputs (it would not count as done, and it is not run)."""
        folder = os.path.dirname(self.graph.tasks[tid].outputs[0].location)
        now = time.time()
        why = TaskError(
            "RecordWriteError",
            f"cannot write the task's record in {folder}: {error.strerror or error}"
            " (free some space or make the folder writable, then run it again)",
            None,
            "",
        )
        self.finished(TaskResult(tid, att, False, now, now, why))

    def forget_mark(self, tid: str) -> None:
        """A failed attempt may have written every output before it failed: its mark must
        not make it look complete."""
        if self.marks.pop(tid, None) is not None:
            self.records.forget(self.graph.tasks[tid].outputs[0].location)
            self.records.flush()

    def set_status(
        self, tid: str, status: TaskRunStatus, detail: str = "", fingerprint: str | None = None
    ) -> None:
        if self.store is not None:
            self.store.task_status(
                # a StrEnum member is already the str to store; .value costs a descriptor call
                self.result.run_id,
                tid,
                status,
                self.result.attempts.get(tid, 0),
                fingerprint,
            )
        if self.reporter is not None:
            self.reporter.task_changed(tid, status, detail)

    def attempt(
        self,
        tid: str,
        att: int,
        status: TaskRunStatus,
        *,
        started: float | None = None,
        ended: float | None = None,
        waiting_for: str | None = None,
        error: TaskError | None = None,
        log: tuple[str, int, int | None] | None = None,
        waited: float | None = None,
    ) -> None:
        if self.store is None:
            return
        self.store.task_attempt(
            self.result.run_id,
            tid,
            att,
            status,
            started_at=started,
            ended_at=ended,
            waiting_for=waiting_for,
            error=f"{error.type}: {error.message}" if error else None,
            error_location=error.location if error else None,
            traceback=error.traceback if error else None,
            log=log,
            waited=waited,
        )

    # -- claims ------------------------------------------------------------------------
    def claim_start(self) -> None:
        """Claim every task this run is to run, in one transaction; note those another
        live run holds (they wait for it when they are ready)."""
        assert self.store is not None
        keys: dict[str, str] = {}
        for tid, status in self.state.status.items():
            if status is S.WAITING:
                key = _claim_key(self.graph.tasks[tid])
                if key is not None:
                    keys[key] = tid
                    self.claim_keys[tid] = key
        if not keys:
            return
        held = self.store.claim_tasks(self.result.run_id, keys, lease=_CLAIM_LEASE_SECONDS)
        self.elsewhere = {keys[k]: h.run_id for k, h in held.items()}
        self.claimed = {t for t in self.claim_keys if t not in self.elsewhere}
        # another run may have made some between this run's plan and its claim: those
        # recorded since the plan are looked at again before they start. The records are
        # read now, after the claim (this run reads them once anyway, to append to them)
        book = self.records
        tasks = self.graph.tasks
        locations = {t: tasks[t].outputs[0].location for t in self.claimed}
        by_folder = book.by_folder(locations.items())
        book.refresh(by_folder)
        for folder, located in by_folder.items():
            if not book.has_records(folder):
                continue  # nothing recorded there: no task of it can be suspect
            for tid, loc in located:
                if book.fingerprint(loc) is None or tasks[tid].complete_check:
                    continue  # never recorded; or its own complete() says, not a record
                record = book.get(loc)
                if record is not None and record.at >= self.made_at:
                    self.suspect.add(tid)

    def park(self, tid: str) -> None:
        """A ready task another run is executing waits for it (no busy wait: the loop
        looks again at the next recheck)."""
        if not self.parked:
            self.recheck_at = time.monotonic() + _CLAIM_RECHECK_SECONDS
        self.parked[tid] = self.elsewhere[tid]
        self.wait_elsewhere(tid, self.elsewhere[tid])

    def wait_elsewhere(self, tid: str, run_id: str) -> None:
        """WAITING, and why, in the record too (``runs show``): on the attempt it will be."""
        why = f"running in run {run_id}"
        self.set_status(tid, S.WAITING, why)
        self.attempt(tid, self.result.attempts.get(tid, 0) + 1, S.WAITING, waiting_for=why)

    def recheck_claims(self) -> list[str]:
        """Claim again what waits on other runs; what this run gets is complete (another
        run made it: SKIPPED) or runs here. Returns the tasks to run. Tasks that became
        ready meanwhile and are held elsewhere wait in turn, in the same look."""
        assert self.store is not None
        to_run: list[str] = []
        while self.parked:
            keys = {self.claim_keys[t]: t for t in self.parked}
            held = self.store.claim_tasks(self.result.run_id, keys, lease=_CLAIM_LEASE_SECONDS)
            for key, h in held.items():
                tid = keys[key]
                if self.parked[tid] != h.run_id:  # the owner changed: say so
                    self.elsewhere[tid] = self.parked[tid] = h.run_id
                    self.wait_elsewhere(tid, h.run_id)
            won = [t for k, t in keys.items() if k not in held]
            if not won:
                break
            self.records.refresh(
                {os.path.dirname(self.graph.tasks[t].outputs[0].location) for t in won}
            )
            for tid in won:
                by = self.parked.pop(tid)
                del self.elsewhere[tid]
                self.claimed.add(tid)
                if not self.skip_if_made(tid, f"run {by}"):
                    to_run.append(tid)
            for tid in self.state.take_ready():
                if tid in self.elsewhere:
                    self.park(tid)
                else:
                    to_run.append(tid)
        self.recheck_at = time.monotonic() + _CLAIM_RECHECK_SECONDS
        return to_run

    def skip_if_made(self, tid: str, by: str) -> bool:
        """SKIPPED if another run completed the task since this run planned: outputs
        there, recorded since the plan with the fingerprint this run would give it."""
        spec = self.graph.tasks[tid]
        version = output_version(spec.outputs)
        if version is None:
            return False
        fp = None
        if spec.complete_check is not None:
            if not spec.complete_check():
                return False
        else:
            record = self.records.get(spec.outputs[0].location)
            inputs = {u: self.versions[u] for u in spec.upstream if u in self.versions}
            if (
                record is None
                or record.at < self.made_at  # as it was: what the plan wants redone
                or record.fingerprint != fingerprint(spec.params, spec.code, inputs)
                # marked as it started: complete only if it wrote every output since
                or (record.before is not None and not changed_since(version, record.before))
            ):
                return False
            fp = record.fingerprint
        self.versions[tid] = version
        self.set_status(tid, S.SKIPPED, f"complete: {by} made it", fingerprint=fp)
        if by.startswith("run "):  # it waited on that run: its attempt ends so
            self.attempt(tid, self.result.attempts.get(tid, 0) + 1, S.SKIPPED, ended=time.time())
        self.release((tid,))
        self.state.succeed(tid, S.SKIPPED)
        return True

    def release(self, tids: Sequence[str]) -> None:
        """Tasks that ended: their status in the store (next flush) frees their claims."""
        self.claimed.difference_update(tids)

    def running_attempts(self) -> list[tuple[str, int]]:
        return [(tid, att) for tid, (_, _, att, _) in self.running.items()]

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self.last_flush < _FLUSH_SECONDS and (
            self.store is None or self.store.buffered < _FLUSH_EVENTS
        ):
            return
        self.last_flush = now
        if self.store is not None:
            self.flush_store()
        else:
            self.records.flush()

    def flush_store(self) -> None:
        """Write the fingerprint records, then the run record's buffered events. A record
        that is away keeps its events and is retried; one away for too long stops the run
        (``store_lost``) instead of a traceback in the heartbeat thread."""
        assert self.store is not None
        what = "the fingerprint records beside the outputs"
        try:
            self.records.flush()  # first: SUCCESS in the store implies a record
            what = f"the run record at {self.store.display_url}"
            self.store.flush()
        except StoreUnavailable as e:
            self.store_lost = e
        except Exception as e:  # the heartbeat thread must not die: the engine says it
            self.store_lost = StoreUnavailable(
                f"cannot write {what}: {type(e).__name__}: {e}",
                database=self.store.display_url,
                reason=type(e).__name__,
            )


def _claim_key(spec: TaskSpec) -> str | None:
    """Who else may be running this task: the same task writing the same place (its id
    and first output, absolute). Tasks without file outputs are not claimed: they always
    run (no outputs), or live in one process (in-memory outputs)."""
    if not spec.outputs or spec.outputs[0].kind == "memory":
        return None
    where = spec.outputs[0].location
    if where[:1] != "/" and "://" not in where:
        where = os.path.abspath(where)
    return f"{spec.id}@{where}"
