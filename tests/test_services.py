"""The services facade, called in-process as a face calls it (the CLI's tests call it
through `dagmill` subprocesses): lookups that find nothing, the database, and resets."""

from __future__ import annotations

from pathlib import Path

import pytest

import dagmill
from dagmill.errors import DefinitionError
from dagmill.services import admin, jobs, runs, tasks
from dagmill.store.migrate import LATEST


class Raw(dagmill.tasks.TaskJson):
    def run(self) -> None:
        self.save({"n": 1})


@dagmill.requires(Raw)
class Cooked(dagmill.tasks.TaskJson):
    def run(self) -> None:
        self.save({"n": self.inputLoad()["n"] + 1})


def test_a_missing_job_or_run_is_named_with_where_to_look() -> None:
    with pytest.raises(DefinitionError, match=r"no job 'jnope': see `dagmill jobs list`"):
        jobs.get_job("jnope")
    assert jobs.list_jobs() == []
    assert runs.find_run("nope") is None
    with pytest.raises(DefinitionError, match=r"no run 'nope'"):
        list(runs.follow_run_logs("nope"))


def test_a_finished_run_is_found_and_its_logs_end(data_dir: Path) -> None:
    result = tasks.run_tasks([Cooked()], execution_summary=False)
    assert result is not None
    found = runs.find_run(result.run_id)
    assert found is not None and found.status == "SUCCESS"
    # an ended run: following reads what was kept and stops (it would wait otherwise)
    kept = [c for c in runs.get_run_logs_list(result.run_id) if c.text]
    assert list(runs.follow_run_logs(result.run_id)) == kept


def test_upgrade_database_says_where_and_which_version(tmp_path: Path) -> None:
    info = admin.upgrade_database()
    assert info == admin.DatabaseInfo(f"sqlite:///{tmp_path / '.dagmill' / 'dagmill.db'}", LATEST)


def test_tasks_to_reset_are_those_with_outputs(data_dir: Path) -> None:
    assert tasks.tasks_to_reset(Cooked(), upstream=True) == []
    tasks.run_tasks([Raw()], execution_summary=False, record=False)
    assert tasks.tasks_to_reset(Cooked()) == []
    assert tasks.tasks_to_reset(Cooked(), upstream=True) == [Raw()]


def test_preview_text_says_what_must_run() -> None:
    text = tasks.preview_text([Cooked()])
    assert "Cooked" in text and "Raw" in text and "PENDING" in text
    with pytest.raises(DefinitionError, match=r"pass Cooked\(\) rather than Cooked"):
        tasks.preview_text([Cooked])
