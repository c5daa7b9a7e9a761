"""The run record. The only package that knows SQL.

``open_store()`` returns the repository for the URL in ``DAGMILL_DATABASE_URL``: SQLite
(the default, at ``$DAGMILL_HOME/dagmill.db`` with ``DAGMILL_HOME`` defaulting to
``./.dagmill``) or PostgreSQL (``postgresql+psycopg://...``), created and migrated on first
use.
"""

from __future__ import annotations

import os

from dagmill import settings
from dagmill.errors import StoreError
from dagmill.store.base import NewRunTask, Store, retry_seconds
from dagmill.store.sqlite import SqliteStore

__all__ = ["NewRunTask", "SqliteStore", "Store", "database_url", "open_store"]


def database_url() -> str:
    return os.environ.get("DAGMILL_DATABASE_URL") or "sqlite:///" + os.path.join(
        settings.home(), "dagmill.db"
    )


def open_store(url: str | None = None) -> Store:
    """Open (creating and migrating if needed) the store at ``url``."""
    url = url or database_url()
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
