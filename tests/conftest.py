"""Every test gets its own data folder, run record and settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dagmill
from dagmill import settings

_DEFAULTS = {k: getattr(settings, k) for k in (
    "dir", "dirpath", "check_dependencies", "detect_changes", "execution_summary",
    "log_level", "save_with_param", "cached", "record",
)}  # fmt: skip


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
