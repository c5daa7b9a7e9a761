"""Bundles in the run record: the tar.gz files jobs were built from, named by their
sha256, kept in the database so that every server of it can unpack them (checked for
safety by :mod:`dagmill.services.bundles` before anything reaches here)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["BundleStore"]


class _Backend(Protocol):
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...


class BundleStore:
    """The store's bundle functions (mixed into ``Store``)."""

    def save_bundle(self: _Backend, bundle_id: str, content: bytes, now: float) -> bool:
        """Keep a bundle; False if it was kept already (same id: same bytes)."""
        with self._tx():
            cur = self._execute(
                "INSERT INTO bundles (id, content, size, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (bundle_id, content, len(content), now),
            )
        return bool(cur.rowcount)

    def bundle_content(self: _Backend, bundle_id: str) -> bytes | None:
        row = self._execute("SELECT content FROM bundles WHERE id = ?", (bundle_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete_unused_bundle(self: _Backend, bundle_id: str) -> bool:
        """Delete a bundle no job is built from any more; False if one still is."""
        with self._tx():
            cur = self._execute(
                "DELETE FROM bundles WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE bundle = ?)",
                (bundle_id, bundle_id),
            )
        return bool(cur.rowcount)
