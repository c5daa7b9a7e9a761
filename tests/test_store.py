"""The run record: what a run writes, how runs are listed, found and deleted, and how a
database that cannot be used is reported."""

from __future__ import annotations

import inspect
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dagmill
from conftest import fresh_postgres_database
from dagmill.errors import SchemaVersionError, StoreError
from dagmill.store import open_store


class Load(dagmill.tasks.TaskPickle):
    rows = dagmill.IntParameter(default=3)

    def run(self):
        self.save(list(range(self.rows)))


@dagmill.requires(Load)
class Train(dagmill.tasks.TaskPickle):
    lr = dagmill.FloatParameter(default=0.1)

    def run(self):
        self.save({"lr": self.lr, "n": len(self.inputLoad())})


class Crash(dagmill.tasks.TaskPickle):
    def run(self):
        raise KeyError("missing column")  # the recorded location


@dagmill.requires(Crash)
class AfterCrash(dagmill.tasks.TaskPickle):
    def run(self):
        self.save(1)


def run(tasks, **kwargs) -> dagmill.RunResult:
    kwargs.setdefault("execution_summary", False)
    kwargs.setdefault("abort", False)
    result = dagmill.run(tasks, **kwargs)
    assert result is not None
    return result


@pytest.fixture
def store(database_url: str):
    s = open_store(database_url)
    yield s
    s.close()


def _crash_line() -> int:
    lines, start = inspect.getsourcelines(Crash.run)
    return start + next(i for i, line in enumerate(lines) if "raise KeyError" in line)


def test_the_default_database_is_under_dagmill_home() -> None:
    run(Load())
    assert (Path(os.environ["DAGMILL_HOME"]) / "dagmill.db").exists()


def test_a_successful_run_records_run_graph_and_attempts(store) -> None:
    before = time.time()
    result = run(Train(rows=4, lr=0.5))
    after = time.time()

    info = store.get_run(result.run_id)
    assert info is not None
    assert info.status == "SUCCESS"
    assert before <= info.started_at <= info.ended_at <= after
    assert info.counts == {"SUCCESS": 2}
    assert info.error is None
    assert info.options.get("workers") == 1

    tasks = {t.task_id: t for t in store.get_run_tasks(result.run_id)}
    load, train = Load(rows=4), Train(rows=4, lr=0.5)
    assert set(tasks) == {load.task_id, train.task_id}
    t = tasks[train.task_id]
    assert t.family == "Train"
    assert t.params == {"rows": "4", "lr": "0.5"}
    assert t.upstream == (load.task_id,)
    assert t.plan_state == "PENDING"
    assert t.status == "SUCCESS"
    assert t.attempts == 1
    assert len(t.history) == 1
    attempt = t.history[0]
    assert attempt.status == "SUCCESS"
    assert attempt.started_at is not None and attempt.ended_at is not None
    assert before <= attempt.started_at <= attempt.ended_at <= after
    assert attempt.error is None
    assert tasks[load.task_id].upstream == ()
    assert tasks[load.task_id].params == {"rows": "4"}

    # a second run keeps its own graph: both tasks are complete (skipped) there
    again = run(Train(rows=4, lr=0.5))
    tasks2 = {t.task_id: t for t in store.get_run_tasks(again.run_id)}
    assert {t.status for t in tasks2.values()} == {"SKIPPED"}
    assert {t.plan_state for t in tasks2.values()} == {"COMPLETE"}
    assert all(t.history == () for t in tasks2.values())
    # and the first run's record is unchanged
    assert {t.status for t in store.get_run_tasks(result.run_id)} == {"SUCCESS"}


def test_a_failed_run_records_the_error_and_its_location(store) -> None:
    result = run([AfterCrash(), Load()])
    info = store.get_run(result.run_id)
    assert info is not None
    assert info.status == "FAILED"
    assert info.error is not None and "missing column" in info.error
    assert info.counts == {"FAILED": 1, "UPSTREAM_FAILED": 1, "SUCCESS": 1}

    tasks = {t.task_id: t for t in store.get_run_tasks(result.run_id)}
    crash = tasks[Crash().task_id]
    assert crash.status == "FAILED"
    assert crash.attempts == 1
    attempt = crash.history[-1]
    assert attempt.status == "FAILED"
    assert attempt.error is not None
    assert attempt.error.startswith("KeyError")
    assert "missing column" in attempt.error
    assert attempt.error_location is not None
    assert attempt.error_location.startswith(f"{__file__}:{_crash_line()}")
    assert attempt.traceback is not None and "raise KeyError" in attempt.traceback
    assert tasks[AfterCrash().task_id].status == "UPSTREAM_FAILED"
    assert tasks[AfterCrash().task_id].upstream == (Crash().task_id,)
    assert tasks[Load().task_id].status == "SUCCESS"


def test_the_record_is_optional(store) -> None:
    run(Load(), record=False)
    assert store.list_runs() == []


def test_list_runs_newest_first_with_status_and_limit(store) -> None:
    ids = []
    for rows in range(1, 4):
        ids.append(run(Load(rows=rows)).run_id)
    ids.append(run(Crash()).run_id)
    ids.append(run(Load(rows=9)).run_id)

    assert [r.id for r in store.list_runs()] == list(reversed(ids))
    assert [r.id for r in store.list_runs(limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in store.list_runs(status="FAILED")] == [ids[3]]
    assert [r.id for r in store.list_runs(status="failed")] == [ids[3]]
    assert [r.id for r in store.list_runs(status="SUCCESS", limit=3)] == [ids[4], ids[2], ids[1]]
    assert store.list_runs(status="CANCELLED") == []


def test_get_run_by_id_and_by_unique_prefix(store) -> None:
    first = run(Load(rows=1)).run_id
    second = run(Load(rows=2)).run_id
    info = store.get_run(first)
    assert info is not None and info.id == first
    assert store.get_run(first[:-2]).id == first  # a unique prefix
    assert store.get_run(second[:-1]).id == second
    assert store.get_run("no-such-run") is None
    common = first[: next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)]
    assert store.get_run(common) is None  # ambiguous: do not guess


def test_delete_run_removes_run_and_its_tasks(store) -> None:
    keep = run(Load(rows=1)).run_id
    gone = run([AfterCrash(), Load(rows=2)]).run_id
    assert store.delete_run(gone) is True
    assert store.get_run(gone) is None
    assert store.get_run_tasks(gone) == []
    assert [r.id for r in store.list_runs()] == [keep]
    assert len(store.get_run_tasks(keep)) == 1
    assert store.delete_run(gone) is False
    left = store._execute("SELECT COUNT(*) FROM task_runs WHERE run_id = ?", (gone,)).fetchone()
    assert left[0] == 0


def test_a_database_from_a_newer_dagmill_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    url = f"sqlite:///{db}"
    s = open_store(url)
    s.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaVersionError, match="99") as info:
        open_store(url)
    assert isinstance(info.value, StoreError)
    assert "upgrade dagmill" in str(info.value)
    with sqlite3.connect(db) as conn:  # untouched
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (99,)


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match=r"notes\.db"):
        open_store(f"sqlite:///{bogus}")
    assert bogus.read_bytes().startswith(b"these are my notes")


@pytest.mark.parametrize(
    "url, hint",
    [
        ("just/a/path.db", "sqlite:///"),
        ("postgresql//localhost/test", "sqlite:///"),
        ("mysql://localhost/runs", "sqlite:///"),
        ("sqlite:///", "sqlite:///"),
    ],
    ids=["no-scheme", "broken-scheme", "unsupported", "no-path"],
)
def test_a_malformed_database_url_is_a_helpful_store_error(
    url: str, hint: str, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setenv("DAGMILL_DATABASE_URL", url)
    with pytest.raises(StoreError) as info:
        s = open_store()
        s.close()
    msg = str(info.value)
    assert url in msg
    assert hint in msg
    assert "DAGMILL_DATABASE_URL" in msg or "SQLite" in msg
    with pytest.raises(StoreError):
        dagmill.run(Load(), execution_summary=False)
    assert not data_dir.exists() or not any(p.is_file() for p in data_dir.rglob("*"))


OPENER = textwrap.dedent(
    """
    import sys, time
    from dagmill.store import open_store

    folder, start = sys.argv[1], float(sys.argv[2])
    for k in range(4):  # four fresh databases, opened by every process at the same moment
        while time.time() < start + 0.25 * k:
            pass
        try:
            s = open_store(f"sqlite:///{folder}/fresh-{k}.db")
            s.list_runs()
            s.close()
            print("ok", flush=True)
        except Exception as e:
            print("error", type(e).__name__, e, flush=True)
    """
)


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """Two ``dagmill run`` (or a run and ``dagmill runs list``) started together."""
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, os.fspath(tmp_path), repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(5)
    ]
    lines = []
    for p in procs:
        out, _ = p.communicate(timeout=30)
        lines += out.decode().splitlines()
    errors = [line for line in lines if not line.startswith("ok")]
    assert errors == []
    assert len(lines) == 20
    for k in range(4):
        s = open_store(f"sqlite:///{tmp_path}/fresh-{k}.db")
        try:
            assert s.list_runs() == []
        finally:
            s.close()


PG_OPENER = textwrap.dedent(
    """
    import sys, time
    from dagmill.store import open_store

    start = float(sys.argv[1])
    for k, url in enumerate(sys.argv[2:]):  # fresh databases, opened by all at one moment
        while time.time() < start + 0.5 * k:
            pass
        try:
            s = open_store(url)
            s.list_runs()
            s.close()
            print("ok", flush=True)
        except Exception as e:
            print("error", type(e).__name__, e, flush=True)
    """
)


def test_processes_opening_a_new_postgres_database_at_once_all_succeed(
    request: pytest.FixtureRequest,
) -> None:
    """The migrator that waited for another sees the tables it committed (no
    DuplicateTable): the migration lock is taken before the transaction begins."""
    urls = [fresh_postgres_database(request) for _ in range(3)]
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PG_OPENER, repr(start), *urls],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    lines = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        lines += out.decode().splitlines()
    assert [line for line in lines if not line.startswith("ok")] == []
    assert len(lines) == 12
