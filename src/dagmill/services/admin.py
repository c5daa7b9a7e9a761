"""The run record's database itself: create it or bring its schema up to date.

info = upgrade_database()
print(f"{info.url}: schema version {info.schema_version}")
"""

from __future__ import annotations

from dataclasses import dataclass

from dagmill.store import database_url, open_store
from dagmill.store.postgres import _safe

__all__ = ["DatabaseInfo", "upgrade_database"]


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """Where the run record is (its URL, without a password) and its schema's version."""

    url: str
    schema_version: int


def upgrade_database() -> DatabaseInfo:
    """Create the database, or migrate its schema to this dagmill's (as any first use does)."""
    with open_store() as store:
        return DatabaseInfo(_safe(database_url()), store.schema_version)
