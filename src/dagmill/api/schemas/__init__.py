"""Bodies the API takes and returns (pydantic): one module per resource (``runs``, ``jobs``,
``projects``; the shared ones and tokens here), ``...In`` for
what a client sends and ``...Out`` for what it gets, shaped as
:mod:`dagmill.services.wire` prints the run record's objects (``id``, ``<kind>_id``,
``<event>_at`` seconds with ``<event>_at_iso`` beside them)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorOut", "NewTokenOut", "Page", "TokenIn", "TokenOut"]

T = TypeVar("T")


class ErrorOut(BaseModel):
    """Every error: what is wrong and how to fix it, the field it is about, and the
    request id the server's log files it under."""

    error: str = Field(examples=["not_found"])
    message: str
    field: str | None = None
    request_id: str


class Page(BaseModel, Generic[T]):
    """A page of a list, newest first; ``next_cursor`` (null: the last page) goes in
    ``?cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class TokenOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    project: str
    role: Literal["viewer", "operator", "admin"]
    name: str
    created_at: float
    created_at_iso: str | None
    expires_at: float | None
    expires_at_iso: str | None
    revoked_at: float | None
    revoked_at_iso: str | None
    last_used_at: float | None
    last_used_at_iso: str | None


class NewTokenOut(TokenOut):
    """A token just made. ``secret`` is shown this once; ``bearer`` is
    ``<id>.<secret>``, the value of ``Authorization: Bearer`` and of ``DAGMILL_TOKEN``."""

    secret: str
    bearer: str


class TokenIn(BaseModel):
    """A new token of the caller's project."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["ci"])
    role: Literal["viewer", "operator", "admin"] = "viewer"
    expires_at: float | None = Field(
        default=None, description="Seconds since the epoch; null: never (or expires_in_days)"
    )
    expires_in_days: float | None = Field(default=None, gt=0, le=36500)
