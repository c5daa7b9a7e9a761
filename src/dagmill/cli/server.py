"""``dagmill server``: the face of the long-running process (its work is in server/)."""

from __future__ import annotations

import click

from dagmill.cli.common import guard

_HELP = """Run the scheduler, the run queue and the runners until stopped.

\b
Scheduled jobs fire at their slots; `dagmill jobs run` queues a run that
this server starts. The REST API listens on --host:--port, its root at
/api/v1 (docs at /docs); requests need an access token (`dagmill tokens
create`). SIGTERM or Ctrl-C drains: no new runs, running ones get
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
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="DAGMILL_HOST",
    help="Address the REST API listens on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8080,
    show_default=True,
    envvar="DAGMILL_PORT",
    help="Port of the REST API (0: any free port, logged as api_listening).",
)
@click.option("--no-api", is_flag=True, help="Serve no REST API (scheduler and runners only).")
@click.option(
    "--max-upload",
    "max_upload_mb",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Largest request body in MiB (a job's uploaded bundle).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="URL",
    help="A web origin allowed to call the API from a browser (none by default).",
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
    host: str,
    port: int,
    no_api: bool,
    max_upload_mb: int,
    cors_origins: tuple[str, ...],
    log_json: bool,
    log_level: str,
) -> None:
    import sys

    from dagmill.api.app import ApiOptions
    from dagmill.api.serve import Listen, serve
    from dagmill.server.main import ServerOptions, default_max_runs

    options = ServerOptions(
        max_runs=max_runs or default_max_runs(),
        workers=workers,
        grace=grace,
        heartbeat=heartbeat,
        log_json=log_json,
        log_level=log_level,
    )
    api = ApiOptions(max_body_bytes=max_upload_mb * 2**20, cors_origins=cors_origins)
    sys.exit(serve(options, Listen(host, None if no_api else port, api)))
