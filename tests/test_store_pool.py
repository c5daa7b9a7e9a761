"""``store.reuse_connections``: a server's requests borrow open stores instead of opening
one each; a store that is busy, broken or mid-transaction is never lent; without it (the
CLI) every ``open_store()`` is a new connection, closed by ``close()``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import dagmill.store as store_module
from dagmill.store import open_store, reuse_connections


@pytest.fixture
def pooled(database_url: str) -> Iterator[str]:
    open_store(database_url).close()  # the schema, made once
    reuse_connections()
    try:
        yield database_url
    finally:
        pool, store_module._pool = store_module._pool, None
        assert pool is not None
        for idle in pool._idle.values():
            for s, _ in idle:
                s._close()


def _conn(store: object) -> object:
    return store._conn  # type: ignore[attr-defined]


def test_without_the_pool_each_store_is_its_own(database_url: str) -> None:
    assert store_module._pool is None
    a = open_store(database_url)
    a.close()
    b = open_store(database_url)
    try:
        assert _conn(b) is not _conn(a)
    finally:
        b.close()


def test_a_closed_store_is_lent_again(pooled: str) -> None:
    a = open_store(pooled)
    conn = _conn(a)
    a.close()
    b = open_store(pooled)
    assert _conn(b) is conn
    c = open_store(pooled)  # b is lent: c is another
    assert _conn(c) is not conn
    c.close()
    b.close()
    assert b.list_runs(limit=1) == []  # given back, not closed


def test_a_store_left_in_a_transaction_is_not_lent(pooled: str) -> None:
    a = open_store(pooled)
    tx = a._tx()
    tx.__enter__()
    assert not a.reusable()
    conn = _conn(a)
    a._give_back = None  # closed for real below, as close() does for a store it keeps
    tx.__exit__(None, None, None)
    a.close()
    b = open_store(pooled)
    try:
        assert _conn(b) is not conn
    finally:
        b.close()


def test_a_broken_connection_is_dropped(pooled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = open_store(pooled)
    conn = _conn(a)
    a.close()
    if pooled.startswith("postgres"):
        import psycopg

        with psycopg.connect(pooled.replace("+psycopg", ""), autocommit=True) as admin:
            pid = conn.info.backend_pid  # type: ignore[attr-defined]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    else:
        conn.close()  # type: ignore[attr-defined]
    monkeypatch.setattr(store_module, "_CHECK_AFTER_IDLE", 0.0)  # asked before it is lent
    b = open_store(pooled)
    try:
        assert _conn(b) is not conn
        assert b.list_runs(limit=1) == []
    finally:
        b.close()


def test_a_store_that_failed_mid_request_is_not_given_back(pooled: str) -> None:
    a = open_store(pooled)
    conn = _conn(a)
    with pytest.raises(Exception, match=r"no such table|does not exist"), a:
        a._execute("SELECT * FROM no_such_table").fetchall()
    b = open_store(pooled)
    try:
        # SQLite: no transaction was open, the connection is fine to lend again;
        # PostgreSQL (autocommit): the same; either way it answers
        assert b.list_runs(limit=1) == []
        assert _conn(b) is conn
    finally:
        b.close()


def test_a_store_closed_twice_is_lent_once(pooled: str) -> None:
    a = open_store(pooled)
    a.close()
    a.close()
    b, c = open_store(pooled), open_store(pooled)
    try:
        assert _conn(b) is not _conn(c)
    finally:
        b.close()
        c.close()
