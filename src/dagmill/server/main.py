"""``dagmill server``: the scheduler, the run queue and the runners in one process.

One loop, in the main thread, does everything that decides: it decides due slots
(``scheduler``), starts queued runs in free runners (the job's overlap policy decides
whether a run waits for the job's running one), resumes runs whose engine died or was
handed back, and heartbeats the server's row. Between rounds it sleeps until the next
slot is due, or until woken: jobs changed (PostgreSQL NOTIFY, or a datagram from the CLI
on SQLite), a runner ended, a signal arrived. On SQLite it also re-reads the jobs'
change counter once a second, for changes made without a wake-up.

Several servers may share a PostgreSQL database. Each claims the run it starts in its
name (``runs.server_id``, and ``DAGMILL_SERVER_ID`` for its runners' engines), and looks
for orphans at each heartbeat and as soon as another server's heartbeat expires (two of
its periods without one): a run whose server is dead, or whose engine's process is gone
on this host, is taken over by one conditional update, so exactly one server resumes it,
within two heartbeat periods of the death.

SIGTERM or Ctrl-C drains: no new slots, no new runs; running runs get ``grace`` seconds
to finish, then are handed back (their runner stopped, the run left RUNNING without an
owner, so the next server resumes it without redoing finished tasks). A second signal
hands back at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.io.owners import owner_gone
from dagmill.io.wake import WakeSocket
from dagmill.model.runs import JobInfo, RunInfo
from dagmill.model.servers import ServerInfo
from dagmill.scheduler.loop import Scheduler
from dagmill.server.runners import Assignment, RunnerPool
from dagmill.services.runs import server_of
from dagmill.store import Store

__all__ = ["Server", "ServerOptions", "default_max_runs"]

# a run on another host, of no server, whose engine sent no heartbeat for this long
_STALE_RUN_SECONDS = 60.0
# looked at just after another server's expiry, so that it is past it (``ServerInfo.dead``)
_EXPIRY_MARGIN = 0.02
_SQLITE_POLL_SECONDS = 1.0


def default_max_runs() -> int:
    """Runs at once by default: one per core (each run's tasks share the machine)."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How a server runs (``dagmill server --help``)."""

    max_runs: int
    workers: int = 1  # tasks at once within each run
    grace: float = 30.0  # seconds running runs get to finish when draining
    heartbeat: float = 5.0
    log_json: bool = False
    log_level: str = "info"


class Server:
    """One server process. ``run()`` returns its exit code once drained."""

    def __init__(
        self,
        options: ServerOptions,
        store: Store,
        log: Callable[..., None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.store = store
        self.log = log
        self.clock = clock
        self.wake = threading.Event()
        self.draining = False
        self.hard_stop = False
        self.id = f"s{os.getpid()}-{os.urandom(3).hex()}"
        self.scheduler = Scheduler(store, log)
        # the runners' engines record which server runs them (runs and leases die with it)
        env = {**os.environ, "DAGMILL_HOME": settings.home(), "DAGMILL_SERVER_ID": self.id}
        for name in ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE"):
            env.pop(name, None)  # a runner works on the database, never as a client
        env["DAGMILL_CONFIG"] = os.devnull  # nor through a profile of the config file
        self.pool = RunnerPool(options.max_runs, self.wake.set, env)
        self._jobs_version = -1
        self._jobs_cache: dict[str, JobInfo] = {}
        self._next_beat = 0.0
        self._next_look = 0.0  # for orphans: at each beat, and when another server expires
        self._starved = False  # orphans were not looked for: no free runner
        self._host = os.uname().nodename
        self._sqlite = not store.display_url.startswith("postgresql")
        # without LISTEN/NOTIFY, changes made without a wake-up are seen within a second
        self._poll = _SQLITE_POLL_SECONDS if self._sqlite else 30.0

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.draining:
            self.hard_stop = True
        self.draining = True
        self.wake.set()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        self._refuse_second_sqlite_server()
        self.store.register_server(self.id, self.options.max_runs, self.options.heartbeat)
        listener = self.store.jobs_listener()
        sock = WakeSocket.open(settings.server_socket(), self.wake) if self._sqlite else None
        if listener is not None:
            threading.Thread(target=self._listen, args=(listener,), daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._reload(self.clock())
        self.log(
            "server_started",
            server=self.id,
            store=self.store.display_url,
            max_runs=self.options.max_runs,
            jobs=self.scheduler.jobs(),
            wake="notify" if listener else ("socket" if sock else "poll"),
        )
        self.pool.warm()
        last_poll = self.clock()
        try:
            while not self.draining:
                now = self.clock()
                if self.wake.is_set() or now - last_poll >= self._poll:
                    self.wake.clear()
                    last_poll = now
                    self._reload(now)
                self._round(now)
                self.wake.wait(self._sleep(self.clock(), last_poll))
            return self._drain()
        finally:
            if sock is not None:
                sock.close()
            self.pool.close()

    def _listen(self, listener: Any) -> None:
        """Wake the loop on NOTIFY; a dropped connection (PostgreSQL restarted) is opened
        again, with backoff, and meanwhile the loop re-reads the change counter."""
        backoff = 0.5
        while not self.draining:
            try:
                if listener is None:
                    # its own connection: safe beside the loop's
                    listener = self.store.jobs_listener()
                    self.wake.set()  # changes may have been missed while it was away
                    self.log("listening_again")
                    self._poll, backoff = 30.0, 0.5
                if listener.wait(1.0):
                    self.wake.set()
            except Exception as e:
                if self.draining:
                    break
                self.log("listen_failed", level="warning", error=str(e), retry_in=backoff)
                with contextlib.suppress(Exception):
                    listener.close()
                listener = None
                self._poll = _SQLITE_POLL_SECONDS  # until it listens again
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def _sleep(self, now: float, last_poll: float) -> float:
        until = [self._next_beat, self._next_look, last_poll + self._poll]
        due = self.scheduler.next_due()
        if due is not None:
            until.append(due)
        return max(0.0, min(until) - now)

    def _round(self, now: float) -> None:
        self.scheduler.tick(now)
        self._ended()
        if now >= self._next_beat:
            self.store.server_heartbeat(self.id, "running")
            self._next_beat = now + self.options.heartbeat
            self._next_look = now
        if now >= self._next_look:
            # before the queue: a run already under way gets a free runner first
            self._next_look = self._resume_orphans(now)
        self._start_queued()

    def _reload(self, now: float) -> None:
        version = self.store.jobs_changed()
        if version == self._jobs_version:
            return
        self._jobs_version = version
        jobs = self.store.scheduled_jobs()
        self.scheduler.load(jobs, now)
        self._jobs_cache.clear()

    def _job(self, job_id: str) -> JobInfo | None:
        job = self._jobs_cache.get(job_id)
        if job is None:
            job = self.store.get_job(job_id)
            if job is not None:
                self._jobs_cache[job_id] = job
        return job

    # -- runs ------------------------------------------------------------------------------
    def _start_queued(self) -> None:
        if self.pool.free() <= 0:
            return
        seen: set[str] = set()  # jobs whose oldest queued run was looked at this round
        for run in self.store.queued_runs(limit=100):
            if self.pool.free() <= 0:
                return
            job = self._job(run.job_id) if run.job_id else None
            if run.job_id is not None and job is None:
                continue  # its job was deleted meanwhile
            if job is not None and job.policy.overlap != "allow":
                # only a job's oldest queued run may start, and only once its running one
                # ended: a later slot never overtakes an earlier one
                first = job.id not in seen
                seen.add(job.id)
                if not first or self._job_busy(run):
                    continue
            owner = self.pool.owner()
            if not self.store.claim_queued(run.id, owner, self.id):
                continue  # another server took it
            self._start("run", run, owner)

    def _job_busy(self, run: RunInfo) -> bool:
        assert run.job_id is not None
        return any(
            r.id != run.id and (r.status == "RUNNING" or r.owner is not None)
            for r in self.store.active_runs(run.job_id)
        )

    def _start(self, action: str, run: RunInfo, owner: str) -> None:
        assignment = Assignment(
            action,
            run.id,
            run.job_id,
            self.options.workers,
            os.path.join(settings.logs_dir(run.id), "engine.log"),
            claimed_by=owner,
            server_id=self.id,
            taken_from=run.owner,
            # a queued run's options are its queuer's; a resumed one's, its engine's
            forced_all_upstream=action == "run" and bool(run.options.get("forced_all_upstream")),
        )
        self.pool.start(assignment)
        # how late a slot's run starts (a resume's lateness says nothing)
        late = self.clock() - run.scheduled_for if run.scheduled_for and action == "run" else None
        self.log(
            "run_started" if action == "run" else "run_resumed",
            run=run.id,
            job=run.job_id,
            runner=owner,
            late=None if late is None else f"{late:.3f}",
        )

    def _ended(self) -> None:
        for runner in self.pool.finished():
            run = self.store.get_run(runner.assignment.run_id)
            status = run.status if run else "deleted"
            level = "info" if status in ("SUCCESS", "CANCELLED") else "warning"
            self.log(
                "run_ended",
                level=level,
                run=runner.assignment.run_id,
                job=runner.assignment.job_id,
                status=status,
                seconds=f"{self.clock() - runner.started_at:.3f}",
                exit=runner.returncode,
                error=run.error if run is not None and status == "FAILED" else None,
            )
            if run is not None and run.status in ("RUNNING", "PENDING"):
                self._next_look = 0.0  # its runner died: resume it in this round
            elif self._starved:
                self._next_look = 0.0  # a free runner for the orphans it could not take

    def _resume_orphans(self, now: float) -> float:
        """Resume job runs whose engine is gone: its server is dead (stopped, or silent
        for two of its heartbeat periods), its process is gone on this host (killed, or
        its server killed), or it was handed back by a draining server (no owner); a run
        of no server on another host, silent for a minute. Returns when to look again:
        at the next beat, or just after the next expiry of another server's heartbeat,
        whichever comes first (so a dead server's runs wait at most two of its periods)."""
        look_again = now + self.options.heartbeat
        for server in self.store.live_servers(now=now):
            if server.id != self.id:
                look_again = min(look_again, max(now, server.expires_at) + _EXPIRY_MARGIN)
        self._starved = self.pool.free() <= 0
        if self._starved or self.draining:
            return look_again  # the next runner that ends makes it look (``_ended``)
        mine = {r.assignment.run_id for r in self.pool.busy()}
        runs = [
            r
            for r in self.store.open_runs()
            # ad-hoc runs belong to their terminal: `dagmill runs resume`
            if r.id not in mine and r.job_id is not None and r.target is not None
        ]
        servers = self.store.servers(r.server_id for r in runs if r.server_id)
        for run in runs:
            if self.pool.free() <= 0 or self.draining:
                break
            if not self._orphaned(run, servers, now):
                continue
            owner = self.pool.owner()
            if self.store.take_over_orphan(run.id, run.owner, owner, self.id):
                self._start("resume", run, owner)
                dead = servers.get(run.server_id or "")
                self.log(
                    "run_taken_over",
                    run=run.id,
                    job=run.job_id,
                    previous_owner=run.owner,
                    previous_server=run.server_id,
                    server_expired=None if dead is None else f"{dead.expires_at:.3f}",
                )
        return look_again

    def _orphaned(self, run: RunInfo, servers: dict[str, ServerInfo], now: float) -> bool:
        """Whether ``run`` (RUNNING, a job's) has lost its engine, to the best of what this
        server can know."""
        if run.owner is None:
            return True  # handed back by a draining server
        if run.owner.rpartition(":")[0] == self._host:
            # on this host the owner's process tells, whatever its server's heartbeat
            # says: a runner dies with its server (within milliseconds), so a live one
            # belongs to a server that is late, not dead, and must not run twice
            return owner_gone(run.owner)
        if run.server_id is not None:
            server = servers.get(run.server_id)
            # no row: its server was deleted by hand, and nothing else will resume it
            return server is None or server.dead(now)
        # an engine on another host, started by no server: only its own heartbeat tells
        return now - (run.heartbeat_at or 0.0) > _STALE_RUN_SECONDS

    # -- stopping --------------------------------------------------------------------------
    def _drain(self) -> int:
        busy = self.pool.busy()
        self.log("server_draining", server=self.id, running=len(busy), grace=self.options.grace)
        self.store.server_heartbeat(self.id, "draining")
        deadline = time.monotonic() + self.options.grace
        while self.pool.busy() and not self.hard_stop:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.wake.wait(min(left, self.options.heartbeat))
            self.wake.clear()
            self._ended()
            # still alive to the others, or they would take over the runs it finishes
            self.store.server_heartbeat(self.id, "draining")
        self._ended()
        for runner in self.pool.busy():
            self.pool.stop(runner)
            run_id = runner.assignment.run_id
            handed = any(
                self.store.hand_back(run_id, owner)
                for owner in (runner.owner, runner.assignment.claimed_by)
                if owner is not None
            )
            self.log(
                "run_handed_back",
                level="warning",
                run=run_id,
                job=runner.assignment.job_id,
                resumable=handed,
            )
        self.store.stop_server(self.id)
        self.log("server_stopped", server=self.id)
        return 0

    def _refuse_second_sqlite_server(self) -> None:
        if not self._sqlite:
            return
        other = server_of(self.store, draining_too=True)
        if other is not None:
            raise DefinitionError(
                f"another server (pid {other.pid} on {other.host}, {other.id}) serves "
                f"{self.store.display_url}: SQLite serves one server at a time; stop it, "
                "or share a PostgreSQL database between servers (DAGMILL_DATABASE_URL="
                "postgresql+psycopg://...)"
            )
