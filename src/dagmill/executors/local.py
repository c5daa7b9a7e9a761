"""Run tasks in a pool of worker processes (``workers=N``).

Each worker is a forked process in its own process group, so that cancelling a task
stops everything it started. The engine waits on the workers' pipes and process
sentinels together (``multiprocessing.connection.wait``): no polling. A worker that dies
(killed, segfault, ``os._exit``) fails its task with a clear error and is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from dagmill.executors.base import Executor, Submission, TaskError, TaskResult, execute

__all__ = ["LocalExecutor"]

_GRACE_SECONDS = 3.0


def _worker_main(conn: Connection) -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle

    def _terminate(signum: int, frame: Any) -> None:
        # unwinds the task's stack, so atomic writes remove their temporary files
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    while True:
        try:
            sub = conn.recv()
        except EOFError:
            return
        if sub is None:
            return
        conn.send(execute(sub))


class _Worker:
    __slots__ = ("conn", "proc", "sub", "started")

    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
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
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        self._idle: list[_Worker] = []
        self._busy: dict[Any, _Worker] = {}  # keyed by connection and by sentinel

    def start(self) -> None:
        while len(self._idle) < self.slots:
            self._idle.append(_Worker(self._ctx))

    def can_submit(self) -> bool:
        return bool(self._idle)

    def submit(self, sub: Submission) -> None:
        w = self._idle.pop()
        w.sub, w.started = sub, time.time()
        w.conn.send(sub)
        self._busy[w.conn] = w
        self._busy[w.proc.sentinel] = w

    def wait(self, timeout: float | None) -> list[TaskResult]:
        if not self._busy:
            return []
        ready = wait(list(self._busy), timeout)
        results: list[TaskResult] = []
        for obj in ready:
            w = self._busy.get(obj)
            if w is None or w.sub is None:
                continue  # its pipe and its sentinel both fired; already handled
            sub = w.sub
            if obj is w.conn:
                try:
                    results.append(w.conn.recv())
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
            self._idle.append(_Worker(self._ctx))
        return results

    def _release(self, w: _Worker, idle: bool) -> None:
        self._busy.pop(w.conn, None)
        self._busy.pop(w.proc.sentinel, None)
        w.sub = None
        if idle:
            self._idle.append(w)
        else:
            w.conn.close()

    def cancel(self) -> None:
        workers = {id(w): w for w in self._busy.values()}.values()
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
            w.conn.close()
        self._busy.clear()

    def shutdown(self) -> None:
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
            w.conn.close()
        self._idle.clear()
