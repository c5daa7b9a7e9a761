"""Lists a page at a time: ``?limit=`` and an opaque ``?cursor=`` (the sort key of the
last item of the page before, base64url JSON), newest first."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Response

from dagmill.api.errors import BadRequest
from dagmill.services.wire import to_json

__all__ = ["decode_cursor", "encode_cursor", "json_response", "page"]

T = TypeVar("T")


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The sort key a cursor holds, or None; a cursor that is not one is a 400."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        key = None
    if not isinstance(key, list) or not key:
        raise BadRequest("cursor is not one this API gave: use next_cursor as given", "cursor")
    return key


def page(
    items: Sequence[T],
    limit: int,
    cursor: str | None,
    key: Callable[[T], Sequence[Any]],
    render: Callable[[T], Any] = to_json,
) -> dict[str, Any]:
    """A page of ``items`` (sorted newest first by ``key``) after ``cursor``, each as
    ``render`` makes it: for lists small enough to read whole (tokens, jobs)."""
    after = decode_cursor(cursor)
    ordered = sorted(items, key=lambda x: list(key(x)), reverse=True)
    if after is not None:
        ordered = [x for x in ordered if list(key(x)) < after]
    chunk = ordered[:limit]
    more = len(ordered) > limit
    return {
        "items": [render(x) for x in chunk],
        "next_cursor": encode_cursor(key(chunk[-1])) if more and chunk else None,
    }


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` (already the wire's JSON values) as the response, as it is: for the hot
    routes, whose declared model documents the shape (the tests hold every answer to it)
    but whose answers are not validated again on the way out, which cost as much as
    reading the rows."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status, media_type="application/json")
