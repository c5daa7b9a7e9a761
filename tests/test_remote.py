"""The CLI as a client of a server (remote mode): the core `jobs` and `runs` tests run
once on the local database and once against a `dagmill server` subprocess, with the same
assertions; then what only remote mode has (profiles, tokens it does not take, a server
that is down, the Python query API over the API).

One server serves the whole module (its own DAGMILL_HOME and SQLite database); each test
gets a project of its own on it and an admin token of that project, so what a test
lists is its own. The remote CLI runs with another, empty DAGMILL_HOME and no database
URL: nothing can be read locally by accident (each test checks no database appeared).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import servers
from helpers import wait_for
from servers import ServerProcess

FLOW = textwrap.dedent(
    '''
    """Tasks the remote tests build into jobs."""
    import time

    import dagmill


    class Numbers(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter(default=5)

        def run(self):
            print(f"making {self.n} numbers")
            self.save(list(range(self.n)))


    @dagmill.requires(Numbers)
    class Total(dagmill.tasks.TaskJson):
        def run(self):
            total = sum(self.inputLoad())
            print(f"the total is {total}")
            self.save({"total": total})


    @dagmill.requires(Numbers)
    class Broken(dagmill.tasks.TaskJson):
        def run(self):
            raise ValueError("the numbers do not add up")


    class Sleepy(dagmill.tasks.TaskPickle):
        def run(self):
            print("going to sleep", flush=True)
            time.sleep(60)
            self.save(1)
    '''
)
_CLIENT_VARS = ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE", "DAGMILL_DATABASE_URL")


# -- the server, and a runner of `dagmill` commands per mode -----------------------------
@dataclass
class ServerHome(servers.ServerHome):
    """The server's side: its folder, home and database, and its tokens."""

    def admin_token(self, project: str, role: str = "admin") -> str:
        """A token of ``project`` (created if need be), made as on the server's machine
        (in this process, on its home and database: a subprocess costs a second)."""
        from dagmill.services.projects import create_project
        from dagmill.services.tokens import create_token

        with pytest.MonkeyPatch.context() as env:
            for name in _CLIENT_VARS[:3]:
                env.delenv(name, raising=False)
            env.setenv("DAGMILL_HOME", os.fspath(self.root / ".dagmill"))
            env.setenv("DAGMILL_DATABASE_URL", self.database_url)
            env.setenv("DAGMILL_CONFIG", os.devnull)
            if project != "default":
                create_project(project)
            return create_token(project, role, "test").bearer


@dataclass
class Remote:
    home: ServerHome
    process: ServerProcess
    url: str  # the server's root (the API is under /api/v1)


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root = tmp_path_factory.mktemp("server")
    home = ServerHome(root, f"sqlite:///{root}/.dagmill/dagmill.db")
    try:
        process = home.server("--log-json", "--max-runs", "4")
        url = next(e["url"] for e in process.events() if e.get("event") == "api_listening")
        yield Remote(home, process, url.removesuffix("/api/v1"))
    finally:
        home.cleanup()
        for n, server in enumerate(home.servers):
            print(f"--- server {n} (pid {server.pid}, exit {server.proc.returncode}) ---")
            print(server.log()[-20_000:])


@dataclass
class Cli:
    """`dagmill ARGS` as a user types it, in a folder, local or against a server."""

    mode: str
    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagmill.cli.main", *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self, *args: str, out: Path) -> subprocess.Popen[bytes]:
        """`dagmill ARGS` in the background, its output into ``out``."""
        with open(out, "wb") as f:
            return subprocess.Popen(
                [sys.executable, "-m", "dagmill.cli.main", *args],
                cwd=self.cwd, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def ok(self, *args: str) -> str:
        out = self(*args)
        assert out.returncode == 0, (
            f"[{self.mode}] dagmill {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
        )
        return out.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def status(self, run_id: str) -> str:
        return str(self.json("runs", "show", run_id)["run"]["status"])

    def wait_ended(self, run_id: str, timeout: float = 60) -> str:
        wait_for(
            lambda: self.status(run_id) in ("SUCCESS", "FAILED", "CANCELLED"),
            timeout,
            f"run {run_id} to end",
            every=0.3,
        )
        return self.status(run_id)


def _base_env(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
    env.pop("PYTHONUNBUFFERED", None)
    return {**env, "NO_COLOR": "1", "COLUMNS": "250", "DAGMILL_HOME": os.fspath(home),
            "DAGMILL_CONFIG": os.fspath(config)}  # fmt: skip


@pytest.fixture(params=["local", "remote"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """A runner of `dagmill` commands on the local database, or on the module's server
    with an admin token of a project of this test's own."""
    (tmp_path / "jobflow.py").write_text(FLOW)
    no_config = tmp_path / "no-config.toml"
    if request.param == "local":
        yield Cli("local", tmp_path, _base_env(tmp_path / ".dagmill", no_config))
        return
    server: Remote = request.getfixturevalue("remote_server")
    token = server.home.admin_token(f"t{uuid.uuid4().hex[:10]}")
    client_home = tmp_path / "client-home"
    env = {**_base_env(client_home, no_config), "DAGMILL_SERVER": server.url,
           "DAGMILL_TOKEN": token}  # fmt: skip
    yield Cli("remote", tmp_path, env)
    # nothing was done on a database here
    assert not (client_home / "dagmill.db").exists()
    assert not (tmp_path / ".dagmill" / "dagmill.db").exists()


def run_id_from_summary(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("run ")]
    assert lines, stdout
    return lines[-1].split()[1].rstrip(":")


_RUN_KEYS = {"id", "name", "status", "created_at", "created_at_iso", "started_at",
             "started_at_iso", "ended_at", "ended_at_iso", "job_id", "project", "counts",
             "target", "scheduled_for", "scheduled_for_iso"}  # fmt: skip
_JOB_KEYS = {"id", "name", "project", "kind", "ref", "version", "params", "status",
             "trigger", "next_run_at", "next_run_at_iso", "last_run_id", "created_at",
             "created_at_iso", "running", "queued", "schedule", "paused"}  # fmt: skip


# -- the same tests, local and remote ---------------------------------------------------
def test_build_list_show(cli: Cli) -> None:
    out = cli.ok("jobs", "build", "jobflow.py:Total", "-p", "n=7")
    job_id = out.strip()
    assert job_id and len(out.splitlines()) == 1, out

    (job,) = cli.json("jobs", "list")
    assert set(job) >= _JOB_KEYS, set(job) ^ _JOB_KEYS
    assert (job["id"], job["name"], job["status"], job["trigger"]) == (
        job_id, "Total", "READY", "manual"
    )  # fmt: skip
    assert job["params"] == {"n": "7"} and job["last_run_id"] is None
    assert job["ref"].endswith("jobflow.py:Total") and job["version"].startswith("sha256:")
    assert job["created_at_iso"].endswith("+00:00")
    table = cli.ok("jobs", "list")
    row = next(line for line in table.splitlines() if job_id in line)
    assert "READY" in row and "Total" in row, table

    shown = cli.json("jobs", "show", job_id)
    assert shown["job"]["id"] == job_id and shown["runs"] == [] and shown["skipped_slots"] == []
    text = cli.ok("jobs", "show", job_id)
    assert job_id in text and "n=7" in text
    assert cli.json("runs", "list", "--job", job_id) == []


_BAD_INPUT = [
    (["jobs", "build", "jobflow.py:Totl"], "did you mean 'Total'"),
    (["jobs", "build", "jobflow.py:Total", "-p", "m=3"], "unknown parameter 'm'"),
    (["jobs", "build", "jobflow.py:Total", "-p", "n=three"], "'n' expects an integer"),
    (["jobs", "show", "jnope"], "no job 'jnope'"),
    (["jobs", "run", "jnope"], "no job 'jnope'"),
    (["jobs", "run", "jnope", "--wait"], "no job 'jnope'"),
    (["jobs", "delete", "jnope", "-y"], "no job 'jnope'"),
    (["runs", "show", "rnope"], "no run 'rnope'"),
    (["runs", "logs", "rnope"], "no run 'rnope'"),
    (["runs", "cancel", "rnope"], "no run 'rnope'"),
    (["runs", "delete", "rnope", "-y"], "no run 'rnope'"),
    (["runs", "rerun", "rnope"], "no run 'rnope'"),
    (["runs", "list", "--project", "nope"], "no project 'nope'"),
]


def test_bad_input_exits_2_with_the_message(cli: Cli) -> None:
    for args, message in _BAD_INPUT:  # one test: a project and token each would cost more
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout == "", args
    assert cli.json("jobs", "list") == []  # no job was made


def test_run_a_job_waiting_then_in_the_background(cli: Cli) -> None:
    job_id = cli.ok("jobs", "build", "jobflow.py:Total", "-p", "n=7").strip()

    waited = cli("jobs", "run", job_id, "--wait")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    first = run_id_from_summary(waited.stdout)
    assert waited.stdout.rstrip().endswith(f"run {first}: SUCCESS")
    shown = cli.json("runs", "show", first)
    assert set(shown["run"]) >= _RUN_KEYS, set(shown["run"]) ^ _RUN_KEYS
    assert (shown["run"]["status"], shown["run"]["job_id"]) == ("SUCCESS", job_id)
    assert {t["family"]: t["status"] for t in shown["tasks"]} == {
        "Numbers": "SUCCESS",
        "Total": "SUCCESS",
    }
    assert all(t["id"] and t["history"][0]["status"] == "SUCCESS" for t in shown["tasks"])
    (job,) = cli.json("jobs", "list")
    assert (job["status"], job["last_run_id"]) == ("SUCCESS", first)

    second = cli.ok("jobs", "run", job_id).strip()
    assert len(second.splitlines()) == 1 and second != first
    assert cli.wait_ended(second) == "SUCCESS"
    assert [r["id"] for r in cli.json("runs", "list", "--job", job_id)] == [second, first]
    assert [r["id"] for r in cli.json("jobs", "show", job_id)["runs"]] == [second, first]
    table = cli.ok("runs", "list")
    assert first in table and second in table
    text = cli.ok("runs", "show", second)
    assert second in text and "Numbers" in text and "SUCCESS" in text

    as_json = cli.json("jobs", "run", job_id)
    assert as_json["job_id"] == job_id and as_json["created_at_iso"].endswith("+00:00")
    assert cli.wait_ended(as_json["id"]) == "SUCCESS"

    logs = cli.ok("runs", "logs", first)  # the later runs found it all complete
    assert "making 7 numbers" in logs and "the total is 21" in logs
    assert "── " in logs and "(attempt 1) ──" in logs
    only = cli.ok("runs", "logs", first, "--task", "Total")
    assert "the total is 21" in only and "making" not in only
    assert cli.ok("runs", "logs", first, "--follow") == logs  # ended: all of it, then stop


def test_a_pipeline_file_is_built_with_its_modules_and_run(cli: Cli) -> None:
    folder = cli.cwd / "pipe"
    folder.mkdir()
    (folder / "greet.py").write_text(
        "from dagmill import processor\nprint('hello', processor.params()['who'])\n"
    )
    (folder / "pipeline.yaml").write_text(
        "processNodes:\n  greet:\n    processor: greet\n    params: {who: world}\n"
    )
    job_id = cli.ok("jobs", "build", "pipe/pipeline.yaml").strip()
    (job,) = cli.json("jobs", "list")
    assert (job["id"], job["kind"], job["name"]) == (job_id, "yaml", "pipeline")
    run_id = run_id_from_summary(cli.ok("jobs", "run", job_id, "--wait"))
    assert "hello world" in cli.ok("runs", "logs", run_id)


def test_a_failing_job_exits_1_with_its_error(cli: Cli) -> None:
    job_id = cli.ok("jobs", "build", "jobflow.py:Broken").strip()
    out = cli("jobs", "run", job_id, "--wait")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the numbers do not add up" in out.stderr
    run_id = run_id_from_summary(out.stdout)
    assert out.stdout.rstrip().endswith(f"run {run_id}: FAILED")
    assert "the numbers do not add up" in (cli.json("runs", "show", run_id)["run"]["error"] or "")
    (job,) = cli.json("jobs", "list")
    assert (job["status"], job["last_run_id"]) == ("FAILED", run_id)

    result = json.loads(cli("jobs", "run", job_id, "--wait", "--json").stdout)
    assert result["status"] == "FAILED"
    assert {t["family"]: t["status"] for t in result["tasks"]} == {
        "Numbers": "SKIPPED",  # complete since the first run
        "Broken": "FAILED",
    }


def test_cancel_then_delete_a_running_run(cli: Cli) -> None:
    job_id = cli.ok("jobs", "build", "jobflow.py:Sleepy").strip()
    run_id = cli.ok("jobs", "run", job_id).strip()
    try:
        wait_for(lambda: cli.status(run_id) == "RUNNING", 30, "the run to start", every=0.3)
        refused = cli("runs", "delete", run_id, "-y")
        assert refused.returncode == 2 and "cancel it first" in refused.stderr
        wait_for(lambda: "going to sleep" in cli.ok("runs", "logs", run_id), 30, "its output")
        streamed = cli.cwd / "follow.out"
        follower = cli.start("runs", "logs", run_id, "--follow", out=streamed)
        try:
            wait_for(lambda: "going to sleep" in streamed.read_text(), 30, "--follow to print")
            assert follower.poll() is None  # the run goes on: so does --follow

            assert f"cancelled run {run_id}" in cli.ok("runs", "cancel", run_id)
            assert cli.wait_ended(run_id, 15) == "CANCELLED"
            assert follower.wait(20) == 0, streamed.read_text()  # it ended with the run
        finally:
            follower.kill()
            follower.wait()
        assert streamed.read_text().startswith("── ")
        assert "already ended: CANCELLED" in cli.ok("runs", "cancel", run_id)

        assert f"deleted run {run_id}" in cli.ok("runs", "delete", run_id, "-y")
        gone = cli("runs", "show", run_id)
        assert gone.returncode == 2 and f"no run {run_id!r}" in gone.stderr
        assert cli.json("runs", "list", "--job", job_id) == []
    finally:
        cli("runs", "cancel", run_id)  # whatever failed above: no sleeper left behind


def test_rerun_runs_everything_again(cli: Cli) -> None:
    job_id = cli.ok("jobs", "build", "jobflow.py:Total").strip()
    first = run_id_from_summary(cli.ok("jobs", "run", job_id, "--wait"))

    out = cli("runs", "rerun", first)
    assert out.returncode == 0, out.stdout + out.stderr
    again = run_id_from_summary(out.stdout)
    assert again != first and out.stdout.rstrip().endswith(f"run {again}: SUCCESS")
    shown = cli.json("runs", "show", again)
    assert shown["run"]["job_id"] == job_id
    assert {t["family"]: (t["status"], t["attempts"]) for t in shown["tasks"]} == {
        "Numbers": ("SUCCESS", 1),
        "Total": ("SUCCESS", 1),
    }
    assert [r["id"] for r in cli.json("runs", "list", "--job", job_id)] == [again, first]
    assert cli.status(first) == "SUCCESS"


def test_delete_a_job_and_its_runs(cli: Cli) -> None:
    job_id = cli.ok("jobs", "build", "jobflow.py:Total").strip()
    keep = cli.ok("jobs", "build", "jobflow.py:Total", "-p", "n=3").strip()
    mine = run_id_from_summary(cli.ok("jobs", "run", job_id, "--wait"))
    kept = run_id_from_summary(cli.ok("jobs", "run", keep, "--wait"))

    assert f"deleted job {job_id} and 1 runs" in cli.ok("jobs", "delete", job_id, "-y")
    assert [j["id"] for j in cli.json("jobs", "list")] == [keep]
    assert cli("runs", "show", mine).returncode == 2
    assert cli.status(kept) == "SUCCESS"


def test_a_scheduled_job_next_pause_resume_backfill(cli: Cli) -> None:
    job_id = cli.ok(
        "jobs", "build", "jobflow.py:Total", "--cron", "0 2 * * *", "--timezone", "Europe/Paris"
    ).strip()
    (job,) = cli.json("jobs", "list")
    assert (job["trigger"], job["status"], job["paused"]) == ("scheduled", "PENDING", False)
    assert job["schedule"] == {"timezone": "Europe/Paris", "schedule_interval": "0 2 * * *"}
    assert job["next_run_at"] is not None

    upcoming = cli.json("jobs", "next", job_id)
    assert upcoming["timezone"] == "Europe/Paris" and len(upcoming["next"]) == 5
    assert all("T02:00:00+01:00" in x["local"] for x in upcoming["next"]), upcoming
    assert upcoming["next"][0]["fires_at"] == job["next_run_at"]
    assert "CET" in cli.ok("jobs", "next", job_id, "-n", "2")

    assert f"paused job {job_id}" in cli.ok("jobs", "pause", job_id)
    (job,) = cli.json("jobs", "list")
    assert (job["status"], job["paused"], job["next_run_at"]) == ("PAUSED", True, None)
    assert f"resumed job {job_id}; next run " in cli.ok("jobs", "resume", job_id)
    assert "is not paused: nothing to resume" in cli.ok("jobs", "resume", job_id)
    assert cli.json("jobs", "list")[0]["status"] == "PENDING"

    done = cli.json("jobs", "backfill", job_id, "--from", "2026-01-01", "--to", "2026-01-03", "-y")
    assert (done["job_id"], done["slots"], len(done["queued"]), done["already"]) == (
        job_id, 3, 3, 0
    )  # fmt: skip
    again = cli.ok("jobs", "backfill", job_id, "--from", "2026-01-01", "--to", "2026-01-03", "-y")
    assert f"queued 0 runs of job {job_id} for slots 2026-01-01 02:00 CET" in again
    assert "3 slots were already decided" in again
    queued = cli.json("runs", "list", "--job", job_id)
    assert sorted(r["id"] for r in queued) == sorted(done["queued"])
    assert {r["scheduled_for_iso"][:10] for r in queued} == {
        "2026-01-01", "2026-01-02", "2026-01-03"
    }  # fmt: skip
    bad = cli("jobs", "backfill", job_id, "--from", "2026-01-03", "--to", "2026-01-01", "-y")
    assert bad.returncode == 2 and "is before --from" in bad.stderr


# -- remote mode only -------------------------------------------------------------------
@pytest.fixture
def remote(remote_server: Remote, tmp_path: Path) -> Cli:
    (tmp_path / "jobflow.py").write_text(FLOW)
    token = remote_server.home.admin_token(f"t{uuid.uuid4().hex[:10]}")
    env = {**_base_env(tmp_path / "client-home", tmp_path / "no-config.toml"),
           "DAGMILL_SERVER": remote_server.url, "DAGMILL_TOKEN": token}  # fmt: skip
    return Cli("remote", tmp_path, env)


def test_a_wrong_token_exits_2_saying_so(remote: Cli) -> None:
    token_id = remote.env["DAGMILL_TOKEN"].partition(".")[0]
    for token in (f"{token_id}.wrong-secret", "dm_aaaaaaaaaaaaaaaa.x", "not-a-token"):
        remote.env["DAGMILL_TOKEN"] = token
        out = remote("runs", "list")
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"is not valid for the server {remote.env['DAGMILL_SERVER']}" in out.stderr
        assert "dagmill tokens create" in out.stderr and "Traceback" not in out.stderr


def test_a_server_that_is_down_exits_1_saying_so(remote: Cli) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["runs", "list"], ["jobs", "show", "j1"], ["tokens", "list"]):
        out = remote("--server", f"http://127.0.0.1:{port}", *args)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"the dagmill server http://127.0.0.1:{port} could not be reached" in out.stderr
        assert "is `dagmill server` running there" in out.stderr
        assert "Traceback" not in out.stderr


def test_a_server_that_is_not_dagmill_is_said_to_be_so(remote: Cli) -> None:
    import http.server
    import threading

    other = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{other.server_port}"
        for args in (["runs", "show", "r1"], ["jobs", "list"]):
            out = remote("--server", url, *args)
            assert out.returncode == 2, out.stdout + out.stderr
            assert f"{url} answered 404" in out.stderr and "is it one?" in out.stderr
    finally:
        other.shutdown()
        other.server_close()


def test_a_viewer_token_is_told_the_role_it_needs(remote_server: Remote, remote: Cli) -> None:
    remote.env["DAGMILL_TOKEN"] = remote_server.home.admin_token("default", role="viewer")
    remote.ok("runs", "list")
    out = remote("tokens", "list")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "role admin (this one is viewer)" in out.stderr


def test_server_token_and_profile_options(remote_server: Remote, remote: Cli) -> None:
    server, token = remote.env.pop("DAGMILL_SERVER"), remote.env.pop("DAGMILL_TOKEN")
    assert "no jobs" in remote.ok("--server", server, "--token", token, "jobs", "list")
    # the API root given as the server (`tokens create` prints both) works too
    assert "no jobs" in remote.ok("--server", f"{server}/api/v1/", "--token", token, "jobs", "list")

    config = remote.cwd / "config.toml"
    remote.env["DAGMILL_CONFIG"] = os.fspath(config)
    config.write_text(
        f'[default]\nserver = "{server}"\ntoken = "{token}"\n\n'
        f'[profiles.other]\nserver = "{server}"\ntoken = "dm_aaaaaaaaaaaaaaaa.x"\n'
    )
    assert remote.json("jobs", "list") == []  # [default]
    out = remote("--profile", "other", "jobs", "list")
    assert out.returncode == 2 and "is not valid for the server" in out.stderr
    out = remote("--profile", "nope", "jobs", "list")
    assert out.returncode == 2 and "no profile 'nope' (profiles: other" in out.stderr
    remote.env["DAGMILL_PROFILE"] = "other"
    assert remote("jobs", "list").returncode == 2
    # a variable overrides the profile's key
    assert remote.json("--token", token, "jobs", "list") == []


def test_tokens_over_the_api(remote_server: Remote, remote: Cli) -> None:
    me = remote.json("tokens", "list")
    project = me[0]["project"]
    made = remote.json("tokens", "create", "--role", "viewer", "--name", "ci", "--expires", "7d")
    assert made["project"] == project and made["role"] == "viewer"
    assert made["bearer"] == f"{made['id']}.{made['secret']}"
    text = remote.ok("tokens", "create", "--role", "operator", "--name", "cron")
    assert f"export DAGMILL_SERVER={remote.env['DAGMILL_SERVER']}" in text
    listed = remote.json("tokens", "list")
    assert made["id"] in {t["id"] for t in listed} and all(t["project"] == project for t in listed)
    assert remote.json("tokens", "show", made["id"])["name"] == "ci"

    other = remote("tokens", "create", "--project", "default", "--role", "viewer", "--name", "x")
    assert other.returncode == 2 and f"belongs to project {project!r}" in other.stderr

    # the new token works until revoked
    viewer = Cli("remote", remote.cwd, {**remote.env, "DAGMILL_TOKEN": made["bearer"]})
    assert viewer.json("runs", "list") == []
    assert f"revoked token {made['id']}" in remote.ok("tokens", "revoke", made["id"])
    assert viewer("runs", "list").returncode == 2
    assert made["id"] not in {t["id"] for t in remote.json("tokens", "list")}


def test_projects_over_the_api(remote: Cli) -> None:
    (mine,) = remote.json("projects", "list")
    name = mine["name"]
    assert remote.json("projects", "show", name)["name"] == name
    changed = remote.json("projects", "set", name, "--cpu", "2", "--memory", "1Gi")
    assert changed["quota"] == {"cpu": "2", "memory": "1Gi"}
    for args in (["create", "x"], ["delete", name, "-y"]):
        out = remote("projects", *args)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "needs local admin access on the server" in out.stderr


def test_the_python_query_api_returns_run_records(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagmill.runs
    from dagmill.model.runs import RunInfo, RunTaskInfo

    job_id = remote.ok("jobs", "build", "jobflow.py:Total").strip()
    run_id = run_id_from_summary(remote.ok("jobs", "run", job_id, "--wait"))
    for name in ("DAGMILL_SERVER", "DAGMILL_TOKEN"):
        monkeypatch.setenv(name, remote.env[name])
    runs = dagmill.runs.get_runs(limit=5)
    assert [type(r) for r in runs] == [RunInfo] and runs[0].id == run_id
    assert runs[0].status == "SUCCESS" and runs[0].job_id == job_id
    assert runs[0].target is not None and runs[0].target.ref.endswith("jobflow.py:Total")
    tasks = dagmill.runs.get_run_tasks(run_id)
    assert all(isinstance(t, RunTaskInfo) for t in tasks)
    by_family = {t.family: t for t in tasks}
    assert sorted(by_family) == ["Numbers", "Total"]
    assert by_family["Total"].upstream == (by_family["Numbers"].task_id,)
    assert by_family["Total"].history[0].status == "SUCCESS"
    assert "the total is 10" in dagmill.runs.get_run_logs(run_id)
    assert dagmill.runs.get_run(run_id) == runs[0]


# -- the JSON the objects travel as, read back ------------------------------------------
def test_from_json_inverts_to_json() -> None:
    from dagmill.logs import LogChunk
    from dagmill.model.projects import Lease, LeaseWait, ProjectInfo, ProjectUsage, Quota
    from dagmill.model.resources import Resources
    from dagmill.model.runs import JobInfo, RunInfo, RunTarget, RunTaskInfo, TaskAttempt
    from dagmill.model.schedules import JobPolicy, ScheduleSpec, SlotInfo
    from dagmill.model.tokens import TokenInfo
    from dagmill.services.jobs import JobView
    from dagmill.services.projects import ProjectView
    from dagmill.services.wire import (
        from_json,
        job_view_from_json,
        job_view_json,
        project_from_json,
        project_json,
        to_json,
    )

    def back(value: Any) -> Any:
        return from_json(type(value), json.loads(json.dumps(to_json(value))))

    job = JobInfo(
        "j1", "Train", "ml", "python", "flows.py:Train", "sha256:1", {"lr": "0.1"}, "/data",
        1.5, "SUCCESS", "r1", {"secondsAfterSuccess": None}, ScheduleSpec(cron="0 2 * * *",
        timezone="Europe/Paris", start_date="2026-01-01"), JobPolicy("queue", "all", "day"),
        True, 7.0, {"Train": Resources(1500, 2**30, 1)},
    )  # fmt: skip
    run = RunInfo(
        "r1", "Train", "FAILED", 1.0, 2.0, 3.5, "j1", "ml", "host:1", "boom", {"FAILED": 1},
        {"workers": 2}, RunTarget("python", "flows.py:Train", {"lr": "0.1"}, "/d", "2026-01-01"),
        2.5, 4.0, "s1",
    )  # fmt: skip
    task = RunTaskInfo(
        "Train_abc", "Train", {"lr": "0.1"}, ("Prep_def",), "PENDING", "missing output",
        "FAILED", 2, {"cpu": "1"}, "fp", (TaskAttempt(1, "FAILED", 1.0, 2.0, None, "x",
        "f.py:3", "Traceback", "/log", 0, 10, 0.5), TaskAttempt(2, "RUNNING", 3.0)),
    )  # fmt: skip
    token = TokenInfo("dm_a", "ml", "admin", "ci", 1.0, 2.0, None, 1.5)
    slot = SlotInfo("j1", 1.0, "skipped", None, "busy", 2.0)
    for value in (job, run, task, token, slot, LogChunk("t", 1, "hi\n")):
        assert back(value) == value, value

    view = JobView(job, "PAUSED", "scheduled", None, "r1", 1, 2)
    assert job_view_from_json(json.loads(json.dumps(job_view_json(view)))) == JobView(
        dataclasses.replace(job, status="PAUSED"), "PAUSED", "scheduled", None, "r1", 1, 2
    )
    usage = ProjectUsage(
        ProjectInfo("ml", Quota(4000, 2**34, None), 1.0, "team", 2.0),
        Quota(4000, 2**34, 2),
        Resources(1000, 2**30, 0),
        [Lease("ml", "r1", "t1", 1, Resources(1000, 2**30), "h:1", 5.0, 6.0, "s1", "Train")],
        [LeaseWait("ml", "r2", "t2", 1, Resources(8000), "h:2", 5.0, "cpu 4 of 4", 6.0, None, "X")],
    )
    project = ProjectView(usage, 3, 2)
    assert project_from_json(json.loads(json.dumps(project_json(project)))) == project
