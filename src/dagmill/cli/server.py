"""``dagmill server``: the face of the long-running process (its work is in server/)."""

from __future__ import annotations

import click

from dagmill.cli.common import guard

_HELP = """Run the scheduler, the run queue and the runners until stopped.

\b
Scheduled jobs fire at their slots; `dagmill jobs run` queues a run that
this server starts. SIGTERM or Ctrl-C drains: no new runs, running ones get
--grace seconds to finish, then are handed back and resumed by the next
server (a second signal hands back at once). Logs go to stderr, one line
per event (--log-json: one JSON object per line).

\b
The store is the CLI's: $DAGMILL_HOME/dagmill.db (SQLite: one server), or
DAGMILL_DATABASE_URL=postgresql+psycopg://... (several servers may share it).

\b
Under systemd (/etc/systemd/system/dagmill.service):
  [Unit]
  Description=dagmill server
  After=network-online.target postgresql.service
  [Service]
  User=dagmill
  WorkingDirectory=/srv/dagmill
  Environment=DAGMILL_HOME=/srv/dagmill/.dagmill
  Environment=DAGMILL_DATABASE_URL=postgresql+psycopg://dagmill@localhost/dagmill
  ExecStart=/srv/dagmill/.venv/bin/dagmill server --log-json
  KillSignal=SIGTERM
  TimeoutStopSec=60
  Restart=on-failure
  [Install]
  WantedBy=multi-user.target
then: systemctl enable --now dagmill; journalctl -u dagmill -f
"""


@click.command("server", help=_HELP)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Runs at once (default: one per core).",
)
@click.option(
    "-w", "--workers", type=click.IntRange(min=1), default=1, help="Tasks at once in each run."
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running runs get to finish when stopping.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between heartbeats: a server silent for two is dead, and its runs "
    "are resumed by another server of the database.",
)
@click.option("--log-json", is_flag=True, help="One JSON object per log line.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@guard
def server(
    max_runs: int | None,
    workers: int,
    grace: float,
    heartbeat: float,
    log_json: bool,
    log_level: str,
) -> None:
    import sys

    from dagmill.server.main import ServerOptions, default_max_runs, serve

    options = ServerOptions(
        max_runs=max_runs or default_max_runs(),
        workers=workers,
        grace=grace,
        heartbeat=heartbeat,
        log_json=log_json,
        log_level=log_level,
    )
    sys.exit(serve(options))
