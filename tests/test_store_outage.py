"""The run record survives its database having a bad moment: a PostgreSQL connection
killed mid-run, a database that stays away, an SQLite file locked by another writer, a
full disk under DAGMILL_HOME. Real faults against the real databases, no mocks; and gc
gives SQLite's space back."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import PG_ADMIN_URL, fresh_postgres_database
from dagmill.errors import StoreError, StoreUnavailable
from dagmill.store import NewRunTask, Store, open_store
from helpers import small_tmpfs, wait_for

PARTS = 12

FLOW = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import dagmill

    MARKS = Path(__file__).parent / "marks"


    def ran(name):
        fd = os.open(MARKS / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, b"%d\\n" % os.getpid())
        finally:
            os.close(fd)


    class Part(dagmill.tasks.TaskPickle):
        i = dagmill.IntParameter()

        def run(self):
            ran(f"Part-{{self.i}}")
            time.sleep({pause})
            {extra}
            self.save(self.i * self.i)


    class Sum(dagmill.tasks.TaskPickle):
        def requires(self):
            return [Part(i=i) for i in range({parts})]

        def run(self):
            ran("Sum")
            self.save(sum(self.inputLoad()))
    """
)

# Part-3 fills the disk under DAGMILL_HOME (after emptying the SQLite WAL, so the next
# write of the run record must grow a file): the run record is "disk full" from then on
FILL_DISK = textwrap.dedent(
    """
            filled = Path(__file__).parent / "filled"
            if self.i == 3 and not filled.exists():
                import sqlite3
                filled.touch()
                home = os.environ["DAGMILL_HOME"]
                c = sqlite3.connect(os.path.join(home, "dagmill.db"), isolation_level=None)
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                c.close()
                fd = os.open(os.path.join(home, "filler"), os.O_WRONLY | os.O_CREAT)
                try:
                    while os.write(fd, b"x" * 4096):
                        pass
                except OSError:
                    pass
                finally:
                    os.close(fd)
    """
).strip()


def _flow(tmp_path: Path, pause: float = 0.15, extra: str = "pass") -> Path:
    (tmp_path / "marks").mkdir(exist_ok=True)
    flow = tmp_path / "flow.py"
    extra = textwrap.indent(extra, " " * 8).strip()
    flow.write_text(FLOW.format(parts=PARTS, pause=pause, extra=extra))
    return flow


def _executions(tmp_path: Path) -> Counter[str]:
    marks = tmp_path / "marks"
    return Counter({p.name: len(p.read_text().splitlines()) for p in marks.iterdir()})


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def _start_run(tmp_path: Path, flow: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # a file, not a pipe: nothing blocks on a full pipe
        return subprocess.Popen(
            [sys.executable, "-m", "dagmill.cli.main", "run", f"{flow}:Sum",
             "--workers", "2", "--quiet"],
            cwd=tmp_path, env=_env(**env), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _dagmill(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=tmp_path, env=_env(**env), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the run did not end in {timeout}s:\n{log.read_text(errors='replace')}")
    return log.read_text(errors="replace")


def _check_whole_run(run_id: str | None = None) -> None:
    """The record agrees with itself: the run SUCCESS, each task SUCCESS (or SKIPPED)
    with its last attempt closed, and the counts those of its tasks."""
    with open_store() as s:
        run = s.get_run(run_id) if run_id else s.list_runs()[0]
        assert run is not None
        tasks = s.get_run_tasks(run.id)
    assert run.status == "SUCCESS", run
    assert len(tasks) == PARTS + 1
    for t in tasks:
        assert t.status in ("SUCCESS", "SKIPPED"), t
        if t.status == "SUCCESS":
            assert t.history and t.history[-1].status == "SUCCESS", t
            assert t.history[-1].ended_at is not None, t
        assert all(h.status in ("SUCCESS", "FAILED") for h in t.history), t
    assert run.counts == dict(Counter(t.status for t in tasks)), run.counts


def _pg_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextmanager
def _admin() -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def _terminate(admin: psycopg.Connection[Any], db: str) -> int:
    """Kill every connection to ``db`` (as a server restart does); how many were killed."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (db,),
    ).fetchall()
    return sum(1 for r in rows if r[0])


def _connections(admin: psycopg.Connection[Any], db: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)
    ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _database_away(url: str) -> Iterator[None]:
    """The run record's database unreachable (PostgreSQL: no connections allowed and
    every one killed; SQLite: another process's connection holding the write lock)."""
    if url.startswith("sqlite"):
        other = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("COMMIT")
            other.close()
        return
    db = _pg_name(url)
    with _admin() as admin:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        try:
            _terminate(admin, db)
            wait_for(lambda: _connections(admin, db) == 0, what="the connections to go")
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')


def _new_run(s: Store, run_id: str, n: int = 3) -> list[str]:
    ids = [f"T{i}" for i in range(n)]
    s.create_run(
        run_id,
        "outage",
        [NewRunTask(t, "T", {"i": t}, [], "PENDING", "", {}, "WAITING") for t in ids],
    )
    return ids


# -- the store: a failed flush keeps its events, newer ones win ---------------------------
def test_a_flush_while_the_database_is_away_keeps_every_event(database_url: str) -> None:
    with open_store(database_url) as s:
        _new_run(s, "r1")
        s.task_status("r1", "T0", "RUNNING", 1, "fp-0")
        s.task_attempt("r1", "T0", 1, "RUNNING", started_at=100.0, log=("t0.log", 0, None))
        s.task_status("r1", "T1", "RUNNING", 1)
        with _database_away(database_url):
            s.flush()  # fails, keeps the events, and does not raise: the run goes on
            assert s.unavailable and s.buffered == 3
            # newer events while it is away: they win, keeping what they leave out
            s.task_status("r1", "T0", "SUCCESS", 1)
            s.task_attempt("r1", "T0", 1, "SUCCESS", ended_at=101.0)
            s.task_status("r1", "T2", "FAILED", 1)
        s.flush_waiting()
        assert not s.unavailable and s.buffered == 0
        tasks = {t.task_id: t for t in s.get_run_tasks("r1")}
    assert (tasks["T0"].status, tasks["T0"].fingerprint) == ("SUCCESS", "fp-0")
    (attempt,) = tasks["T0"].history
    assert (attempt.status, attempt.started_at, attempt.ended_at) == ("SUCCESS", 100.0, 101.0)
    assert tasks["T1"].status == "RUNNING" and tasks["T2"].status == "FAILED"


def test_a_database_away_past_the_bound_is_a_clear_error_naming_the_run(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGMILL_STORE_RETRY_SECONDS", "0.5")
    with open_store(database_url) as s:
        _new_run(s, "r2")
        s.task_status("r2", "T0", "SUCCESS", 1)
        with _database_away(database_url):
            with pytest.raises(
                StoreUnavailable,
                match=r"the run record at .* is unavailable: .*"
                r"DAGMILL_STORE_RETRY_SECONDS.*`dagmill runs resume r2`",
            ) as caught:
                s.finish_run("r2", "SUCCESS")
            assert caught.value.run_id == "r2"
        assert s.buffered == 1  # nothing lost: the events are still there
        s.flush_waiting()
        assert s.get_run("r2").status == "RUNNING"  # type: ignore[union-attr]
        assert {t.task_id: t.status for t in s.get_run_tasks("r2")}["T0"] == "SUCCESS"


def test_a_bad_retry_bound_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGMILL_STORE_RETRY_SECONDS", "soon")
    with pytest.raises(StoreError, match="DAGMILL_STORE_RETRY_SECONDS='soon' is not a number"):
        open_store()  # said when the store opens, not once the database fails


# -- SQLite locked by another writer ----------------------------------------------------
def test_create_run_waits_for_a_locked_sqlite_file_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGMILL_STORE_RETRY_SECONDS", "30")
    url = f"sqlite:///{tmp_path}/locked.db"
    with open_store(url) as s:
        other = sqlite3.connect(
            s.url[len("sqlite:///") :], isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")
        # the other writer lets go once we said we wait
        released = threading.Event()

        def release_when_told() -> None:
            wait_for(lambda: "waiting for the run record" in caplog.text, timeout=30)
            other.execute("COMMIT")
            released.set()

        caplog.set_level(logging.WARNING, logger="dagmill.store")
        helper = threading.Thread(target=release_when_told)
        helper.start()
        try:
            _new_run(s, "r4")
        finally:
            helper.join(timeout=60)
            other.close()
        assert released.is_set()
        assert s.get_run("r4") is not None
    assert "waiting for the run record (locked by another process)" in caplog.text
    assert "the run record is back" in caplog.text


def test_a_run_while_another_process_locks_the_sqlite_file_ends_consistent(
    tmp_path: Path, data_dir: Path
) -> None:
    flow = _flow(tmp_path, pause=0.3)
    db = Path(os.environ["DAGMILL_HOME"]) / "dagmill.db"
    log = tmp_path / "run.log"
    proc = _start_run(tmp_path, flow, log)
    locker = None
    try:

        def started() -> bool:
            if proc.poll() is not None or not db.exists():
                return proc.poll() is not None
            with open_store() as s:
                runs = s.list_runs()
                return bool(runs) and any(
                    t.status == "SUCCESS" for t in s.get_run_tasks(runs[0].id)
                )

        assert wait_for(started, timeout=60) and proc.poll() is None, log.read_text()
        # another process holds the write lock for 3 s while tasks go on
        locker = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys, time\n"
             "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(3)\n"
             "c.execute('COMMIT')", str(db)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        output = _finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        if locker is not None:
            locker.wait(timeout=30)
    assert proc.returncode == 0, output
    assert "waiting for the run record (locked by another process)" in output
    assert "Traceback" not in output, output
    _check_whole_run()
    assert set(_executions(tmp_path).values()) == {1}


# -- PostgreSQL: connections killed mid-run, and a database that stays away -------------
@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database for this test (also in DAGMILL_DATABASE_URL)."""
    url = fresh_postgres_database(request)
    monkeypatch.setenv("DAGMILL_DATABASE_URL", url)
    return url


def test_a_run_survives_its_postgres_connections_being_killed(
    postgres_url: str, tmp_path: Path, data_dir: Path
) -> None:
    flow = _flow(tmp_path)
    log = tmp_path / "run.log"
    db = _pg_name(postgres_url)
    killed = 0
    proc = _start_run(tmp_path, flow, log)
    try:
        with open_store() as s:
            wait_for(lambda: s.list_runs() or proc.poll() is not None, what="the run to start")
        with _admin() as admin:
            # as if the server restarted, again and again, while the run goes on
            while proc.poll() is None and killed < 30:
                killed += _terminate(admin, db)
                time.sleep(0.1)
        output = _finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed > 0
    assert proc.returncode == 0, output
    assert "waiting for the run record (connection lost)" in output, output
    assert "Traceback" not in output, output
    _check_whole_run()
    assert set(_executions(tmp_path).values()) == {1}


def test_a_postgres_database_away_too_long_stops_the_run_resumably(
    postgres_url: str, tmp_path: Path, data_dir: Path
) -> None:
    flow = _flow(tmp_path, pause=0.5)  # the 10 parts left take longer than the bound
    log = tmp_path / "run.log"
    proc = _start_run(tmp_path, flow, log, DAGMILL_STORE_RETRY_SECONDS="1")
    try:

        def going() -> bool:
            if proc.poll() is not None:
                return True
            with open_store() as s:
                runs = s.list_runs()
                done = runs and sum(t.status == "SUCCESS" for t in s.get_run_tasks(runs[0].id))
            return bool(runs) and done >= 2

        assert wait_for(going, timeout=60) and proc.poll() is None, log.read_text()
        with _database_away(postgres_url):
            output = _finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open_store() as s:
        (run,) = s.list_runs()
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    assert "error: the run record at postgresql+psycopg://postgres@127.0.0.1:5432/" in output
    assert "is unavailable: " in output and f"dagmill runs resume {run.id}" in output, output
    assert run.status == "RUNNING"  # resumable
    before = _executions(tmp_path)
    assert sum(before.values()) < PARTS + 1, "the run did not stop starting tasks"

    resumed = _dagmill(tmp_path, "runs", "resume", run.id, "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_whole_run(run.id)
    after = _executions(tmp_path)
    assert set(after.values()) == {1}, f"finished tasks were redone: {after}"
    assert len(after) == PARTS + 1


# -- a full disk under DAGMILL_HOME -----------------------------------------------------
@pytest.fixture
def small_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DAGMILL_HOME on a 4 MiB tmpfs of its own (root only)."""
    with small_tmpfs(tmp_path / "small-home", "4m") as home:
        monkeypatch.setenv("DAGMILL_HOME", str(home))
        yield home


def test_a_full_disk_stops_the_run_with_a_message_and_it_resumes(
    small_home: Path, tmp_path: Path, data_dir: Path
) -> None:
    flow = _flow(tmp_path, pause=0.05, extra=FILL_DISK)
    log = tmp_path / "run.log"
    proc = _start_run(tmp_path, flow, log, DAGMILL_STORE_RETRY_SECONDS="1")
    output = _finish(proc, log)
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    assert "waiting for the run record (disk full)" in output, output
    assert "is unavailable: disk full" in output, output
    (small_home / "filler").unlink()
    with open_store() as s:
        (run,) = s.list_runs()
    assert run.status == "RUNNING" and f"dagmill runs resume {run.id}" in output

    resumed = _dagmill(tmp_path, "runs", "resume", run.id, "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_whole_run(run.id)
    assert set(_executions(tmp_path).values()) == {1}


# -- gc gives the space of deleted runs back --------------------------------------------
def test_gc_shrinks_the_sqlite_file(tmp_path: Path) -> None:
    from dagmill.runs import collect_garbage

    db = Path(os.environ["DAGMILL_HOME"]) / "dagmill.db"
    with open_store() as s:
        job = s.create_job("j1", "big", "python", "flow:Big", "v1", {}, None,
                           ttl={"secondsAfterCompletion": 0})  # fmt: skip
        for n in range(40):
            s.create_run(
                f"run-{n}",
                "big",
                [
                    NewRunTask(f"T{i}", "T", {"blob": "x" * 500}, [], "PENDING", "", {}, "SUCCESS")
                    for i in range(50)
                ],
                job_id=job.id,
            )
            s.finish_run(f"run-{n}", "SUCCESS")
        s.create_run("keep", "kept", [NewRunTask("T", "T", {}, [], "PENDING", "", {}, "SUCCESS")])
        s.finish_run("keep", "SUCCESS")
        full = s.space()  # type: ignore[attr-defined]
    size = db.stat().st_size
    assert len(collect_garbage(now=time.time() + 1)) == 40
    with open_store() as s:
        after = s.space()  # type: ignore[attr-defined]
        assert [r.id for r in s.list_runs()] == ["keep"]
    assert after["pages"] < full["pages"] // 4, (full, after)
    assert after["free"] == 0
    assert db.stat().st_size < size // 4


def test_a_record_that_cannot_be_written_stops_the_run_without_a_traceback(
    tmp_path: Path, data_dir: Path
) -> None:
    """Not an outage (retrying cannot help): the heartbeat thread does not die with a
    traceback, the run stops after the tasks in hand and says what failed."""
    flow = _flow(tmp_path, pause=0.3)
    db = Path(os.environ["DAGMILL_HOME"]) / "dagmill.db"
    log = tmp_path / "run.log"
    proc = _start_run(tmp_path, flow, log)
    try:

        def started() -> bool:
            if proc.poll() is not None or not db.exists():
                return proc.poll() is not None
            with open_store() as s:
                return bool(s.list_runs())

        assert wait_for(started, timeout=60) and proc.poll() is None, log.read_text()
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("DROP TABLE task_runs")  # someone broke the record
        other.close()
        output = _finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    assert "error: cannot write the run record at sqlite:///" in output, output
    assert "no such table: task_runs" in output and "dagmill runs resume" in output, output
    assert sum(_executions(tmp_path).values()) < PARTS + 1
