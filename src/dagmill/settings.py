"""Process-wide settings of the Python front door (d6tflow's ``d6tflow.settings``).

    >>> import dagmill
    >>> dagmill.settings.check_dependencies
    True

``dir``/``dirpath``    where task outputs go (set with ``dagmill.set_dir``)
``check_dependencies`` a task whose upstream must run must run too
``detect_changes``     compare fingerprints (params, code, inputs); False gives d6tflow's
                       parameter-only identity: outputs exist → complete
``execution_summary``  print the summary after ``run``
``log_level``          level of the ``dagmill`` logger
``save_with_param``    put the task id in output file names
``cached``             keep loaded outputs in memory
``record``             write runs to the run record (``$DAGMILL_HOME/dagmill.db``)
``capture_logs``       keep each task's output (stdout, stderr, logging, subprocesses) in
                       ``$DAGMILL_HOME/logs/`` (``dagmill runs logs``) instead of the terminal
"""

from __future__ import annotations

import os
from pathlib import Path

dir: str = "data"
dirpath: Path = Path(dir)
check_dependencies: bool = True
detect_changes: bool = True
execution_summary: bool = True
log_level: str = "WARNING"
save_with_param: bool = True
cached: bool = False
record: bool = True
capture_logs: bool = True


def home() -> str:
    """dagmill's own folder (run record, logs, environments): $DAGMILL_HOME or ./.dagmill."""
    return os.environ.get("DAGMILL_HOME") or os.path.join(os.getcwd(), ".dagmill")


def logs_dir(run_id: str) -> str:
    """Where a run's captured output lives."""
    return os.path.join(home(), "logs", run_id)


def server_socket() -> str:
    """Where a local server listens for wake-ups (jobs changed, a run queued)."""
    return os.path.join(home(), "server.sock")


def project() -> str:
    """The project runs belong to unless told: $DAGMILL_PROJECT, or ``default``."""
    return os.environ.get("DAGMILL_PROJECT") or "default"


def server_id() -> str | None:
    """The server whose runner this process is ($DAGMILL_SERVER_ID, set by the server)."""
    return os.environ.get("DAGMILL_SERVER_ID") or None
