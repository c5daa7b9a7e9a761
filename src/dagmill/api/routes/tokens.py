"""``/tokens``: the caller's project's access tokens (admin), and ``/token``: the caller's."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from dagmill.api.auth import Admin, Viewer
from dagmill.api.errors import BadRequest, NotFound
from dagmill.api.pages import page
from dagmill.api.schemas import NewTokenOut, Page, TokenIn, TokenOut
from dagmill.errors import DefinitionError
from dagmill.model.tokens import TokenInfo
from dagmill.services import tokens
from dagmill.services.wire import to_json

router = APIRouter(tags=["tokens"])


@router.get("/token", response_model=TokenOut, summary="The token of this request")
def whoami(caller: Viewer) -> Any:
    return to_json(caller.token)


@router.get("/tokens", response_model=Page[TokenOut], summary="The project's tokens")
def list_tokens(
    caller: Admin,
    revoked: Annotated[bool, Query(description="Include revoked tokens.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Any:
    found = tokens.list_tokens(caller.project, revoked)
    return page(found, limit, cursor, key=lambda t: (t.created_at, t.id))


@router.post("/tokens", response_model=NewTokenOut, status_code=201, summary="Make a token")
def create_token(body: TokenIn, caller: Admin) -> Any:
    if body.expires_at is not None and body.expires_in_days is not None:
        raise BadRequest("give expires_at or expires_in_days, not both", "body.expires_at")
    expires = body.expires_at
    if body.expires_in_days is not None:
        expires = time.time() + body.expires_in_days * 86400
    made = tokens.create_token(caller.project, body.role, body.name, expires)
    return {**to_json(made.info), "secret": made.secret, "bearer": made.bearer}


def _own_token(token_id: str, caller: Admin) -> TokenInfo:
    """The caller's project's token, or 404 (another project's too: no existence leak)."""
    if "\x00" not in token_id:  # a NUL is in no id (and PostgreSQL refuses it in a query)
        with contextlib.suppress(DefinitionError):
            return tokens.get_token(token_id, caller.project)
    raise NotFound(f"no token {token_id!r} in project {caller.project}")


@router.get("/tokens/{token_id}", response_model=TokenOut, summary="One token")
def get_token(token_id: str, caller: Admin) -> Any:
    return to_json(_own_token(token_id, caller))


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
def revoke_token(token_id: str, caller: Admin) -> Response:
    tokens.revoke_token(_own_token(token_id, caller).id, caller.project)
    return Response(status_code=204)
