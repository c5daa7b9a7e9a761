"""Scheduled jobs from the command line, without a server: build with a schedule and a
policy (and refuse bad ones, writing nothing), the statuses users see (READY, PENDING,
PAUSED, ENDED, SUCCESS), `jobs next`, pause/resume, backfill (once per slot), `jobs run
-p` overrides, and the slot in `runs list`.

The CLI runs in-process through click's CliRunner (the store is the test's own SQLite
file, from the `isolated` fixture, and for the tests that take `database_url` a fresh
PostgreSQL database too); only `jobs run` without a server starts a process.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import dagmill.runs
from dagmill.cli.main import cli
from dagmill.services.jobs import backfill_job, build_job, job_view, resume_job
from dagmill.services.wake import wake_server
from dagmill.store import open_store
from helpers import wait_for

FLOW = textwrap.dedent(
    """
    import dagmill


    class Numbers(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter(default=5)

        def run(self):
            self.save(list(range(self.n)))


    class Daily(dagmill.tasks.TaskPickle):
        day = dagmill.Parameter()  # the slot, as ISO text
        n = dagmill.IntParameter(default=2)

        def run(self):
            self.save(self.day)
    """
)

PIPELINE = textwrap.dedent(
    """
    dataNodes:
      out: {source: out.txt}
    processNodes:
      write:
        output: [out]
        command: "echo hi > $DAGMILL_OUTPUT_0"
    schedule:
      schedule_interval: "0 6 * * *"
      timezone: UTC
    """
)


@pytest.fixture
def flow(tmp_path: Path) -> str:
    (tmp_path / "flows.py").write_text(FLOW)
    return os.fspath(tmp_path / "flows.py")


def dm(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def ok(*args: str) -> str:
    out = dm(*args)
    assert out.exit_code == 0, f"dagmill {' '.join(args)}: {out.exit_code}\n{out.output}"
    return out.stdout


def jobs() -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(ok("jobs", "list", "--json"))
    return listed


def the_job() -> dict[str, Any]:
    (job,) = jobs()
    return job


def build(*args: str) -> str:
    return ok("jobs", "build", *args).splitlines()[0]


# -- build ------------------------------------------------------------------------------------
def test_build_with_a_cron_schedule_in_a_timezone_between_dates(flow: str) -> None:
    out = dm(
        "jobs", "build", f"{flow}:Numbers", "--cron", "5 10 * * *",
        "--timezone", "Europe/Paris", "--start", "2030-01-01", "--end", "2030-12-31",
        "--overlap", "queue", "--catchup", "all",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    job = the_job()
    assert out.stdout.splitlines()[0] == job["id"]
    assert job["schedule"] == {
        "schedule_interval": "5 10 * * *",
        "timezone": "Europe/Paris",
        "start_date": "2030-01-01",
        "end_date": "2030-12-31",
    }
    assert job["policy"] == {"overlap": "queue", "catchup": "all", "slot_param": None}
    assert (job["trigger"], job["status"]) == ("scheduled", "PENDING")
    # the first slot: 2030-01-01 10:05 in Paris (CET, UTC+1)
    assert job["next_run_at_iso"] == "2030-01-01T09:05:00.000+00:00"
    assert "next run 2030-01-01 10:05 CET (09:05 UTC)" in out.stderr


def test_build_every_period_and_slot_param(flow: str) -> None:
    build(f"{flow}:Numbers", "--every", "1h", "--start", "2030-01-01 00:30")
    build(f"{flow}:Daily", "--cron", "0 2 * * *", "--slot-param", "day")
    daily, every = jobs()  # newest first
    assert every["schedule"] == {"every": "1h", "start_date": "2030-01-01 00:30", "timezone": "UTC"}
    assert every["next_run_at_iso"] == "2030-01-01T00:30:00.000+00:00"
    assert daily["policy"]["slot_param"] == "day" and daily["params"] == {}


def test_a_manual_job_is_ready_and_lists_as_manual(flow: str) -> None:
    build(f"{flow}:Numbers")
    job = the_job()
    assert (job["trigger"], job["status"], job["next_run_at"]) == ("manual", "READY", None)
    table = ok("jobs", "list")
    head = ["JOB", "KIND", "STATUS", "LAST", "RUN", "NEXT", "RUN", "NAME"]
    assert table.splitlines()[0].split() == head
    assert table.splitlines()[1].split()[:3] == [job["id"], "manual", "READY"]


def test_schedule_flags_replace_a_pipeline_files_own_schedule(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    build("pipeline.yaml")
    assert the_job()["schedule"]["schedule_interval"] == "0 6 * * *"  # the file's, kept
    out = dm("jobs", "build", "pipeline.yaml", "--cron", "0 7 * * *")
    assert out.exit_code == 0, out.output
    assert "replace pipeline.yaml's own schedule (0 6 * * * (UTC))" in out.stderr
    assert jobs()[0]["schedule"]["schedule_interval"] == "0 7 * * *"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "5 10 * *"], "not a cron expression: '5 10 * *'"),
        (["--cron", "61 * * * *"], "not a cron expression"),
        (
            ["--cron", "@daily", "--timezone", "Europe/Pari"],
            "unknown timezone 'Europe/Pari' (did you mean 'Europe/Paris'?)",
        ),
        (["--cron", "@daily", "--every", "1h"], "a schedule is one or the other"),
        (["--timezone", "Europe/Paris"], "--timezone describes a schedule: add --cron"),
        (["--start", "2030-01-01", "--end", "2030-02-01"], "--start, --end describe a schedule"),
        (["--every", "1h"], "every needs a start_date"),
        (["--every", "0h", "--start", "2030-01-01"], "not a period: '0h'"),
        (["--cron", "@daily", "--start", "2030-02-30"], "not a date: '2030-02-30'"),
        (["--cron", "@daily", "--overlap", "sometimes"], "'sometimes' is not one of"),
        (["--overlap", "queue"], "--overlap is a policy of a schedule"),
        (["--slot-param", "n"], "--slot-param n needs a schedule"),
        (
            ["--cron", "@daily", "--slot-param", "nn"],
            "Numbers has no parameter 'nn' (did you mean 'n'?)",
        ),
        (["--cron", "@daily", "--slot-param", "n", "-p", "n=3"], "drop the -p"),
    ],
)
def test_bad_schedule_input_exits_2_and_writes_nothing(
    flow: str, args: list[str], message: str
) -> None:
    out = dm("jobs", "build", f"{flow}:Numbers", *args)
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert jobs() == []


def test_slot_param_of_a_pipeline_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    out = dm("jobs", "build", "pipeline.yaml", "--cron", "@daily", "--slot-param", "day")
    assert out.exit_code == 2 and "--slot-param is for Python tasks" in out.output
    assert jobs() == []


# -- statuses, next, pause, resume ------------------------------------------------------------
def test_a_job_past_its_end_date_is_ended(flow: str) -> None:
    build(f"{flow}:Numbers", "--cron", "@daily", "--end", "2020-01-01")
    job = the_job()
    assert (job["status"], job["next_run_at"]) == ("ENDED", None)
    assert "never" in ok("jobs", "list")
    assert "no slot after now: the schedule has ended" in ok("jobs", "next", job["id"])


def test_a_job_starting_later_is_pending_until_then(flow: str) -> None:
    build(f"{flow}:Numbers", "--every", "1d", "--start", "2031-06-01 08:00")
    job = the_job()
    assert (job["status"], job["next_run_at_iso"]) == ("PENDING", "2031-06-01T08:00:00.000+00:00")


def test_jobs_next_in_europe_paris_across_the_change_to_summer_time(flow: str) -> None:
    # EU summer time starts on Sunday 2030-03-31: 10:05 is then 08:05 UTC, not 09:05
    job_id = build(
        f"{flow}:Numbers", "--cron", "5 10 * * *", "--timezone", "Europe/Paris",
        "--start", "2030-03-29",
    )  # fmt: skip
    table = ok("jobs", "next", job_id)
    rows = [line.split() for line in table.splitlines()[2:]]
    assert rows == [
        ["2030-03-29", "10:05:00", "CET", "2030-03-29", "09:05:00"],
        ["2030-03-30", "10:05:00", "CET", "2030-03-30", "09:05:00"],
        ["2030-03-31", "10:05:00", "CEST", "2030-03-31", "08:05:00"],
        ["2030-04-01", "10:05:00", "CEST", "2030-04-01", "08:05:00"],
        ["2030-04-02", "10:05:00", "CEST", "2030-04-02", "08:05:00"],
    ]
    assert "LOCAL (Europe/Paris)" in table
    shown = json.loads(ok("jobs", "next", job_id, "-n", "3", "--json"))
    assert [n["local"] for n in shown["next"]] == [
        "2030-03-29T10:05:00+01:00",
        "2030-03-30T10:05:00+01:00",
        "2030-03-31T10:05:00+02:00",
    ]
    assert shown["next"][2]["fires_at_iso"] == "2030-03-31T08:05:00.000+00:00"
    assert shown["next"][2]["fires_at"] == datetime(2030, 3, 31, 8, 5, tzinfo=UTC).timestamp()


def test_jobs_next_of_a_manual_job_exits_2(flow: str) -> None:
    job_id = build(f"{flow}:Numbers")
    out = dm("jobs", "next", job_id)
    assert out.exit_code == 2 and "has no schedule" in out.output


def test_pause_and_resume_show_in_jobs_list(database_url: str, flow: str) -> None:
    job_id = build(f"{flow}:Numbers", "--cron", "*/5 * * * *")
    assert "paused job" in ok("jobs", "pause", job_id)
    job = the_job()
    assert (job["status"], job["paused"], job["next_run_at"]) == ("PAUSED", True, None)
    assert "PAUSED" in ok("jobs", "list") and "paused" in ok("jobs", "show", job_id)
    assert "resumed job" in ok("jobs", "resume", job_id)
    job = the_job()
    assert (job["status"], job["paused"]) == ("PENDING", False)
    assert job["next_run_at"] is not None and job["next_run_at"] > time.time()


def test_resume_drops_the_slots_missed_while_paused(flow: str) -> None:
    job = build_job(f"{flow}:Numbers", {}, schedule=_cron("0 * * * *"))
    ok("jobs", "pause", job.id)
    now = datetime(2040, 1, 1, 12, 30, tzinfo=UTC).timestamp()
    resumed = resume_job(job.id, now=now)
    # the scheduler counts from the last slot decided: 12:00, so 12:00 and earlier are over
    assert resumed.last_slot_at == datetime(2040, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert not resumed.paused
    # a job that is not paused keeps its missed slots for its catch-up policy
    later = datetime(2040, 1, 1, 18, 30, tzinfo=UTC).timestamp()
    assert resume_job(job.id, now=later).last_slot_at == resumed.last_slot_at
    assert "is not paused: nothing to resume" in ok("jobs", "resume", job.id)


def test_pause_of_a_manual_job_exits_2(flow: str) -> None:
    job_id = build(f"{flow}:Numbers")
    out = dm("jobs", "pause", job_id)
    assert out.exit_code == 2 and "has no schedule: nothing to pause" in out.output


def test_a_skipped_slot_is_shown_with_its_reason(database_url: str, flow: str) -> None:
    job_id = build(f"{flow}:Numbers", "--cron", "5 10 * * *")
    reason = "slot 2026-12-02 10:05 skipped: run 20261202-100000-abcdef still RUNNING"
    with open_store() as store:
        store.decide_slot(job_id, 1796205900.0, "skipped", reason=reason)
    shown = ok("jobs", "show", job_id)
    assert "skipped slots" in shown and reason in shown
    assert "overlap skip, catchup latest" in shown
    assert json.loads(ok("jobs", "show", job_id, "--json"))["skipped_slots"][0]["reason"] == reason


# -- backfill ---------------------------------------------------------------------------------
def test_backfill_queues_one_run_per_slot_once(database_url: str, flow: str) -> None:
    job_id = build(
        f"{flow}:Daily", "--cron", "0 2 * * *", "--timezone", "Europe/Paris",
        "--slot-param", "day",
    )  # fmt: skip
    out = ok("jobs", "backfill", job_id, "--from", "2026-11-01", "--to", "2026-11-03", "-y")
    assert f"queued 3 runs of job {job_id}" in out
    assert "0 slots were already decided" in out
    assert "2026-11-01 02:00 CET (01:00 UTC) .. 2026-11-03 02:00 CET (01:00 UTC)" in out
    runs = json.loads(ok("runs", "list", "--json"))
    assert [r["scheduled_for_iso"] for r in runs] == [
        "2026-11-03T01:00:00.000+00:00",
        "2026-11-02T01:00:00.000+00:00",
        "2026-11-01T01:00:00.000+00:00",
    ]
    assert all(r["status"] == "PENDING" and r["job_id"] == job_id for r in runs)
    first = runs[-1]
    assert first["scheduled_for"] == datetime(2026, 11, 1, 1, tzinfo=UTC).timestamp()
    assert first["target"]["slot"] == "2026-11-01T02:00:00+01:00"
    assert first["target"]["params"] == {"day": "2026-11-01T02:00:00+01:00"}
    table = ok("runs", "list")
    assert "SLOT" in table.splitlines()[0] and "11-01 02:00" in table
    assert the_job()["status"] == "PENDING"  # queued runs: waiting for a server

    again = ok("jobs", "backfill", job_id, "--from", "2026-10-31", "--to", "2026-11-03", "-y")
    assert "queued 1 runs" in again and "3 slots were already decided" in again
    assert len(json.loads(ok("runs", "list", "--json"))) == 4


def test_backfill_needs_a_schedule_a_range_and_a_terminal_or_yes(flow: str) -> None:
    manual = build(f"{flow}:Numbers")
    out = dm("jobs", "backfill", manual, "--from", "2026-11-01", "--to", "2026-11-02", "-y")
    assert out.exit_code == 2 and "has no schedule" in out.output
    job_id = build(f"{flow}:Numbers", "--cron", "@daily")
    out = dm("jobs", "backfill", job_id, "--from", "2026-11-05", "--to", "2026-11-01", "-y")
    assert out.exit_code == 2 and "is before --from" in out.output
    out = dm("jobs", "backfill", job_id, "--from", "2026-13-01", "--to", "2026-11-01", "-y")
    assert out.exit_code == 2 and "not a date: '2026-13-01'" in out.output
    out = dm("jobs", "backfill", job_id, "--from", "2026-11-01", "--to", "2026-11-02")
    assert out.exit_code == 2 and "pass -y/--yes to queue runs" in out.output
    out = dm("jobs", "backfill", job_id, "--from", "2020-01-01", "--to", "2026-11-02", "-y")
    assert out.exit_code == 2 and "more than 1000 slots" in out.output
    assert json.loads(ok("runs", "list", "--json")) == []


def test_backfill_of_a_new_cron_job_leaves_later_slots_before_its_creation_over(
    flow: str,
) -> None:
    job = build_job(f"{flow}:Numbers", {}, schedule=_cron("0 * * * *"))
    result = backfill_job(job.id, "2026-01-01 00:00", "2026-01-01 02:00")
    assert len(result.queued) == 3 and result.already == 0
    with open_store() as store:
        after = store.get_job(job.id)
    assert after is not None and after.last_slot_at is not None
    # not moved back to 2026-01-01 02:00: the hourly slots up to the job's creation were
    # never "missed" (a brand-new cron job counts from its creation)
    assert after.last_slot_at > job.created_at - 3600


def test_backfill_stops_at_now(flow: str) -> None:
    job = build_job(f"{flow}:Numbers", {}, schedule=_cron("0 0 * * *"))
    now = datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp()
    result = backfill_job(job.id, "2026-11-01", "2026-11-30", now=now)
    assert result.clamped and len(result.queued) == 3  # 11-01, 11-02, 11-03 at 00:00


# -- runs by hand -----------------------------------------------------------------------------
def test_jobs_run_p_overrides_a_param_for_one_run(flow: str, tmp_path: Path) -> None:
    job_id = build(f"{flow}:Numbers", "--data", os.fspath(tmp_path / "out"))
    run = json.loads(ok("jobs", "run", job_id, "-p", "n=7", "--json"))
    assert run["target"]["params"] == {"n": "7"} and run["scheduled_for"] is None
    wait_for(
        lambda: dagmill.runs.get_run(run["id"]).status in ("SUCCESS", "FAILED"),
        30,
        "the background run to end",
    )
    assert dagmill.runs.get_run(run["id"]).status == "SUCCESS"
    assert the_job()["status"] == "SUCCESS"
    assert the_job()["params"] == {}  # the job itself is unchanged


def test_jobs_run_wait_p_runs_here_with_the_override(flow: str, tmp_path: Path) -> None:
    job_id = build(f"{flow}:Numbers", "-p", "n=2", "--data", os.fspath(tmp_path / "out"))
    result = json.loads(ok("jobs", "run", job_id, "-p", "n=4", "--wait", "--json"))
    assert result["status"] == "SUCCESS"
    assert [t["params"] for t in result["tasks"]] == [{"n": "4"}]
    assert dagmill.runs.get_run(result["id"]).target.params == {"n": "4"}  # type: ignore[union-attr]


def test_jobs_run_p_with_an_unknown_or_bad_param_exits_2(flow: str) -> None:
    job_id = build(f"{flow}:Numbers")
    out = dm("jobs", "run", job_id, "-p", "nn=7")
    assert out.exit_code == 2 and "has no parameter 'nn' (did you mean 'n'?)" in out.output
    out = dm("jobs", "run", job_id, "-p", "n=seven")
    assert out.exit_code == 2 and "'n'" in out.output
    assert json.loads(ok("runs", "list", "--json")) == []


def test_with_a_live_server_jobs_run_only_queues(
    database_url: str, flow: str, tmp_path: Path
) -> None:
    job_id = build(f"{flow}:Numbers")
    with open_store() as store:
        store.register_server("s-test", 2)  # this process, alive: as a server would
    run = json.loads(ok("jobs", "run", job_id, "-p", "n=3", "--json"))
    assert run["status"] == "PENDING" and run["owner"] is None
    assert run["target"]["params"] == {"n": "3"}
    # no background process was started for it (it would log into the run's folder)
    assert not (tmp_path / ".dagmill" / "logs" / run["id"]).exists()
    assert dagmill.runs.get_run(run["id"]).status == "PENDING"
    assert job_view(job_id).status == "PENDING"
    with open_store() as store:
        store.stop_server("s-test")


def test_backfill_says_to_start_a_server_when_none_runs(flow: str) -> None:
    job_id = build(f"{flow}:Numbers", "--cron", "@daily")
    out = dm("jobs", "backfill", job_id, "--from", "2026-11-01", "--to", "2026-11-01", "-y")
    assert out.exit_code == 0 and "start `dagmill server`" in out.stderr


# -- wake-ups ---------------------------------------------------------------------------------
def test_wake_server_writes_to_the_servers_socket_if_there_is_one(tmp_path: Path) -> None:
    assert wake_server() is False  # no server: fine
    path = tmp_path / ".dagmill" / "server.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        assert wake_server() is True
        sock.settimeout(2)
        assert sock.recv(8) == b"!"
    assert wake_server() is False  # a socket nobody listens on any more: fine


def _cron(expr: str) -> Any:
    from dagmill.model.schedules import ScheduleSpec

    return ScheduleSpec(cron=expr)
