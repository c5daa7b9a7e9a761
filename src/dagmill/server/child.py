"""A runner process: it starts before there is work for it, with the engine already
imported, and waits on stdin for the one run it is given (a JSON line, see
:class:`~dagmill.server.runners.Assignment`). A slot due now then costs a pipe write, not a
Python start-up (about 0.2 s).

The pipe stays open while the run runs: when it closes, because the server died or
because a draining server hands the run back, the runner kills its process group at once,
and the run, owned by a process that is gone, is resumed by the next server to look.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading


def _die_with_server() -> None:
    sys.stdin.buffer.read()  # returns at end of file: the server closed the pipe or died
    os.killpg(os.getpid(), signal.SIGKILL)


def _redirect(log: str) -> None:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main() -> int:
    # warm up: what every run needs, loaded while nothing is due
    from dagmill.errors import DefinitionError, RunFailed
    from dagmill.executors import local  # noqa: F401
    from dagmill.frontends.pipeline import action, compile, spec  # noqa: F401
    from dagmill.services.jobs import run_job
    from dagmill.services.runs import resume_run

    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the server stopped before it had work for this runner
    work = json.loads(line)
    _redirect(work["log"])
    threading.Thread(target=_die_with_server, name="server-watch", daemon=True).start()
    try:
        if work["action"] == "resume":
            result = resume_run(work["run_id"], workers=work["workers"], execution_summary=True)
        else:
            result = run_job(
                work["job_id"], run_id=work["run_id"], workers=work["workers"], abort=False
            )
    except DefinitionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed:
        return 1
    except KeyboardInterrupt:
        return 130
    if result is None:
        return 0
    return 0 if result.status.value == "SUCCESS" else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # not sys.exit: the watch thread is blocked reading stdin, and an interpreter shutting
    # down around it waits, then aborts
    os._exit(code)
