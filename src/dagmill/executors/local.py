"""Run tasks in a pool of worker processes (``workers=N``).

Each worker is a forked process in its own process group, so that cancelling a task
stops everything it started. Workers are forked after the engine hands over the tasks'
actions, so a submission is only a task id (classes defined in ``__main__``, a notebook
or a module loaded from a path all work, and nothing is unpickled per task). The engine
waits on the workers' pipes and process sentinels together: no polling. A worker that
dies (killed, segfault, ``os._exit``) fails its task with a clear error and is replaced.
Workers die with their engine (PR_SET_PDEATHSIG); what their tasks started, even outside
their process group, is stopped by the run's reaper (``procs.Reaper``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import selectors
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from dagmill.executors.base import Executor, Submission, TaskError, TaskResult, execute
from dagmill.executors.capture import LogCapture, log_error, with_actions_secrets
from dagmill.executors.procs import Reaper, stop_marked

__all__ = ["LocalExecutor"]

_GRACE_SECONDS = 3.0
# inherited by forked workers: the actions of the run being executed
_actions: Mapping[str, Callable[[], Any]] = {}


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM if the engine dies (kill -9): no orphaned workers."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the pipe's EOF still ends an idle worker
    if os.getppid() != parent:  # the engine died before the request was made
        os._exit(1)


def _worker_main(
    conn: Connection,
    actions: Mapping[str, Callable[[], Any]] | None,
    parent: int,
    log: str | None,
    secrets: Sequence[str],
) -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle
    _die_with_parent(parent)

    def _terminate(signum: int, frame: Any) -> None:
        # what the task started goes too (it shares this worker's process group) ...
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGTERM)
        # ... and the task's stack unwinds, so atomic writes remove their temporary files
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    known = actions if actions is not None else _actions
    capture = LogCapture(log, secrets) if log else None
    if capture is not None:
        capture.begin()  # for the worker's whole life: it has no output of its own
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        # plain tuples both ways: pickling dataclasses costs more than the pipe itself
        tid, attempt, action, env, timeout = msg
        started = time.time()
        try:
            r = execute(Submission(tid, attempt, action, env or {}, timeout), action or known[tid])
        except BaseException as e:
            if getattr(e, "dagmill_outputs_saved", False):
                # cancelled after its work was done and its outputs in place: report the
                # success before this worker goes (the engine reads it while it cancels)
                end = capture.end(restore=False) if capture is not None else None
                conn.send((True, started, time.time(), None, end))
            raise
        end = None
        if capture is not None:
            end = capture.end(restore=False)
            broken = log_error(capture)
            if broken is not None and r.ok:
                r = r._replace(ok=False, error=broken)
        conn.send((r.ok, r.started, r.ended, r.error, end))


class _Worker:
    __slots__ = ("conn", "log", "proc", "started", "sub")

    def __init__(
        self,
        ctx: Any,
        actions: Mapping[str, Callable[[], Any]] | None,
        log: str | None,
        secrets: Sequence[str],
    ) -> None:
        parent, child = ctx.Pipe()
        self.log = log
        if log is not None:  # made here, so the engine can measure it before the worker runs
            os.makedirs(os.path.dirname(log), exist_ok=True)
            open(log, "ab").close()
        self.proc = ctx.Process(
            target=_worker_main, args=(child, actions, os.getpid(), log, secrets), daemon=True
        )
        self.proc.start()
        child.close()
        self.conn: Connection = parent
        self.sub: Submission | None = None
        self.started = 0.0


class LocalExecutor(Executor):
    """A process pool of ``workers`` forked processes."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.slots = workers
        self._fork = "fork" in mp.get_all_start_methods()
        self._ctx = mp.get_context("fork" if self._fork else "spawn")
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._sel = selectors.DefaultSelector()
        self._actions: Mapping[str, Callable[[], Any]] = {}
        self._log_dir: str | None = None
        self._secrets: Sequence[str] = ()
        self._spawned = 0
        self._reaper: Reaper | None = None
        self._late: list[TaskResult] = []  # successes reported while being cancelled

    def start(
        self,
        actions: Mapping[str, Callable[[], Any]],
        log_dir: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        global _actions
        self._actions = actions
        _actions = actions  # read by workers forked from now on
        if log_dir is not None:
            secrets = with_actions_secrets(secrets, actions.values())
        self._log_dir, self._secrets = log_dir, tuple(secrets)
        # before the workers fork: what their tasks start carries the run's token, so a
        # child that ignores SIGTERM or left the group still stops if the engine is killed
        self._reaper = Reaper()
        while len(self._idle) < self.slots:
            self._spawn()

    def _spawn(self) -> None:
        self._spawned += 1
        log = None
        if self._log_dir is not None:
            log = os.path.join(self._log_dir, f"worker-{self._spawned}.log")
        # with spawn, the actions travel once per worker rather than once per task
        w = _Worker(self._ctx, None if self._fork else dict(self._actions), log, self._secrets)
        self._sel.register(w.conn, selectors.EVENT_READ, w)
        self._sel.register(w.proc.sentinel, selectors.EVENT_READ, w)
        self._idle.append(w)

    def can_submit(self) -> bool:
        return bool(self._idle)

    def where_next(self) -> tuple[str, int] | None:
        # the next worker is idle, so its log ends where the next attempt's output starts
        w = self._idle[-1] if self._idle else None
        if w is None or w.log is None:
            return None
        return w.log, os.stat(w.log).st_size

    def submit(self, sub: Submission) -> None:
        w = self._idle.pop()
        w.sub, w.started = sub, time.time()
        action = None if sub.task_id in self._actions else sub.action
        env = dict(sub.env) if sub.env else None
        w.conn.send((sub.task_id, sub.attempt, action, env, sub.timeout))
        self._busy.add(w)

    def watch(self, wakeup: Any) -> bool:
        self._sel.register(wakeup, selectors.EVENT_READ, None)
        return True

    def wait(self, timeout: float | None) -> list[TaskResult]:
        if self._late:
            late, self._late = self._late, []
            return late
        if not self._busy:
            return []
        results: list[TaskResult] = []
        for key, _ in self._sel.select(timeout):
            w: _Worker | None = key.data
            if w is None:
                continue  # a watched wake-up: the caller drains it
            if w.sub is None or w not in self._busy:
                continue  # its pipe and its sentinel both fired; already handled
            sub = w.sub
            if key.fileobj is w.conn:
                try:
                    ok, started, ended, error, end = w.conn.recv()
                    results.append(
                        TaskResult(sub.task_id, sub.attempt, ok, started, ended, error, end)
                    )
                    self._release(w, idle=True)
                    continue
                except (EOFError, OSError):
                    pass
            w.proc.join(1)
            code = w.proc.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            err = TaskError(
                "WorkerDied",
                f"the worker process running this task died ({how}) before reporting a result",
                None,
                "",
            )
            results.append(TaskResult(sub.task_id, sub.attempt, False, w.started, time.time(), err))
            self._release(w, idle=False)
            self._spawn()
        return results

    def _release(self, w: _Worker, idle: bool) -> None:
        self._busy.discard(w)
        w.sub = None
        if idle:
            self._idle.append(w)
        else:
            self._close(w)

    def _close(self, w: _Worker) -> None:
        for obj in (w.conn, w.proc.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(obj)
        w.conn.close()

    def cancel(self) -> None:
        workers = list(self._busy)
        for w in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_SECONDS
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            # the group, not only the worker: whatever the task started goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.join(1)
            sub = w.sub
            with contextlib.suppress(EOFError, OSError):
                if sub is not None and w.conn.poll(0):
                    ok, started, ended, error, end = w.conn.recv()
                    if ok:
                        self._late.append(
                            TaskResult(sub.task_id, sub.attempt, ok, started, ended, error, end)
                        )
            self._close(w)
        self._busy.clear()
        if self._reaper is not None and workers:
            # what left a worker's process group (a session of its own) stops too
            stop_marked(self._reaper.token, _GRACE_SECONDS)

    def shutdown(self) -> None:
        global _actions
        if self._busy:
            self.cancel()
        for w in self._idle:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self._idle:
            w.proc.join(2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1)
            self._close(w)
        self._idle.clear()
        self._sel.close()
        _actions = {}
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None
