"""Migrations: a database written by an older dagmill is upgraded in place on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dagmill.store import open_store
from dagmill.store.migrate import LATEST, migrations, statements


def test_an_old_database_is_upgraded_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    first_version, first_sql = migrations()[0]
    for stmt in statements(first_sql):
        conn.execute(stmt)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (first_version,))
    conn.execute(
        "INSERT INTO runs (id, name, status, created_at) VALUES ('r1', 'old run', 'SUCCESS', 1.0)"
    )
    conn.execute(
        "INSERT INTO run_tasks (run_id, task_id, family, params, upstream, plan_state, status)"
        " VALUES ('r1', 'A__x', 'A', '{}', '[]', 'PENDING', 'SUCCESS')"
    )
    conn.commit()
    conn.close()
    assert first_version < LATEST  # there is something to upgrade

    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == LATEST
        assert [r.name for r in store.list_runs()] == ["old run"]
        (task,) = store.get_run_tasks("r1")
        assert task.fingerprint is None  # the column added later is there, empty
    finally:
        store.close()
