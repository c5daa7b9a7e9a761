"""Errors as the API returns them: JSON a person can act on, and a request id to quote.

    {"error": "not_found", "message": "no run 'r-1'", "field": null, "request_id": "..."}

A handler raises :class:`ApiError` (or one of its named subclasses); dagmill's own
errors are mapped here; anything else is a 500 whose traceback goes to the server's log
only, under the request id the response carries.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "error_body",
]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An error response: ``status``, a message for people, the field it is about."""

    status = 400

    def __init__(self, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self) -> None:
        super().__init__("unauthorized")  # no detail: nothing to learn from a failure


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class TooLarge(ApiError):
    status = 413


def error_body(status: int, message: str, request_id: str, field: str | None = None) -> Any:
    return {
        "error": _CODES.get(status, "error"),
        "message": message,
        "field": field,
        "request_id": request_id,
    }
