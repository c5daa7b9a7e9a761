"""Every test gets its own data folder, run record and settings."""

from __future__ import annotations

import compileall
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dagmill
from dagmill import settings
from servers import Project

_DEFAULTS = {k: getattr(settings, k) for k in (
    "dir", "dirpath", "check_dependencies", "detect_changes", "execution_summary",
    "log_level", "save_with_param", "cached", "record", "capture_logs",
)}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Compile dagmill's own modules once, for the hundreds of `dagmill` subprocesses the
    tests start: with PYTHONDONTWRITEBYTECODE set (some shells and sandboxes set it) and an
    editable install, each of them would compile src/dagmill from source again (~0.1 s of
    CPU each). Only dagmill's files are compiled (into their usual, git-ignored
    __pycache__): the modules the tests write and rewrite are never cached."""
    if not hasattr(config, "workerinput"):  # once, not in each pytest-xdist worker
        compileall.compile_dir(Path(dagmill.__file__).parent, quiet=2)  # best effort


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir (``settings.dirpath``) and DAGMILL_HOME under tmp_path."""
    monkeypatch.setenv("DAGMILL_HOME", os.fspath(tmp_path / ".dagmill"))
    monkeypatch.delenv("DAGMILL_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    dagmill.set_dir(tmp_path / "data")
    yield tmp_path / "data"
    for k, v in _DEFAULTS.items():
        setattr(settings, k, v)


@pytest.fixture
def data_dir(isolated: Path) -> Path:
    return isolated


# -- database backends: store tests run against SQLite and the real local PostgreSQL ------
PG_ADMIN_URL = os.environ.get(
    "DAGMILL_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def fresh_postgres_database(request: pytest.FixtureRequest) -> str:
    """A new, empty database for one test, dropped afterwards."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({e}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "(make test does), or point DAGMILL_TEST_POSTGRES_ADMIN at a server"
        )
    name = f"dagmill_t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    request.addfinalizer(drop)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The run record's URL for this test, once per backend (also in DAGMILL_DATABASE_URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/.dagmill/dagmill.db"
    else:
        url = fresh_postgres_database(request)
    monkeypatch.setenv("DAGMILL_DATABASE_URL", url)
    return url


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """A folder for pipelines, jobs and `dagmill server` processes on this test's store;
    the servers are stopped afterwards, and their logs printed (shown if the test fails)."""
    p = Project(tmp_path, database_url)
    try:
        yield p
    finally:
        p.cleanup()
        for n, server in enumerate(p.servers):
            print(f"--- server {n} (pid {server.pid}, exit {server.proc.returncode}) ---")
            print(server.log()[-20_000:])
