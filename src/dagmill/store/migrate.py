"""Ordered SQL migrations (``migrations/NNNN_name.sql``) and the schema version check."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from dagmill.errors import SchemaVersionError

__all__ = ["LATEST", "migrations", "upgrade"]

_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def migrations() -> list[tuple[int, str]]:
    """(version, sql) of every migration, in order."""
    found = []
    for entry in resources.files("dagmill.store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


LATEST = len(migrations())


def statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def upgrade(execute: Callable[[str], Any], current: int, where: str) -> None:
    """Apply the migrations after ``current`` inside the caller's transaction."""
    if current > LATEST:
        raise SchemaVersionError(
            f"the database at {where} has schema version {current}, newer than this dagmill "
            f"understands ({LATEST}): upgrade dagmill, or point DAGMILL_DATABASE_URL elsewhere"
        )
    for version, sql in migrations():
        if version > current:
            for stmt in statements(sql):
                execute(stmt)
