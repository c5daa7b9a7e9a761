"""The run record in SQLite: the embedded default (WAL mode, one file under DAGMILL_HOME)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagmill.errors import StoreError
from dagmill.store.base import Store

__all__ = ["SqliteStore"]


class SqliteStore(Store):
    """The repository over one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for the run record {path}: {e}") from e
        # SQLite answers BUSY without waiting in a few set-up paths (switching a new file to
        # WAL, recovering its index): retry the opening for a while, then say so
        delay, deadline = 0.01, time.monotonic() + 15
        while True:
            try:
                self._conn = self._open(path)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise StoreError(f"cannot open the run record {path}: {e}") from e
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the run record {path} stayed locked for 15 s: is another process "
                        "holding a long transaction on it?"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except sqlite3.DatabaseError as e:
                raise StoreError(
                    f"cannot open the run record {path}: {e} "
                    "(is it an SQLite database? set DAGMILL_DATABASE_URL or DAGMILL_HOME elsewhere)"
                ) from e

    def _open(self, path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            from dagmill.store.migrate import LATEST

            if self.schema_version != LATEST:
                with self._tx():  # BEGIN IMMEDIATE: one process migrates, the others wait
                    self._migrate()
        except BaseException:
            conn.close()
            raise
        return conn

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, args)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _close(self) -> None:
        self._conn.close()
