"""Query API over the run record: the runs, their tasks and their logs, as typed objects.

    import dagmill.runs
    for run in dagmill.runs.get_runs(status="FAILED", limit=10):
        print(run.id, run.name, run.error)
        print(dagmill.runs.get_run_logs(run.id))

The public face of :mod:`dagmill.services.runs`, which does the work. With a server
configured (``DAGMILL_SERVER`` and ``DAGMILL_TOKEN``, or a profile of
``~/.config/dagmill/config.toml``) the queries and ``cancel_run``/``delete_run`` ask that
server over its API instead, and return the same types.
"""

from __future__ import annotations

from dagmill.services.runs import (
    cancel_run,
    collect_garbage,
    delete_run,
    get_run,
    get_run_logs,
    get_run_logs_list,
    get_run_tasks,
    get_runs,
    orphaned_runs,
    recover_orphans,
    resume_run,
)

__all__ = [
    "cancel_run",
    "collect_garbage",
    "delete_run",
    "get_run",
    "get_run_logs",
    "get_run_logs_list",
    "get_run_tasks",
    "get_runs",
    "orphaned_runs",
    "recover_orphans",
    "resume_run",
]
