"""Who may do what through the API: every route x {no token, bad token, another project's
token, viewer, operator, admin}, on one ``dagmill server`` subprocess per store backend
(SQLite, PostgreSQL) for the module.

Project ``alpha`` has a job and runs, and tokens of each role; project ``beta`` has its own
job and run and an admin token. A route added to the app without a line in ``EXPECT``
fails ``test_every_route_has_an_expectation``. Also here: the issue's ``requests_aws4auth``
client snippet, run verbatim; tokens that are wrong, expired, revoked or of another
project; a stale SigV4 date; the slow-down of repeated failures; and what a 401 says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagmill.model.tokens import NewToken
from helpers import wait_for
from servers import ServerHome

SECRET_KEY = "k" * 40  # the server's key (DAGMILL_SECRET_KEY): tokens made here work there
A, B = "alpha", "beta"
PIPELINE = """\
processNodes:
  hello:
    processor: hello
"""
HELLO = "from dagmill import processor\n\nprocessor.params()\nprint('hello from alpha')\n"
PRINCIPALS = ("none", "bad", "other", "viewer", "operator", "admin")
ROLES = ("viewer", "operator", "admin")


# -- the module's server and objects ------------------------------------------------------------


@dataclass
class World:
    """The server, its API root, and what each project holds."""

    project: ServerHome
    root: str  # the API root: http://127.0.0.1:PORT/api/v1
    job: dict[str, str]  # project -> a manual job
    scheduled: str  # a scheduled job of alpha (slots, backfill)
    run: dict[str, str]  # project -> an ended run of its job
    tokens: dict[str, NewToken] = field(default_factory=dict)  # principal -> token
    pipeline: Path = Path()

    @contextmanager
    def services(self) -> Iterator[None]:
        """dagmill's services on the server's store and key (tokens made in-process)."""
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in self.project.env().items() if k.startswith("DAGMILL")})
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def token(self, project: str, role: str, expires_at: float | None = None) -> NewToken:
        from dagmill.services.tokens import create_token

        with self.services():
            return create_token(project, role, f"{role}-{time.monotonic_ns()}", expires_at)

    def revoke(self, token_id: str) -> None:
        from dagmill.services.tokens import revoke_token

        with self.services():
            revoke_token(token_id)

    def new_job(self, project: str = A, *args: str) -> str:
        built = self.project.dagmill(
            "jobs", "build", str(self.pipeline), "--project", project, *args
        )
        assert built.returncode == 0, built.stdout + built.stderr
        return built.stdout.split()[-1]

    def ended_run(self, job_id: str) -> str:
        """A run of the job, run here to its end (SUCCESS)."""
        ran = self.project.dagmill("jobs", "run", job_id, "--wait", "--json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        with self.project.store() as s:
            found = s.list_runs(job_id=job_id, limit=1)
        assert found and found[0].status == "SUCCESS", found
        return found[0].id


_clients = iter(range(1, 10**6))


def client_address() -> str:
    """A client address of its own for a request (X-Forwarded-For, which the server takes
    from a proxy on loopback): the matrix's many expected 401s are not slowed down as
    repeated failures of one client are."""
    n = next(_clients)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    from conftest import fresh_postgres_database

    root = tmp_path_factory.mktemp("api-auth")
    if request.param == "sqlite":
        url = f"sqlite:///{root}/.dagmill/dagmill.db"
    else:
        url = fresh_postgres_database(request)
    project = ServerHome(root, url, secret_key=SECRET_KEY)
    try:
        for name in (A, B):
            made = project.dagmill("projects", "create", name, "-q")
            assert made.returncode == 0, made.stderr
        pipeline = project.pipeline("hello", PIPELINE, {"hello": HELLO})
        w = World(project, "", {}, "", {}, pipeline=pipeline)
        for name in (A, B):
            w.job[name] = w.new_job(name)
            w.run[name] = w.ended_run(w.job[name])
        w.scheduled = w.new_job(A, "--every", "1d", "--start", "2020-01-01", "--catchup", "none")
        for role in ROLES:
            w.tokens[role] = w.token(A, role)
        w.tokens["other"] = w.token(B, "admin")
        server = project.server("--log-json", "--max-runs", "2", "--grace", "5")
        w.root = next(e["url"] for e in server.events() if e.get("event") == "api_listening")
        yield w
    finally:
        project.cleanup()


def call(
    w: World,
    principal: str,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    files: Any = None,
    data: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = {"X-Forwarded-For": client_address()}
    if principal == "bad":  # a real token id, a wrong secret
        headers["Authorization"] = f"Bearer {w.tokens['admin'].info.id}.{'x' * 43}"
    elif principal != "none":
        headers["Authorization"] = f"Bearer {w.tokens[principal].bearer}"
    return httpx.request(
        method,
        w.root + path,
        headers=headers,
        json=json_body,
        files=files,
        data=data,
        params=params,
        timeout=30,
    )


# -- the expectations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """Who may call a route: the least role, and what a token of the other project gets
    (404: the path names an object of alpha; 2: it answers about its own project)."""

    role: str
    other: int  # 404, or 2 for any 2xx
    path: Callable[[World], list[str]] = lambda w: []  # values of the path's {params}
    fresh: Callable[[World], list[str]] | None = None  # the values for a call that succeeds
    body: Callable[[World], dict[str, Any]] = lambda w: {}  # httpx keyword arguments


def _bundle(w: World) -> dict[str, Any]:
    from dagmill.services.bundles import pack

    bundle = pack(str(w.pipeline))
    spec = json.dumps({"target": bundle.ref, "name": f"uploaded-{time.monotonic_ns()}"})
    return {"files": {"bundle": ("b.tar.gz", bundle.content)}, "data": {"spec": spec}}


def _finished_run_of_new_job(w: World) -> list[str]:
    return [w.ended_run(w.new_job(A))]


# (method, path under the API root with each {param} written {}) -> who may call it
EXPECT: dict[tuple[str, str], Expect] = {
    ("GET", "/projects"): Expect("viewer", 2),
    ("GET", "/projects/{}"): Expect("viewer", 404, lambda w: [A]),
    ("PATCH", "/projects/{}"): Expect(
        "admin", 404, lambda w: [A], body=lambda w: {"json_body": {"description": "matrix"}}
    ),
    ("GET", "/jobs"): Expect("viewer", 2),
    ("POST", "/jobs"): Expect("admin", 2, body=_bundle),
    ("GET", "/jobs/{}"): Expect("viewer", 404, lambda w: [w.job[A]]),
    ("POST", "/jobs/{}/pause"): Expect("operator", 404, lambda w: [w.scheduled]),
    ("POST", "/jobs/{}/resume"): Expect("operator", 404, lambda w: [w.scheduled]),
    ("GET", "/jobs/{}/slots"): Expect("viewer", 404, lambda w: [w.scheduled]),
    ("GET", "/jobs/{}/skipped"): Expect("viewer", 404, lambda w: [w.scheduled]),
    ("POST", "/jobs/{}/backfill"): Expect(
        "operator",
        404,
        lambda w: [w.scheduled],
        body=lambda w: {"json_body": {"start": "2020-01-01", "end": "2020-01-01"}},
    ),
    ("DELETE", "/jobs/{}"): Expect(
        "admin", 404, lambda w: [w.job[A]], fresh=lambda w: [w.new_job(A)]
    ),
    ("POST", "/jobs/{}/run"): Expect("operator", 404, lambda w: [w.job[A]]),
    ("GET", "/runs"): Expect("viewer", 2),
    ("GET", "/runs/{}"): Expect("viewer", 404, lambda w: [w.run[A]]),
    ("POST", "/runs/{}/cancel"): Expect("operator", 404, lambda w: [w.run[A]]),
    ("POST", "/runs/{}/rerun"): Expect("operator", 404, lambda w: [w.run[A]]),
    ("DELETE", "/runs/{}"): Expect(
        "admin", 404, lambda w: [w.run[A]], fresh=_finished_run_of_new_job
    ),
    ("GET", "/runs/{}/logs"): Expect("viewer", 404, lambda w: [w.run[A]]),
    ("GET", "/token"): Expect("viewer", 2),
    ("GET", "/tokens"): Expect("admin", 2),
    ("POST", "/tokens"): Expect(
        "admin", 2, body=lambda w: {"json_body": {"name": "made", "role": "viewer"}}
    ),
    ("GET", "/tokens/{}"): Expect("admin", 404, lambda w: [w.tokens["viewer"].info.id]),
    ("DELETE", "/tokens/{}"): Expect(
        "admin",
        404,
        lambda w: [w.tokens["viewer"].info.id],
        fresh=lambda w: [w.token(A, "viewer").info.id],
    ),
}


def _template(path: str) -> str:
    out, depth = [], 0
    for ch in path:
        if ch == "{":
            depth += 1
            out.append("{}")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def app_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route of the app under the API root."""
    from dagmill.api.app import API_ROOT, create_app

    found: set[tuple[str, str]] = set()

    def visit(routes: Any) -> None:
        for r in routes:
            if hasattr(r, "effective_route_contexts"):  # FastAPI >= 0.165: included routers
                visit(r.effective_route_contexts())
            elif getattr(r, "path", "").startswith(API_ROOT + "/"):
                for m in r.methods or ():
                    if m != "HEAD":
                        found.add((m, _template(r.path[len(API_ROOT) :])))

    visit(create_app().routes)
    return found


def expected_class(e: Expect, principal: str) -> int:
    if principal in ("none", "bad"):
        return 401
    if principal == "other":
        return e.other
    return 2 if ROLES.index(principal) >= ROLES.index(e.role) else 403


def test_every_route_has_an_expectation() -> None:
    routes = app_routes()
    assert len(routes) >= 20, routes
    missing = sorted(routes - EXPECT.keys())
    assert not missing, f"routes without a line in EXPECT (who may call them?): {missing}"
    gone = sorted(EXPECT.keys() - routes)
    assert not gone, f"EXPECT lines for routes the app no longer has: {gone}"


@pytest.mark.parametrize("route", sorted(EXPECT), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorization_matrix(world: World, route: tuple[str, str]) -> None:
    method, template = route
    e = EXPECT[route]
    wrong = []
    for principal in PRINCIPALS:
        want = expected_class(e, principal)
        values = e.path(world)
        if want == 2 and e.fresh is not None:
            values = e.fresh(world)  # a call that succeeds consumes its object
        path = template.format(*values)
        got = call(world, principal, method, path, **e.body(world))
        ok = got.status_code // 100 == 2 if want == 2 else got.status_code == want
        if not ok:
            wrong.append(f"{principal}: {got.status_code} (expected {want}xx) {got.text[:300]}")
        if got.status_code == 401:
            assert set(got.json()) == {"error", "message", "field", "request_id"}
            assert (got.json()["error"], got.json()["message"]) == ("unauthorized",) * 2
    assert not wrong, f"{method} {template}:\n" + "\n".join(wrong)


# -- nothing of beta is seen from alpha ------------------------------------------------------------
def test_nothing_of_another_project_is_visible(world: World) -> None:
    beta = {world.job[B], world.run[B], world.tokens["other"].info.id, B}
    seen: list[str] = []
    for path in ("/projects", f"/projects/{A}", "/jobs", "/runs", "/tokens", "/token"):
        got = call(world, "admin", "GET", path)
        assert got.status_code == 200, got.text
        seen.append(got.text)
    for path in (f"/runs/{world.run[A]}", f"/runs/{world.run[A]}/logs"):
        seen.append(call(world, "admin", "GET", path).text)
    leaked = [x for x in beta if any(x in text for text in seen)]
    assert not leaked, f"alpha's token sees beta's {leaked}"
    runs = call(world, "admin", "GET", "/runs", params={"limit": 500}).json()["items"]
    assert runs and {r["project"] for r in runs} == {A}
    # beta's objects, even by a prefix of their id, are "no such object"
    for path in (
        f"/runs/{world.run[B]}",
        f"/runs/{world.run[B]}/logs",
        f"/runs/{world.run[B][:6]}",
        f"/jobs/{world.job[B]}",
        f"/projects/{B}",
        f"/tokens/{world.tokens['other'].info.id}",
    ):
        got = call(world, "admin", "GET", path)
        assert got.status_code == 404, (path, got.text)
        assert B not in got.json()["message"] or path.endswith(f"/projects/{B}"), got.text
    # counts: alpha's project shows alpha's jobs only
    project = call(world, "admin", "GET", f"/projects/{A}").json()
    with world.project.store() as s:
        alpha_jobs = s.list_jobs(limit=1000, project=A)
    assert project["jobs"] == len(alpha_jobs), project


def test_logs_of_a_run_are_its_project_s_only(world: World) -> None:
    got = call(world, "viewer", "GET", f"/runs/{world.run[A]}/logs")
    assert got.status_code == 200 and "hello from alpha" in got.text, got.text
    followed = call(world, "viewer", "GET", f"/runs/{world.run[A]}/logs", params={"follow": "true"})
    assert followed.status_code == 200 and "event: end" in followed.text, followed.text
    assert call(world, "admin", "GET", f"/runs/{world.run[B]}/logs").status_code == 404
    assert call(world, "other", "GET", f"/runs/{world.run[A]}/logs").status_code == 404


# -- the documented client -----------------------------------------------------------------------
SNIPPET = """\
from requests_aws4auth import AWS4Auth
import requests
path = "https://api.example.com"          # the server's API root
awsauth = AWS4Auth(tokenId, secretKey, "", "s3")
rJobRun = requests.post(path + "/jobs/" + jobId + "/run", auth=awsauth)
print(rJobRun.json())
"""


def run_snippet(
    w: World, token_id: str, secret: str, job_id: str
) -> subprocess.CompletedProcess[str]:
    """The issue's snippet as given, with only its path, tokenId, secretKey and jobId
    filled in, in a Python process of its own."""
    code = SNIPPET.replace('"https://api.example.com"', repr(w.root))
    assert code != SNIPPET
    filled = f"tokenId = {token_id!r}\nsecretKey = {secret!r}\njobId = {job_id!r}\n" + code
    return subprocess.run(
        [sys.executable, "-c", filled], capture_output=True, text=True, timeout=60
    )


def test_the_documented_client_runs_a_job(world: World) -> None:
    token = world.tokens["operator"]
    done = run_snippet(world, token.info.id, token.secret, world.job[A])
    assert done.returncode == 0, done.stderr
    import ast

    printed = ast.literal_eval(done.stdout.strip())  # print() of a dict
    assert printed["job_id"] == world.job[A] and printed["project"] == A, printed
    run_id = printed["id"]

    def ended() -> str | None:
        got = call(world, "viewer", "GET", f"/runs/{run_id}").json()["run"]["status"]
        return got if got in ("SUCCESS", "FAILED", "CANCELLED") else None

    assert wait_for(ended, 60, f"run {run_id} to end") == "SUCCESS"


@pytest.mark.parametrize("which", ["wrong secret", "expired", "revoked", "other project"])
def test_the_documented_client_is_refused(world: World, which: str) -> None:
    token = world.tokens["operator"]
    token_id, secret = token.info.id, token.secret
    if which == "wrong secret":
        secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    elif which == "expired":
        made = world.token(A, "operator", expires_at=time.time() + 1.0)
        wait_for(lambda: time.time() > (made.info.expires_at or 0) + 0.05, 5, "expiry")
        token_id, secret = made.info.id, made.secret
    elif which == "revoked":
        made = world.token(A, "operator")
        first = run_snippet(world, made.info.id, made.secret, world.job[A])
        assert first.returncode == 0 and "'id': " in first.stdout, first.stdout + first.stderr
        world.revoke(made.info.id)
        token_id, secret = made.info.id, made.secret
    else:
        token_id, secret = world.tokens["other"].info.id, world.tokens["other"].secret
    done = run_snippet(world, token_id, secret, world.job[A])
    assert done.returncode == 0, done.stderr
    import ast

    printed = ast.literal_eval(done.stdout.strip())
    expected = "not_found" if which == "other project" else "unauthorized"
    assert printed["error"] == expected, printed
    if expected == "unauthorized":
        assert printed["message"] == "unauthorized" and printed["field"] is None, printed


def test_bearer_revoked_between_two_requests(world: World) -> None:
    made = world.token(A, "viewer")
    headers = {"Authorization": f"Bearer {made.bearer}"}
    assert httpx.get(world.root + "/runs", headers=headers).status_code == 200
    world.revoke(made.info.id)
    assert httpx.get(world.root + "/runs", headers=headers).status_code == 401


def test_a_signature_dated_six_minutes_ago_is_refused(world: World) -> None:
    import datetime as dt

    import requests
    from requests_aws4auth import AWS4Auth

    token = world.tokens["viewer"]
    url = world.root + "/runs"
    fresh = requests.get(url, auth=AWS4Auth(token.info.id, token.secret, "", "s3"), timeout=30)
    assert fresh.status_code == 200, fresh.text
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    prepared = requests.Request("GET", url).prepare()
    prepared.headers["x-amz-date"] = at.strftime("%Y%m%dT%H%M%SZ")
    auth = AWS4Auth(token.info.id, token.secret, "", "s3", date=at.strftime("%Y%m%d"))
    signed = auth(prepared)
    assert signed.headers["x-amz-date"] == at.strftime("%Y%m%dT%H%M%SZ")
    with requests.Session() as s:
        stale = s.send(signed, timeout=30)
    assert stale.status_code == 401
    assert (stale.json()["error"], stale.json()["message"]) == ("unauthorized", "unauthorized")


def test_every_failure_says_the_same(world: World) -> None:
    """A 401 tells nothing about why: no token, a malformed one, an unknown id, a wrong
    secret, a revoked or expired token all get the same body."""
    revoked = world.token(A, "viewer")
    world.revoke(revoked.info.id)
    values = [
        None,
        "Bearer",
        "Bearer nonsense",
        "Bearer dm_aaaaaaaaaaaaaaaa." + "x" * 43,
        f"Bearer {world.tokens['admin'].info.id}.{'x' * 43}",
        f"Bearer {revoked.bearer}",
        "Basic YWRtaW46YWRtaW4=",
        "AWS4-HMAC-SHA256 Credential=dm_aaaaaaaaaaaaaaaa/20260101//s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    ]
    bodies = set()
    for value in values:
        headers = {"X-Forwarded-For": client_address()}
        if value is not None:
            headers["Authorization"] = value
        got = httpx.get(world.root + "/runs", headers=headers)
        assert got.status_code == 401, (value, got.text)
        body = got.json()
        assert body["request_id"] == got.headers["x-request-id"]
        bodies.add(json.dumps({k: v for k, v in body.items() if k != "request_id"}))
    same = {"error": "unauthorized", "message": "unauthorized", "field": None}
    assert bodies == {json.dumps(same)}


def test_repeated_failures_from_one_client_are_slowed_down(world: World) -> None:
    headers = {
        "X-Forwarded-For": "10.250.0.1",  # one client, failing again and again
        "Authorization": f"Bearer {world.tokens['admin'].info.id}.{'y' * 43}",
    }
    took = []
    with httpx.Client(timeout=60) as client:
        for _ in range(8):
            t0 = time.perf_counter()
            assert client.get(world.root + "/runs", headers=headers).status_code == 401
            took.append(time.perf_counter() - t0)
        # another client is not slowed down by this one
        other = {**headers, "X-Forwarded-For": "10.250.0.2"}
        t0 = time.perf_counter()
        assert client.get(world.root + "/runs", headers=other).status_code == 401
        other_took = time.perf_counter() - t0
    assert took[-1] > took[0], took
    assert took[-1] >= 0.1, took  # the server waited on purpose (a deliberate delay)
    assert other_took < took[-1], (other_took, took)
