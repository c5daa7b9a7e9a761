"""The FastAPI application: routers under ``/api/v1``, errors as JSON with a request id,
an access log line per request, and a cap on request bodies."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagmill.api.errors import ApiError, error_body
from dagmill.api.schemas import ErrorOut

__all__ = ["API_ROOT", "ApiOptions", "create_app"]

API_ROOT = "/api/v1"
_log = logging.getLogger("dagmill.api")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in [
        (400, "Bad input: the message says what and how to fix it"),
        (401, "No token, or not a valid one"),
        (403, "The token's role may not do this"),
        (404, "No such object in the token's project"),
        (413, "The request body is larger than the server takes"),
        (422, "A field is invalid: `field` names it"),
    ]
}


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How the API serves (``dagmill server --help``)."""

    max_body_bytes: int = 64 * 2**20  # a job's bundle; other bodies are small anyway
    body_timeout: float = 60.0  # seconds to receive a request's body
    cors_origins: tuple[str, ...] = ()  # none: browsers of other sites get no access


def _request_id() -> str:
    return os.urandom(8).hex()


class _Guard:
    """Each request gets an id (``X-Request-ID``), an access log line, and a body cap."""

    def __init__(self, app: ASGIApp, options: ApiOptions, log: Callable[..., None]) -> None:
        self.app, self.options, self.log = app, options, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = [0]
        limit = self.options.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        too_big = f"the request body is over {limit // 2**20} MiB"
        if length is not None and length.isdigit() and int(length) > limit:
            await _reply(send, 413, too_big, rid)
            self._access(scope, 413, started, rid)
            return
        seen = [0]
        received = [False]  # the whole body: what is received next is the disconnect
        # the body could not be taken (too big, too slow): said by us, whatever the app's
        # body parser makes of the error (FastAPI turns any into "error parsing the body")
        refused: list[ApiError] = []

        async def limited() -> Message:
            import asyncio

            if received[0]:  # a streamed response waits for it as long as it streams
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.options.body_timeout)
            except TimeoutError:
                refused.append(ApiError("the request body was not sent in time", status=408))
                raise refused[-1] from None
            if message["type"] == "http.request":
                received[0] = not message.get("more_body", False)
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    refused.append(ApiError(too_big, status=413))
                    raise refused[-1]
            return message

        async def sending(message: Message) -> None:
            if refused:
                if message["type"] == "http.response.start":
                    status[0] = refused[0].status
                    await _reply(send, refused[0].status, refused[0].message, rid)
                return  # the app's own answer to it is not sent
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except Exception as exc:
            # a bug: the traceback goes to the server's log under the request id, once; the
            # client gets the id and nothing of the inside
            _log.error(
                "%s %s failed (request id %s)", scope["method"], scope["path"], rid, exc_info=exc
            )
            self.log("request_failed", request_id=rid, error=f"{type(exc).__name__}: {exc}")
            if status[0] == 0:
                status[0] = 500
                await _reply(send, 500, f"internal error (request id {rid})", rid)
        finally:
            self._access(scope, status[0], started, rid)

    def _access(self, scope: Scope, status: int, started: float, rid: str) -> None:
        state = scope.get("state", {})
        caller = state.get("caller")
        client = scope.get("client")
        self.log(
            "request",
            method=scope["method"],
            path=scope["path"],
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            request_id=rid,
            token=caller.token.id if caller is not None else None,
            client=client[0] if client else None,
        )


async def _reply(send: Send, status: int, message: str, rid: str) -> None:
    import json

    body = json.dumps(error_body(status, message, rid)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _rid(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id") or _request_id())


def _field(loc: Any) -> str:
    return ".".join(str(p) for p in loc)


def create_app(
    options: ApiOptions | None = None, log: Callable[..., None] | None = None
) -> FastAPI:
    """The API, logging each request with ``log(event, **fields)`` (the server's log)."""
    from dagmill import __version__
    from dagmill.api.routes import jobs, projects, runs, tokens
    from dagmill.errors import DefinitionError, StoreUnavailable

    options = options or ApiOptions()
    say = log or (lambda event, **fields: _log.info("%s %s", event, fields))
    app = FastAPI(
        title="dagmill",
        version=__version__,
        description=(
            "Jobs, runs, logs, projects and access tokens of a dagmill server. "
            f"The API root is `{API_ROOT}`. Authenticate with `Authorization: Bearer "
            "<token id>.<secret>` or an AWS SigV4 signature made with the token id as "
            "access key and its secret as secret key (any region, any service)."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        responses=_ERRORS,
    )
    for module in (projects, jobs, runs, tokens):
        app.include_router(module.router, prefix=API_ROOT)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.message, _rid(request), exc.field)
        return JSONResponse(body, exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first: dict[str, Any] = errors[0] if errors else {}
        field = _field(first.get("loc", ()))
        text = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":  # its loc ends in an offset, not a field
            field = "body"
            reason = (first.get("ctx") or {}).get("error", "")
            text = f"not valid JSON{f' ({reason})' if reason else ''}"
        message = f"{field}: {text}" if field else text
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return JSONResponse(error_body(422, message, _rid(request), field or None), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            text = f"no such path: {request.url.path} (the API root is {API_ROOT}; see /docs)"
        return JSONResponse(error_body(exc.status_code, text, _rid(request)), exc.status_code)

    @app.exception_handler(DefinitionError)
    async def bad_input(request: Request, exc: DefinitionError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc), _rid(request)), 400)

    @app.exception_handler(StoreUnavailable)
    async def store_away(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(error_body(503, str(exc), _rid(request)), 503)

    if options.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(_Guard, options=options, log=say)
    return app
