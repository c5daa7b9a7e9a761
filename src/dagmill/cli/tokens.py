"""``dagmill tokens``: the access tokens of the REST API (create, list, show, revoke).

On the server's machine (no server configured) they work on its database directly, for
any project: that is how the first token of a project is made. With a server
configured (remote mode) they go through its API with an admin token, for the token's
own project.
"""

from __future__ import annotations

import re
import time

import click

from dagmill.cli.common import guard
from dagmill.errors import DefinitionError
from dagmill.model.tokens import ROLES

_PERIOD = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float | None = None) -> float:
    """``--expires``: a period from now (``12h``, ``30d``, ``8w``) or a date, UTC
    (``2027-01-01`` or ``2027-01-01T12:00``); seconds since the epoch."""
    import datetime as dt

    now = time.time() if now is None else now
    period = _PERIOD.match(text)
    if period:
        count, unit = int(period.group(1)), period.group(2)
        if count == 0:
            raise DefinitionError(f"--expires {text}: a token must live a while (e.g. 30d)")
        return now + count * _SECONDS[unit]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise DefinitionError(
            f"--expires {text!r}: expected a period (12h, 30d, 8w) or a date (2027-01-01, UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when.timestamp() <= now:
        raise DefinitionError(f"--expires {text}: that is in the past; give a future date")
    return when.timestamp()


@click.group()
def tokens() -> None:
    """Access tokens of the REST API: each belongs to a project and has a role (viewer:
    reads; operator: + runs, cancels, reruns; admin: + builds and deletes jobs, tokens,
    quota). The secret is shown once, when the token is made.

    \b
    dagmill tokens create --project ml --role operator --name ci --expires 90d
    dagmill tokens list --project ml
    dagmill tokens revoke dm_abcdefghijklmnop
    """


@tokens.command("create")
@click.option(
    "--project",
    metavar="NAME",
    help="The token's project (default: $DAGMILL_PROJECT or default; remote: the token's).",
)
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES, case_sensitive=False),
    help="What it may do: viewer, operator or admin.",
)
@click.option("--name", required=True, help="What it is for (ci, airflow, ...).")
@click.option(
    "--expires", metavar="PERIOD|DATE", help="30d, 12h, 8w, or 2027-01-01 (UTC); default never."
)
@click.option("--json", "as_json", is_flag=True)
@guard
def tokens_create(
    project: str | None, role: str, name: str, expires: str | None, as_json: bool
) -> None:
    """Make a token; prints its secret, this once."""
    from dagmill import settings
    from dagmill.services.remote import client
    from dagmill.services.tokens import create_token

    expires_at = parse_expiry(expires) if expires else None
    remote = client()
    if project is None:
        project = remote.whoami().project if remote is not None else settings.project()
    made = create_token(project, role, name, expires_at)
    info = made.info
    if as_json:
        import json

        from dagmill.services.wire import to_json

        out = {**to_json(info), "secret": made.secret, "bearer": made.bearer}
        click.echo(json.dumps(out, indent=2))
        return
    from dagmill.cli.render import local_and_utc

    until = local_and_utc(info.expires_at, "UTC") if info.expires_at else "never"
    server = remote.config.server if remote is not None else "http://HOST:PORT"
    click.echo(
        f"created token {info.id} ({info.name}): role {info.role} in project {info.project}, "
        f"expires {until}"
    )
    click.echo(
        f"""
secret (shown this once, never again; keep it like a password):
  {made.secret}

use it with the dagmill CLI or the Python query API:
  export DAGMILL_SERVER={server}
  export DAGMILL_TOKEN={made.bearer}
over HTTP (the API root is {server}/api/v1):
  Authorization: Bearer {made.bearer}
or AWS SigV4 (requests_aws4auth: AWS4Auth(token id, secret key, "", "s3")):
  token id:   {info.id}
  secret key: {made.secret}"""
    )


@tokens.command("list")
@click.option("--project", metavar="NAME", help="Only this project's tokens.")
@click.option("--all", "show_all", is_flag=True, help="Revoked tokens too.")
@click.option("--wide", is_flag=True, help="Every column, nothing shortened.")
@click.option("--json", "as_json", is_flag=True)
@guard
def tokens_list(project: str | None, show_all: bool, wide: bool, as_json: bool) -> None:
    """List tokens, newest first (never their secrets): role, state (active, expired,
    revoked), expiry, last use."""
    from dagmill.services.tokens import list_tokens

    if project is not None:
        from dagmill.services.projects import get_project

        get_project(project)  # a typo lists nothing, silently: say there is no such project
    found = list_tokens(project, revoked=show_all)
    if as_json:
        from dagmill.services.wire import dumps

        click.echo(dumps(found))
        return
    from dagmill.cli.render import tokens_table

    tokens_table(found, wide)


@tokens.command("show")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True)
@guard
def tokens_show(token_id: str, as_json: bool) -> None:
    """One token (never its secret)."""
    from dagmill.services.tokens import get_token

    info = get_token(token_id)
    if as_json:
        from dagmill.services.wire import dumps

        click.echo(dumps(info))
        return
    from dagmill.cli.render import token_detail

    token_detail(info)


@tokens.command("revoke")
@click.argument("token_id")
@guard
def tokens_revoke(token_id: str) -> None:
    """Revoke a token: the server refuses it from its next request on."""
    from dagmill.services.tokens import revoke_token

    info = revoke_token(token_id)
    click.echo(f"revoked token {info.id} ({info.name}): requests with it are refused from now on")
