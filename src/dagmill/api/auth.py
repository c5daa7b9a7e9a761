"""Who is calling: the access token of a request (Bearer or AWS SigV4), and its role.

Routes declare what they need: ``caller: Caller = Depends(need("operator"))``. A request
with no token, an unknown, revoked or expired one, a wrong secret or a bad signature gets
401 with no detail. A client (by address) that failed more than ``_FREE_FAILURES`` times
in a minute waits before each further 401, doubling up to 5 s: guessing is slowed down,
a working client is not.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dagmill.api.errors import Forbidden, NotFound, Unauthorized
from dagmill.api.sigv4 import parse_authorization, signature_matches
from dagmill.model.tokens import TokenInfo, role_allows, split_bearer

__all__ = ["Admin", "Caller", "FailureThrottle", "Operator", "Viewer", "need"]

_log = logging.getLogger("dagmill.api")
_FREE_FAILURES = 5
_WINDOW_SECONDS = 60.0
_MAX_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with (its project bounds everything it sees)."""

    token: TokenInfo

    @property
    def project(self) -> str:
        return self.token.project

    def may(self, role: str) -> bool:
        return role_allows(self.token.role, role)

    def own(self, project: str, what: str) -> None:
        """Raise 404 for an object of another project: as if it did not exist."""
        if project != self.token.project:
            raise NotFound(f"no {what}")


class FailureThrottle:
    """Failed authentications by client address, in a sliding minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def delay(self, client: str, now: float) -> float:
        """Note a failure of ``client``; how long to wait before answering it."""
        with self._lock:
            if len(self._failures) > 10_000:  # bounded: forget the quiet ones
                cutoff = now - _WINDOW_SECONDS
                self._failures = {k: v for k, v in self._failures.items() if v[-1] > cutoff}
            times = [t for t in self._failures.get(client, []) if t > now - _WINDOW_SECONDS]
            times.append(now)
            self._failures[client] = times[-64:]
            over = len(times) - _FREE_FAILURES
        return 0.0 if over <= 0 else min(_MAX_DELAY, 0.1 * 2 ** (over - 1))


throttle = FailureThrottle()


def _authenticate(request: Request, body: bytes) -> TokenInfo | None:
    from dagmill.services.tokens import ServerKeyError, check_bearer, token_secret

    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        parts = split_bearer(value)
        return None if parts is None else check_bearer(*parts)
    sig = parse_authorization(header)
    if sig is None:
        return None
    try:
        found = token_secret(sig.access_key)
    except ServerKeyError as e:
        _log.error("token %s: %s", sig.access_key, e)
        return None
    if found is None:
        return None
    info, secret = found
    ok = signature_matches(
        sig,
        secret,
        request.method,
        request.scope.get("raw_path", b"").decode("latin-1") or request.url.path,
        request.query_params.multi_items(),
        {k.lower(): v for k, v in request.headers.items()},
        body,
        time.time(),
    )
    return info if ok else None


def _known_bearer(request: Request) -> TokenInfo | None:
    """The token of a Bearer secret this process has already verified, checked here in
    the event loop: one read of its row (revoked? expired?), which costs less than the
    hand-off to a worker thread that the slow hash needs."""
    from dagmill.services.tokens import check_bearer, verified

    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    parts = split_bearer(value)
    if parts is None or not verified(*parts):
        return None
    return check_bearer(*parts)


def need(role: str):  # type: ignore[no-untyped-def]
    """A dependency giving the request's :class:`Caller`, if its token has ``role``."""

    async def dependency(request: Request) -> Caller:
        cached = getattr(request.state, "caller", None)
        if isinstance(cached, Caller):
            caller = cached
        else:
            info = _known_bearer(request)
            if info is None:
                header = request.headers.get("authorization", "")
                body = await request.body() if header.startswith("AWS4-") else b""
                info = await run_in_threadpool(_authenticate, request, body)
            if info is None:
                wait = throttle.delay(request.client.host if request.client else "?", time.time())
                if wait:
                    await asyncio.sleep(wait)
                raise Unauthorized()
            caller = Caller(info)
            request.state.caller = caller
        if not caller.may(role):
            raise Forbidden(
                f"this needs a token with role {role} (this one is {caller.token.role})"
            )
        return caller

    return dependency


# what a route declares: ``def get_run(run_id: str, caller: Viewer) -> ...``
Viewer = Annotated[Caller, Depends(need("viewer"))]
Operator = Annotated[Caller, Depends(need("operator"))]
Admin = Annotated[Caller, Depends(need("admin"))]
