"""The run record in SQLite: the embedded default (WAL mode, one file under DAGMILL_HOME)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagmill.errors import StoreError
from dagmill.store.base import Store

__all__ = ["SqliteStore"]

_log = logging.getLogger("dagmill.store")
_BUSY_MS = 1000
_LOCKED = "locked by another process"


def _reason(error: BaseException) -> str | None:
    """What a sqlite3 error means when waiting may help (None: it cannot)."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(error)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "database is locked" in text:
        return _LOCKED
    if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
        return "disk full"
    if primary == sqlite3.SQLITE_IOERR or "disk I/O error" in text:
        return "disk I/O error"
    return None


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
            # wait 1 s quietly for another writer (a commit takes milliseconds); longer
            # waits go through _begin_when_free, which says so and gives up after the bound
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
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
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if not self._wait_for_lock or _reason(e) != _LOCKED:
                raise
            self._begin_when_free(e)
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back itself (disk full)
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # a flush tries once and keeps its events if the file is locked: the engine goes on
    _wait_for_lock = True

    def _begin_when_free(self, error: sqlite3.OperationalError) -> None:
        """BEGIN IMMEDIATE once the other writer lets go, saying that we wait (up to
        retry_seconds(), then StoreUnavailable)."""
        while True:
            self._note_failure(error)
            outage = self._outage
            assert outage is not None
            time.sleep(max(0.0, outage.next_try - time.monotonic()))
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if _reason(e) != _LOCKED:
                    raise
                error = e
                continue
            self._back()
            return

    def _write_events(self, *events: Any) -> None:
        self._wait_for_lock = False
        try:
            super()._write_events(*events)
        finally:
            self._wait_for_lock = True

    def _unavailable_reason(self, error: BaseException) -> str | None:
        return _reason(error) if isinstance(error, sqlite3.OperationalError) else None

    def reclaim_space(self) -> int:
        """Give the pages freed by deleted runs back to the file system when they are a
        good part of the file (VACUUM rewrites it); returns the bytes given back."""
        if self.path == ":memory:":
            return 0
        page_size, pages, free = (self.space()[k] for k in ("page_size", "pages", "free"))
        if free < 64 or free < pages // 5:
            return 0  # a few pages: SQLite reuses them for the next runs
        try:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file shrinks here
        except sqlite3.OperationalError as e:  # busy, or no room for the copy: next time
            _log.warning("could not give the space of deleted runs back (%s): %s", self.path, e)
            return 0
        return (pages - self.space()["pages"]) * page_size

    def space(self) -> dict[str, int]:
        """The file's page size, page count and free pages (what gc can give back)."""
        return {
            key: int(self._conn.execute(f"PRAGMA {pragma}").fetchone()[0])
            for key, pragma in (
                ("page_size", "page_size"),
                ("pages", "page_count"),
                ("free", "freelist_count"),
            )
        }

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _idle_connection(self) -> bool:
        try:
            return not self._conn.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False

    def alive(self) -> bool:
        try:
            self._conn.execute("SELECT 1")
        except sqlite3.Error:
            return False
        return True

    def _close(self) -> None:
        self._conn.close()
