"""Remote mode: the services' functions, done by a dagmill server over its REST API.

With a server configured (``settings.remote()``: ``DAGMILL_SERVER`` + ``DAGMILL_TOKEN``, or
a profile of ``~/.config/dagmill/config.toml``), each function marked ``@remote_ok``
calls the method of the same name of :class:`RemoteClient`, which returns the same
types: the CLI and the Python query API do not know the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from dagmill import settings

__all__ = ["RemoteClient", "client", "remote_ok"]

F = TypeVar("F", bound=Callable[..., Any])


class RemoteClient:
    """A client of one server's API (httpx), one method per remote service function."""

    def __init__(self, config: settings.RemoteConfig) -> None:
        self.config = config


_clients: dict[settings.RemoteConfig, RemoteClient] = {}


def client() -> RemoteClient | None:
    """The client of the configured server, or None (local mode)."""
    config = settings.remote()
    if config is None:
        return None
    found = _clients.get(config)
    if found is None:
        found = _clients[config] = RemoteClient(config)
    return found


def remote_ok(fn: F) -> F:
    """Run ``fn`` here, or, with a server configured, its namesake on the server."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        remote = client()
        if remote is None:
            return fn(*args, **kwargs)
        return getattr(remote, fn.__name__)(*args, **kwargs)

    wrapper.__wrapped_local__ = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
