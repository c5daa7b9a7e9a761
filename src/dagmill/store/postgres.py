"""The run record in PostgreSQL (``postgresql+psycopg://user@host/db``), for team servers.

The repository's SQL is the same as SQLite's; ``?`` placeholders become ``%s``. The
schema is created or upgraded under an advisory lock, so many
processes may open a new database at once.
"""

from __future__ import annotations

import inspect
import select
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagmill.errors import StoreError
from dagmill.store.base import Store
from dagmill.store.ledger import LEDGER_CHANNEL
from dagmill.store.migrate import LATEST
from dagmill.store.schedules import JOBS_CHANNEL

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x6461676D  # "dagm": one migrator at a time, any number of databases


class PostgresStore(Store):
    """The repository over one PostgreSQL database (psycopg 3)."""

    _for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        try:
            import psycopg
        except ImportError as e:
            raise StoreError(
                "PostgreSQL needs the psycopg driver: pip install 'dagmill[postgres]'"
            ) from e
        self._psycopg = psycopg
        self._conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            self._conn = self._connect()
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to the run record at {_safe(url)}: {e}") from e
        self._sql: dict[str, str] = {}
        self._patiently(self._check_schema)  # a connection lost meanwhile is waited for

    def _check_schema(self) -> None:
        if self.schema_version != LATEST:
            # the lock is taken before the transaction: one begun earlier would not see
            # the tables that the migrator before us committed (DuplicateTable)
            self._conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                with self._tx():
                    self._migrate()
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))

    def _connect(self) -> Any:
        # a server that does not answer is an outage to wait for, not a hang
        return self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)

    def _unavailable_reason(self, error: BaseException) -> str | None:
        psycopg = self._psycopg
        if isinstance(error, psycopg.errors.DiskFull):
            return "disk full on the database server"
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return "connection lost" if self._conn.closed else "database unavailable"
        return None

    def _recover(self) -> None:
        """A new connection if the server dropped ours (restart, terminated backend)."""
        if self._conn.closed or self._conn.broken:
            try:
                self._conn.close()
            finally:
                self._conn = self._connect()

    @property
    def display_url(self) -> str:
        return _safe(self.url)

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return q

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._q(sql), args)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def _idle_connection(self) -> bool:
        conn = self._conn
        idle = self._psycopg.pq.TransactionStatus.IDLE
        return not conn.closed and not conn.broken and conn.info.transaction_status == idle

    def alive(self) -> bool:
        try:
            self._conn.execute("SELECT 1")
        except self._psycopg.Error:
            return False
        return True

    def _close(self) -> None:
        self._conn.close()

    def _ephemeral(self) -> None:
        # a crash of the database may lose the last few ms of such commits, never corrupt
        # them: a lost admission or release is healed by the heartbeats and expiry
        self._conn.execute("SET LOCAL synchronous_commit TO OFF")

    def _notify(self, channel: str, payload: str = "") -> None:
        # sent when the caller's transaction commits, not before (PostgreSQL holds it)
        self._conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def jobs_listener(self) -> _Listener:
        """A LISTEN on ``dagmill_jobs`` over a connection of its own (autocommit: a
        notification is delivered between transactions, and this one runs none)."""
        return self._listen(JOBS_CHANNEL, "job changes")

    def ledger_listener(self) -> _Listener:
        """A LISTEN on ``dagmill_ledger``: resources of some project were released."""
        return self._listen(LEDGER_CHANNEL, "released resources")

    def _listen(self, channel: str, what: str) -> _Listener:
        try:
            conn = self._connect()
        except self._psycopg.Error as e:
            raise StoreError(f"cannot listen for {what} at {_safe(self.url)}: {e}") from e
        conn.execute(f"LISTEN {channel}")
        return _Listener(conn)


class _Listener:
    """Waits for ``NOTIFY dagmill_jobs`` on its own connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        # psycopg >= 3.2 waits with a timeout itself; before, wait on the socket
        self._timed = "timeout" in inspect.signature(conn.notifies).parameters

    def wait(self, timeout: float) -> bool:
        """True if job changes were notified within ``timeout`` seconds. The notifications
        already received are consumed with the first, so a burst of changes wakes once
        (one the server delivers a moment later may wake once more: harmless, the
        scheduler compares ``jobs_changed()``)."""
        if self._timed:
            got = any(True for _ in self._conn.notifies(timeout=max(0.0, timeout), stop_after=1))
            if got:  # drain what else is already here, without waiting
                for _ in self._conn.notifies(timeout=0, stop_after=None):
                    pass
            return got
        ready, _, _ = select.select([self._conn.fileno()], [], [], max(0.0, timeout))
        if not ready:
            return False
        received: list[Any] = []
        self._conn.add_notify_handler(received.append)
        try:
            self._conn.execute("SELECT 1")  # reads the socket: pending notifies are handled
        finally:
            self._conn.remove_notify_handler(received.append)
        return bool(received)

    def close(self) -> None:
        self._conn.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and ":" in url.split("://", 1)[-1].split("@", 1)[0]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.split("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url
