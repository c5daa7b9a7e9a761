"""The run record. The only package that knows SQL.

``open_store()`` returns the repository for the URL in ``DAGMILL_DATABASE_URL``: SQLite
(the default, at ``$DAGMILL_HOME/dagmill.db`` with ``DAGMILL_HOME`` defaulting to
``./.dagmill``) or PostgreSQL (``postgresql+psycopg://...``), created and migrated on first
use.

A long-running process that answers many small requests (the API of ``dagmill server``)
calls :func:`reuse_connections` once: from then on ``open_store()`` lends an idle store
of the same URL when there is one, and ``close()`` gives it back instead of closing it,
so a request costs no connection and no schema check. Commands (the CLI) open and close
as before.
"""

from __future__ import annotations

import os
import threading
import time

from dagmill import settings
from dagmill.errors import StoreError
from dagmill.store.base import NewRunTask, Store, retry_seconds
from dagmill.store.sqlite import SqliteStore

__all__ = [
    "NewRunTask",
    "SqliteStore",
    "Store",
    "database_url",
    "open_store",
    "reuse_connections",
]

# an idle connection older than this is asked whether it still answers before it is lent
# (a database restart or an idle timeout drops connections without telling us)
_CHECK_AFTER_IDLE = 10.0


class _Pool:
    """Idle stores by URL, the most recently used lent first (its pages are warm)."""

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self.pid = os.getpid()  # a forked child must not share its parent's connections
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[Store, float]]] = {}

    def lend(self, url: str) -> Store | None:
        while True:
            with self._lock:
                idle = self._idle.get(url)
                if not idle:
                    return None
                store, since = idle.pop()
            if time.monotonic() - since < _CHECK_AFTER_IDLE or store.alive():
                return store
            store._give_back = None
            store._close()  # dropped: the next idle one, or a new connection

    def give_back(self, store: Store) -> bool:
        if os.getpid() != self.pid or not store.reusable():
            return False
        with self._lock:
            idle = self._idle.setdefault(store.url, [])
            if any(s is store for s, _ in idle):
                return True  # closed twice: it is idle once, never lent to two callers
            if len(idle) >= self.max_idle:
                return False
            idle.append((store, time.monotonic()))
        return True


_pool: _Pool | None = None


def reuse_connections(max_idle: int = 32) -> None:
    """Make this process keep up to ``max_idle`` idle stores per URL for ``open_store()``
    to lend (a server's request threads), instead of opening one per call."""
    global _pool
    _pool = _Pool(max_idle)


def database_url() -> str:
    return os.environ.get("DAGMILL_DATABASE_URL") or "sqlite:///" + os.path.join(
        settings.home(), "dagmill.db"
    )


def open_store(url: str | None = None) -> Store:
    """Open (creating and migrating if needed) the store at ``url``; close it when done
    (with :func:`reuse_connections`: an idle one is lent, and close() gives it back)."""
    url = url or database_url()
    pool = _pool
    if pool is not None and pool.pid == os.getpid() and ":memory:" not in url:
        store = pool.lend(url)
        if store is None:
            store = _open(url)
            store._give_back = pool.give_back
        return store
    return _open(url)


def _open(url: str) -> Store:
    retry_seconds()  # a bad DAGMILL_STORE_RETRY_SECONDS is said now, not in an outage
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return SqliteStore(url[len("sqlite:///") :])
    if url == "sqlite:///:memory:":
        return SqliteStore(":memory:")
    if url in ("sqlite://", "sqlite:///"):
        raise StoreError(
            f"database URL {url!r} has no path: use sqlite:///path/to/dagmill.db "
            "(or unset DAGMILL_DATABASE_URL to use $DAGMILL_HOME/dagmill.db)"
        )
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        raise StoreError(
            f"database URL {url!r} is not a URL: expected sqlite:///path/to/dagmill.db "
            "(set DAGMILL_DATABASE_URL, or unset it to use $DAGMILL_HOME/dagmill.db)"
        )
    if scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        from dagmill.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"database URL {url!r}: dagmill stores runs in SQLite (sqlite:///path/to/dagmill.db)"
        " or PostgreSQL (postgresql+psycopg://user@host/db)"
    )
