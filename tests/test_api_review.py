"""What a stranger trying the API and the remote CLI ran into (issue 10's review), each
checked where a user meets it: a server URL without its scheme, a bundle over the
server's --max-upload, the log line a request's odd path writes, and what an empty
`runs list` tells to do.

One server for the module (SQLite, --max-upload 1 MiB, plain log lines, its own
DAGMILL_HOME); the CLI
runs as a client from another, empty home.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.model.schedules import ScheduleSpec
from dagmill.scheduler.triggers import ScheduleError, make_trigger, parse_period
from dagmill.server.log import ServerLog
from helpers import wait_for
from servers import ServerHome, ServerProcess

PIPELINE = """\
dataNodes:
  out: {source: out.txt}
processNodes:
  make:
    output: [out]
    processor: make
"""
MODULE = """\
from dagmill import processor

processor.save("out", "done")
"""


@dataclass
class Remote:
    server: ServerProcess
    url: str  # the server's root (http://127.0.0.1:PORT)
    token: str  # an admin's of project default
    other: str  # an admin's of project other
    root: Path  # a folder of the client's, outside the server's home

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DAGMILL_DATABASE_URL", "DAGMILL_PROFILE", "DAGMILL_HOME")
        }
        return {
            **env,
            "NO_COLOR": "1",
            "DAGMILL_HOME": str(self.root / "client-home"),
            "DAGMILL_CONFIG": str(self.root / "no-config.toml"),
            "DAGMILL_SERVER": self.url,
            "DAGMILL_TOKEN": self.token,
            **extra,
        }

    def dagmill(
        self, *args: str, cwd: Path | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagmill.cli.main", *args],
            cwd=cwd or self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root = tmp_path_factory.mktemp("review")
    project = ServerHome(root / "server", f"sqlite:///{root}/server/.dagmill/dagmill.db")
    project.root.mkdir()
    made = project.dagmill("tokens", "create", "--role", "admin", "--name", "t", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["bearer"]
    assert project.dagmill("projects", "create", "other").returncode == 0
    made = project.dagmill(
        "tokens", "create", "--project", "other", "--role", "admin", "--name", "o", "--json"
    )
    assert made.returncode == 0, made.stderr
    other = json.loads(made.stdout)["bearer"]
    server = project.server("--max-upload", "1")  # plain log lines: what a NUL could break
    found = re.search(r"api_listening url=(\S+)", server.log())
    assert found is not None, server.log()
    url = found.group(1)
    client = root / "client"
    client.mkdir()
    try:
        yield Remote(server, url.removesuffix("/api/v1"), token, other, client)
    finally:
        project.cleanup()


def test_the_server_log_quotes_control_characters_of_a_request() -> None:
    out = io.StringIO()
    log = ServerLog(stream=out)
    log("request", path="/api/v1/runs/a\x00b\x1b[31mred\rfake", status=404, ok="plain")
    line = out.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n")
    assert not any(c in line[:-1] for c in "\x00\x1b\r")
    assert 'path="/api/v1/runs/a\\u0000b\\u001b[31mred\\rfake"' in line
    assert "status=404 ok=plain" in line  # plain values stay bare


def test_a_request_path_with_a_nul_is_logged_escaped(remote: Remote) -> None:
    got = httpx.get(f"{remote.url}/api/v1/runs/abc%00def")
    assert got.status_code == 401  # no token: refused before anything else
    line = b'path="/api/v1/runs/abc\\u0000def"'  # the access log is written after the reply
    wait_for(lambda: line in remote.server.log_path.read_bytes(), 10, "the request's log line")
    assert b"\x00" not in remote.server.log_path.read_bytes()


def test_a_server_url_without_its_scheme_is_bad_input(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGMILL_SERVER", "127.0.0.1:8080")
    monkeypatch.setenv("DAGMILL_TOKEN", "dm_x.y")
    with pytest.raises(
        DefinitionError, match=r"give it with its scheme, e\.g\. http://127\.0\.0\.1:8080"
    ):
        settings.remote()
    host = remote.url.removeprefix("http://")
    done = remote.dagmill("--server", host, "runs", "list")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"e.g. http://{host}" in done.stderr
    assert "could not be reached" not in done.stderr and "Traceback" not in done.stderr


def test_a_bundle_over_the_servers_limit_says_what_to_do(remote: Remote) -> None:
    folder = remote.root / "big"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(PIPELINE)
    noise = "".join(random.choices(string.ascii_letters, k=2_000_000))  # does not compress
    (folder / "make.py").write_text(MODULE + f"BLOB = {noise!r}\n")
    done = remote.dagmill("jobs", "build", "pipeline.yaml", cwd=folder)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "over 1 MiB" in done.stderr and "--max-upload" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_runs_list_says_what_to_do_remotely(remote: Remote) -> None:
    done = remote.dagmill("runs", "list")
    assert done.returncode == 0, done.stderr
    assert "dagmill jobs run JOB" in done.stdout and "dagmill run MODULE" not in done.stdout
    done = remote.dagmill("runs", "list", "--status", "failed")
    assert done.returncode == 0, done.stderr
    assert "no runs match --status FAILED" in done.stdout


def _api(remote: Remote, bearer: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{remote.url}/api/v1", headers={"Authorization": f"Bearer {bearer}"}
    )


def test_a_token_expiring_too_far_off_is_refused_and_the_list_stays_readable(
    remote: Remote,
) -> None:
    with _api(remote, remote.token) as api:
        made = api.post("/tokens", json={"name": "far", "role": "viewer", "expires_at": 1e300})
        assert made.status_code == 400, made.text
        assert "within 100 years" in made.json()["message"]
        listed = api.get("/tokens")
        assert listed.status_code == 200, listed.text
        assert "far" not in [t["name"] for t in listed.json()["items"]]


def test_another_projects_token_is_not_found_and_stays_usable(remote: Remote) -> None:
    other_id = remote.other.partition(".")[0]
    with _api(remote, remote.token) as api:
        for path in (f"/tokens/{other_id}", "/tokens/dm_aaaaaaaaaaaaaaaa", "/tokens/a%00b"):
            got = api.get(path)
            assert got.status_code == 404, (path, got.text)
            assert got.json()["error"] == "not_found" and "dagmill tokens" not in got.text
        gone = api.delete(f"/tokens/{other_id}")
        assert gone.status_code == 404, gone.text
    with _api(remote, remote.other) as api:
        assert api.get("/token").status_code == 200  # not revoked by project default's admin


def test_a_period_past_100_years_is_refused_and_slots_past_year_9999_are_none() -> None:
    with pytest.raises(ScheduleError, match="over 100 years"):
        parse_period("99999999999999d")
    assert parse_period("36500d").days == 36500
    late = make_trigger(ScheduleSpec(cron="0 * * * *", start_date="9999-12-31 23:00"))
    last = late.next_after(time.time())
    assert last is not None and late.next_after(last) is None  # not an OverflowError
    assert list(late.slots(last, last + 86400 * 10)) == []


def test_a_job_scheduled_into_the_far_future_does_not_bring_the_server_down(
    remote: Remote,
) -> None:
    folder = remote.root / "far"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(PIPELINE)
    (folder / "make.py").write_text(MODULE)
    build = ("jobs", "build", "pipeline.yaml", "--start", "9999-12-31 23:00")
    huge = remote.dagmill(*build, "--every", "99999999999999d", "--name", "huge", cwd=folder)
    assert huge.returncode == 2, huge.stdout + huge.stderr
    assert "over 100 years" in huge.stderr and "Traceback" not in huge.stderr
    late = remote.dagmill(*build, "--cron", "0 * * * *", "--name", "late", cwd=folder)
    assert late.returncode == 0, late.stdout + late.stderr
    # a run started after the build: the server's loop reloaded its jobs (the late one
    # too) before it started it, and went on
    manual = remote.dagmill("jobs", "build", "pipeline.yaml", "--name", "now", cwd=folder)
    assert manual.returncode == 0, manual.stdout + manual.stderr
    ran = remote.dagmill("jobs", "run", manual.stdout.split()[-1], "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr + remote.server.log()[-5000:]
    assert remote.server.proc.poll() is None
    listed = remote.dagmill("jobs", "list")
    assert listed.returncode == 0 and "late" in listed.stdout, listed.stdout + listed.stderr


def test_the_cli_says_no_such_token_as_it_does_locally(remote: Remote) -> None:
    other_id = remote.other.partition(".")[0]
    for command in ("show", "revoke"):
        done = remote.dagmill("tokens", command, other_id)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no token '{other_id}': see `dagmill tokens list`" in done.stderr


def test_a_remote_build_says_where_the_jobs_data_folder_is(remote: Remote) -> None:
    folder = remote.root / "where"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(PIPELINE)
    (folder / "make.py").write_text(MODULE)
    done = remote.dagmill("jobs", "build", "pipeline.yaml", "--data", "data", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().startswith("j")  # the id alone on stdout, for scripts
    said = done.stderr
    assert "its data folder is there:" in said and os.sep + "data" + os.sep in said
    assert str(folder) not in said  # not the local folder


# -- the guard around every request, in process ---------------------------------------------
def _asgi_client(max_body: int = 2**20):  # type: ignore[no-untyped-def]
    import httpx

    from dagmill.api.app import ApiOptions, create_app

    events: list[tuple[str, dict]] = []
    app = create_app(ApiOptions(max_body_bytes=max_body), lambda e, **f: events.append((e, f)))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug inside")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t"), events


def test_a_chunked_body_over_the_limit_is_413_and_a_bug_is_a_bare_500_logged_once() -> None:
    import asyncio

    async def main() -> None:
        client, events = _asgi_client(max_body=2**20)
        async with client:

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(3):
                    yield b"x" * 2**20

            r = await client.post("/api/v1/jobs/j1/run", content=chunks())
            assert r.status_code == 413, r.text
            assert r.json()["error"] == "too_large" and "1 MiB" in r.json()["message"]
            assert r.headers["x-request-id"] == r.json()["request_id"]

            r = await client.get("/boom")
            assert r.status_code == 500
            body = r.json()
            assert body["message"] == f"internal error (request id {body['request_id']})"
            assert "a bug inside" not in r.text and "Traceback" not in r.text
            assert int(r.headers["content-length"]) == len(r.content)

            r = await client.post(
                "/api/v1/jobs/j1/run",
                content=b"{nope",
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422
            assert r.json()["field"] == "body" and "not valid JSON" in r.json()["message"]
        statuses = [f["status"] for e, f in events if e == "request"]
        assert statuses == [413, 500, 422]
        failed = [f for e, f in events if e == "request_failed"]
        assert len(failed) == 1 and "a bug inside" in failed[0]["error"]

    asyncio.run(main())
