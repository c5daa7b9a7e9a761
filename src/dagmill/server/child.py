"""The runners' parent (a fork server): one process, started with the server, that has
imported the engine and waits for work. For each run it is given (a JSON line on stdin,
see :class:`~dagmill.server.runners.Assignment`) it forks a runner, which is ready in
milliseconds instead of a Python start-up and an engine import (about 0.5 s of CPU), and
reports on stdout, one JSON line per event: ``forked`` (run and pid) and
``exited`` (run, pid and exit code).

It has no threads and no database connection, so forking it is safe. A runner gets its
own session (process group: stopped as one), its run's log as stdout and stderr, and its
own store connection; it first takes the run over from this process (the server claimed
it in this process's name), so a runner that dies leaves a run owned by a process that is
gone, which the server resumes. Runners die with this process (``PR_SET_PDEATHSIG``), and
this process, when its stdin closes (the server stopped or died), kills its runners
(each run's reaper then stops what the run started: modules run in sessions of their
own) and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
from typing import Any


def _say(**event: Any) -> None:
    os.write(1, json.dumps(event).encode() + b"\n")


def _warm() -> None:
    """Load what every run needs while nothing is due."""
    from dagmill.executors import local  # noqa: F401
    from dagmill.frontends.pipeline import action, compile, spec  # noqa: F401
    from dagmill.services import jobs, runs  # noqa: F401
    from dagmill.store import database_url

    if not database_url().startswith("sqlite"):
        import psycopg  # noqa: F401  (0.2 s of CPU, otherwise paid by each run)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _redirect(log: str) -> None:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _run(work: dict[str, Any]) -> int:
    """In the forked runner: run or resume the run; its exit code."""
    if work.get("server_id"):
        # the fork server has it from the server's environment already; the assignment's
        # is the one the run was claimed for, so the engine records that one
        os.environ["DAGMILL_SERVER_ID"] = work["server_id"]
    from dagmill.errors import DefinitionError, RunFailed
    from dagmill.services.execution import RunOptions
    from dagmill.services.jobs import run_job
    from dagmill.services.runs import resume_run
    from dagmill.store import open_store

    with open_store() as store:
        if not store.take_over(work["run_id"], work["claimed_by"]):
            print(f"run {work['run_id']} was taken by another process", file=sys.stderr)
            return 0
    forced = bool(work.get("forced_all_upstream"))
    try:
        if work["action"] == "resume":
            result = resume_run(
                work["run_id"],
                RunOptions(workers=work["workers"], execution_summary=True),
                taken_from=(work.get("taken_from"),),
            )
        elif work["job_id"] is None:
            # a queued rerun of a run of no job (``dagmill run MODULE:Task``): started as a
            # resume starts a run it took over, from its target, under its id (it has no
            # attempts yet for the resume to close)
            result = resume_run(
                work["run_id"],
                RunOptions(workers=work["workers"], abort=False, forced_all_upstream=forced),
                taken_from=(None,),
            )
        else:
            result = run_job(
                work["job_id"],
                run_id=work["run_id"],
                options=RunOptions(
                    workers=work["workers"], abort=False, forced_all_upstream=forced
                ),
            )
    except DefinitionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed:
        return 1
    except KeyboardInterrupt:
        return 130
    return 0 if result is None or result.status.value == "SUCCESS" else 1


def _fork(work: dict[str, Any], close: list[int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own subprocesses are waited for
        for fd in close:
            os.close(fd)
        _die_with_parent()
        import random

        random.seed()  # not the parent's sequence
        _redirect(work["log"])
        code = _run(work)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> int:
    _warm()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when runners stop
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    runners: dict[int, str] = {}
    pending = b""
    while True:
        for key, _ in sel.select():
            if key.fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                while runners:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    run_id = runners.pop(pid, None)
                    if run_id is not None:
                        _say(
                            event="exited",
                            run_id=run_id,
                            pid=pid,
                            code=os.waitstatus_to_exitcode(status),
                        )
                continue
            data = os.read(0, 65536)
            if not data:  # the server stopped or died: so do the runners (their engines;
                # each engine's reaper stops what its run started)
                for pid in runners:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                return 0
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    work = json.loads(line)
                    pid = _fork(work, [wake_r, wake_w, sel.fileno()])
                    runners[pid] = work["run_id"]
                    _say(event="forked", run_id=work["run_id"], pid=pid)


if __name__ == "__main__":
    code = main()
    os._exit(code)
