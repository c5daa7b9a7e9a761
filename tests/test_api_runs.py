"""The ``runs``, ``logs`` and ``projects`` resources of the API, against a real ``dagmill
server`` subprocess (one per module and database backend): lists with filters and cursor
pages, a run with its tasks, logs whole and followed as Server-Sent Events, cancel,
rerun (queued, run by the server), delete, and a project's quota; and that a token of
one project sees nothing of another's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import fresh_postgres_database
from dagmill.store import NewRunTask
from helpers import wait_for
from servers import Project, ServerProcess

# a process node: counts its runs in ``count``, prints ``lines`` lines ``pause`` seconds
# apart, fails while the file ``fail_unless`` names does not exist, then writes its outputs
STEP = """\
import os, time
from dagmill import processor

p = processor.params()
with open(p["count"], "a") as f:
    f.write("run\\n")
for i in range(int(p.get("lines", 1))):
    print(f"{p['name']} line {i}", flush=True)
    time.sleep(float(p.get("pause", 0)))
if p.get("fail_unless") and not os.path.exists(p["fail_unless"]):
    raise RuntimeError(f"{p['name']}: no {p['fail_unless']} yet")
for output in processor.fetch_datanodes_information()[1]:
    with open(output, "w") as f:
        f.write("done\\n")
"""


def _node(name: str, root: Path, **params: Any) -> dict[str, Any]:
    return {"name": name, "count": str(root / f"{name}.count"), **params}


def _pipeline(nodes: dict[str, tuple[list[str], list[str], dict[str, Any]]]) -> str:
    """YAML of process nodes running STEP: name -> (inputs, outputs, params)."""
    data = sorted({d for ins, outs, _ in nodes.values() for d in ins + outs})
    lines = ["dataNodes:", *(f"  {d}: {{source: {d}.txt}}" for d in data)] if data else []
    lines.append("processNodes:")
    for name, (ins, outs, params) in nodes.items():
        lines += [f"  {name}:", "    processor: step", f"    params: {json.dumps(params)}"]
        if ins:
            lines.append(f"    input: [{', '.join(ins)}]")
        if outs:
            lines.append(f"    output: [{', '.join(outs)}]")
    return "\n".join(lines) + "\n"


class ApiProject(Project):
    """A project whose commands and server share one DAGMILL_HOME (its server key)."""

    home: Path

    def env(self) -> dict[str, str]:
        return {**super().env(), "DAGMILL_HOME": str(self.home)}


@dataclass
class Api:
    """The module's server, its project folder, and clients by role."""

    project: ApiProject
    server: ServerProcess
    url: str
    clients: dict[str, httpx.Client]
    jobs: dict[str, str]

    def client(self, role: str) -> httpx.Client:
        return self.clients[role]

    def run_job(self, name: str) -> str:
        """Queue a run of the job ``name`` (the server starts it); its id."""
        done = self.project.dagmill("jobs", "run", self.jobs[name])
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.split()[-1]

    def wait_run(self, run_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
        viewer = self.client("viewer")
        found: dict[str, Any] = {}

        def ended() -> bool:
            found.update(viewer.get(f"/runs/{run_id}").json()["run"])
            return found["status"] in statuses

        wait_for(ended, timeout, f"run {run_id} to be {'/'.join(statuses)}")
        return found


def _token(project: ApiProject, role: str, name: str = "default") -> str:
    code = (
        "from dagmill.services.tokens import create_token; "
        f"print(create_token({name!r}, {role!r}, 'test').bearer)"
    )
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], env=project.env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _api_url(server: ServerProcess) -> str:
    for event in server.events():
        if event.get("event") == "api_listening":
            return str(event["url"])
    raise AssertionError(f"no api_listening in the server's log:\n{server.log()}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp(f"api-{request.param}")
    url = (
        f"sqlite:///{root}/.dagmill/dagmill.db"
        if request.param == "sqlite"
        else fresh_postgres_database(request)
    )
    project = ApiProject(root, url)
    project.home = root / ".dagmill"
    made = project.dagmill("projects", "create", "other")
    assert made.returncode == 0, made.stderr
    two = {
        "first": ([], ["a"], _node("first", root)),
        "second": (["a"], ["b"], _node("second", root, fail_unless=str(root / "fixed"))),
    }
    pipelines = {
        "two": _pipeline(two),
        "talk": _pipeline({"talk": ([], [], _node("talk", root, lines=6, pause=0.3))}),
        "slow": _pipeline({"slow": ([], [], _node("slow", root, lines=1, pause=120))}),
    }
    jobs = {
        name: project.build(project.pipeline(name, text, {"step": STEP}))
        for name, text in pipelines.items()
    }
    server = project.server("--log-json")
    base = _api_url(server)
    clients = {
        role: httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {_token(project, role)}"}
        )
        for role in ("viewer", "operator", "admin")
    }
    clients["other"] = httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {_token(project, 'admin', 'other')}"}
    )
    try:
        yield Api(project, server, base, clients, jobs)
    finally:
        for c in clients.values():
            c.close()
        project.cleanup()
        print(server.log()[-20_000:])


@pytest.fixture(autouse=True)
def _module_home(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's own store calls (fake runs) go to the module's store."""
    monkeypatch.setenv("DAGMILL_HOME", str(api.project.home))
    monkeypatch.setenv("DAGMILL_DATABASE_URL", api.project.database_url)


def _fake_runs(api: Api, project: str, count: int, prefix: str) -> list[str]:
    """``count`` ended runs of ``project`` started from Python (no target), some of them
    made at the very same time (ties the cursor must break by id)."""
    ids = []
    with api.project.store() as s:
        for n in range(count):
            run_id = f"{prefix}-{n:03d}"
            s.create_run(run_id, f"fake {n}", [], project=project)
            s.set_run_status(run_id, ["SUCCESS", "FAILED"][n % 2])
            ids.append(run_id)
        with s._tx():  # ties: runs 10..19 made at the same instant
            s._execute(
                "UPDATE runs SET created_at = ? WHERE id LIKE ? AND id >= ? AND id < ?",
                (time.time() - 5, f"{prefix}-%", f"{prefix}-010", f"{prefix}-020"),
            )
    return ids


def _all_pages(client: httpx.Client, limit: int, **filters: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        got = client.get("/runs", params=params)
        assert got.status_code == 200, got.text
        page = got.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


def test_list_pages_filters_and_projects(api: Api) -> None:
    mine = _fake_runs(api, "default", 45, "list-mine")
    theirs = _fake_runs(api, "other", 5, "list-theirs")
    viewer = api.client("viewer")

    everything = _all_pages(viewer, 7)
    ids = [r["id"] for r in everything]
    assert len(ids) == len(set(ids)), "a run on two pages"
    assert set(mine) <= set(ids), "a run on no page"
    assert not set(theirs) & set(ids), "another project's runs listed"
    assert all(r["project"] == "default" for r in everything)
    keys = [(r["created_at"], r["id"]) for r in everything]
    assert keys == sorted(keys, reverse=True), "not newest first"
    with api.project.store() as s:  # the same as the record says, in the same order
        assert ids == [r.id for r in s.list_runs(limit=10_000, project="default")]

    failed = _all_pages(viewer, 4, status="FAILED")
    assert {r["id"] for r in failed} >= {i for n, i in enumerate(mine) if n % 2}
    assert {r["status"] for r in failed} == {"FAILED"}

    tied = everything[[r["id"] for r in everything].index("list-mine-019")]["created_at"]
    recent = {r["id"] for r in _all_pages(viewer, 50, since=str(tied + 0.001))}
    assert not {f"list-mine-{n:03d}" for n in range(10, 20)} & recent  # made before
    assert set(mine) - {f"list-mine-{n:03d}" for n in range(10, 20)} <= recent
    iso = viewer.get("/runs", params={"since": "2000-01-01T00:00:00Z", "limit": 1}).json()
    assert len(iso["items"]) == 1 and iso["next_cursor"]

    other = _all_pages(api.client("other"), 3)
    assert {r["id"] for r in other} == set(theirs)

    bad = viewer.get("/runs", params={"since": "yesterday"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.since"
    assert viewer.get("/runs", params={"cursor": "nonsense"}).status_code == 400
    assert viewer.get("/runs", params={"limit": 501}).status_code == 422
    assert viewer.get("/runs", params={"status": "DONE"}).status_code == 422


def test_get_run_with_tasks_and_404_for_another_project(api: Api) -> None:
    run_id = api.run_job("talk")
    run = api.wait_run(run_id, ("SUCCESS", "FAILED"))
    assert run["status"] == "SUCCESS", run
    viewer = api.client("viewer")
    got = viewer.get(f"/runs/{run_id}").json()
    assert got["run"]["id"] == run_id and got["run"]["job_id"] == api.jobs["talk"]
    assert got["run"]["target"]["kind"] == "yaml"
    [task] = got["tasks"]
    assert task["status"] == "SUCCESS" and task["attempts"] == 1
    assert task["history"][0]["attempt"] == 1 and task["history"][0]["ended_at_iso"]
    assert got["pending_since"] == {}
    shown = api.project.dagmill("runs", "show", run_id, "--json")
    assert {k: v for k, v in got.items() if k != "pending_since"} == json.loads(shown.stdout)

    by_prefix = viewer.get(f"/runs/{run_id[:-2]}")
    assert by_prefix.status_code == 200 and by_prefix.json()["run"]["id"] == run_id

    [theirs] = _fake_runs(api, "other", 1, "get-theirs")
    assert viewer.get("/runs/a%00b").status_code == 404  # PostgreSQL refuses a NUL
    assert viewer.get("/runs", params={"job_id": "a\x00"}).status_code == 422
    missing = viewer.get("/runs/get-theirs-000")
    nothing = viewer.get("/runs/no-such-run")
    assert missing.status_code == nothing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert api.client("other").get(f"/runs/{theirs}").status_code == 200
    assert api.client("other").get(f"/runs/{run_id}").status_code == 404
    for path in ("logs", "cancel", "rerun"):
        method = "GET" if path == "logs" else "POST"
        assert api.client("other").request(method, f"/runs/{run_id}/{path}").status_code == 404
    assert api.client("other").delete(f"/runs/{run_id}").status_code == 404


def _sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event or "message", json.loads(line[len("data: ") :])
            event = None


def test_logs_whole_and_followed(api: Api) -> None:
    run_id = api.run_job("talk")
    viewer = api.client("viewer")
    chunks: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    with viewer.stream(
        "GET", f"/runs/{run_id}/logs", params={"follow": "true"}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in _sse(response):
            (chunks if event == "log" else ends).append(data)
    assert ends == [{"status": "SUCCESS"}]
    followed = "".join(c["text"] for c in chunks)
    assert [line for line in followed.splitlines() if "talk line" in line] == [
        f"talk line {i}" for i in range(6)
    ]

    whole = viewer.get(f"/runs/{run_id}/logs").json()["items"]
    assert {(c["task_id"], c["attempt"]) for c in whole} == {
        (c["task_id"], c["attempt"]) for c in chunks
    }
    assert "".join(c["text"] for c in whole) == followed
    assert viewer.get(f"/runs/{run_id}/logs", params={"task": "nothing"}).json() == {"items": []}

    # a run that ended: the stream says so at once
    with viewer.stream("GET", f"/runs/{run_id}/logs?follow=true", timeout=30) as response:
        assert [e for e, _ in _sse(response)][-1] == "end"


def test_cancel_a_running_run(api: Api) -> None:
    # cancelled as it is queued, claimed or starting: whichever it is, the server's
    # runners survive it (the next run below starts)
    early = api.run_job("slow")
    stopped = api.client("operator").post(f"/runs/{early}/cancel", timeout=30)
    assert stopped.json()["run"]["status"] == "CANCELLED", stopped.text

    run_id = api.run_job("slow")
    viewer = api.client("viewer")
    wait_for(
        lambda: [t["status"] for t in viewer.get(f"/runs/{run_id}").json()["tasks"]] == ["RUNNING"],
        30,
        "the slow task to start",
    )
    assert api.client("viewer").post(f"/runs/{run_id}/cancel").status_code == 403
    done = api.client("operator").post(f"/runs/{run_id}/cancel", timeout=30)
    assert done.status_code == 200, done.text
    assert done.json()["run"]["status"] == "CANCELLED", done.json()
    assert run_id in done.json()["message"]
    again = api.client("operator").post(f"/runs/{run_id}/cancel").json()
    assert "already ended" in again["message"]


def test_rerun_from_failed_and_everything(api: Api) -> None:
    root = api.project.root
    operator = api.client("operator")
    first = api.run_job("two")
    assert api.wait_run(first, ("SUCCESS", "FAILED", "CANCELLED"))["status"] == "FAILED"
    counts = {n: len((root / f"{n}.count").read_text().split()) for n in ("first", "second")}
    (root / "fixed").write_text("yes")

    assert api.client("viewer").post(f"/runs/{first}/rerun").status_code == 403
    only_failed = operator.post(f"/runs/{first}/rerun", params={"from_failed": "true"})
    assert only_failed.status_code == 201, only_failed.text
    queued = only_failed.json()
    assert queued["id"] != first and queued["status"] in ("PENDING", "RUNNING")
    assert queued["job_id"] == api.jobs["two"]
    assert api.wait_run(queued["id"], ("SUCCESS", "FAILED", "CANCELLED"))["status"] == "SUCCESS"
    assert len((root / "first.count").read_text().split()) == counts["first"]  # complete
    assert len((root / "second.count").read_text().split()) == counts["second"] + 1
    tasks = {
        t["id"]: t["status"]
        for t in api.client("viewer").get(f"/runs/{queued['id']}").json()["tasks"]
    }
    assert sorted(tasks.values()) == ["SKIPPED", "SUCCESS"], tasks

    everything = operator.post(f"/runs/{queued['id']}/rerun")
    assert everything.status_code == 201, everything.text
    rerun = everything.json()["id"]
    assert api.wait_run(rerun, ("SUCCESS", "FAILED", "CANCELLED"))["status"] == "SUCCESS"
    assert len((root / "first.count").read_text().split()) == counts["first"] + 1
    assert len((root / "second.count").read_text().split()) == counts["second"] + 2
    assert any(
        e.get("event") == "run_started" and e.get("run") == rerun for e in api.server.events()
    ), "the server did not run it"

    [python_run] = _fake_runs(api, "default", 1, "rerun-python")
    refused = operator.post(f"/runs/{python_run}/rerun")
    assert refused.status_code == 409 and "started from Python" in refused.json()["message"]


def test_delete_a_run(api: Api) -> None:
    [ended] = _fake_runs(api, "default", 1, "delete-ended")
    with api.project.store() as s:
        s.create_run(
            "delete-running",
            "running",
            [NewRunTask("t", "T", {}, (), "PENDING", "", {}, "RUNNING")],
            project="default",
        )
    admin = api.client("admin")
    assert api.client("operator").delete(f"/runs/{ended}").status_code == 403
    running = admin.delete("/runs/delete-running")
    assert running.status_code == 409 and "cancel it first" in running.json()["message"]
    assert admin.delete(f"/runs/{ended}").status_code == 204
    assert admin.get(f"/runs/{ended}").status_code == 404
    assert admin.delete(f"/runs/{ended}").status_code == 404
    with api.project.store() as s:
        s.set_run_status("delete-running", "CANCELLED")


def test_projects_show_and_quota(api: Api) -> None:
    viewer, admin = api.client("viewer"), api.client("admin")
    listed = viewer.get("/projects").json()
    assert [p["name"] for p in listed["items"]] == ["default"] and listed["next_cursor"] is None
    shown = viewer.get("/projects/default").json()
    printed = json.loads(api.project.dagmill("projects", "show", "default", "--json").stdout)
    assert shown.keys() == printed.keys()
    assert viewer.get("/projects/other").status_code == 404
    assert viewer.get("/projects/nowhere").status_code == 404

    assert api.client("operator").patch("/projects/default", json={"cpu": "4"}).status_code == 403
    set_ = admin.patch("/projects/default", json={"cpu": "4", "memory": "8Gi", "gpu": 1})
    assert set_.status_code == 200, set_.text
    assert set_.json()["quota"] == {"cpu": "4", "memory": "8Gi", "gpu": 1}
    assert set_.json()["limits"]["cpu"] == "4"
    cleared = admin.patch("/projects/default", json={"memory": "", "gpu": "", "description": "d"})
    assert cleared.json()["quota"] == {"cpu": "4"} and cleared.json()["description"] == "d"

    bad = admin.patch("/projects/default", json={"memory": "lots"})
    assert bad.status_code == 422 and bad.json()["field"] == "body.memory", bad.text
    assert admin.patch("/projects/default", json={}).status_code == 400
    assert admin.patch("/projects/default", json={"description": "a\x00"}).status_code == 422
    assert admin.patch("/projects/default", json={"disk": "1"}).status_code == 422
    assert api.client("other").patch("/projects/default", json={"cpu": "1"}).status_code == 404
    assert admin.patch("/projects/default", json={"cpu": ""}).json()["quota"] == {}


def test_rerun_of_a_run_of_no_job(api: Api) -> None:
    """`dagmill run MODULE:Task` makes a run of no job: its rerun is queued all the same,
    and the server runs its target."""
    flows = Path(__file__).parent / "flows" / "numbers.py"
    ran = api.project.dagmill("run", f"{flows}:Total", "-p", "n=7", "--json")
    assert ran.returncode == 0, ran.stderr
    first = json.loads(ran.stdout)["id"]
    operator, viewer = api.client("operator"), api.client("viewer")
    statuses = {}
    for from_failed in ("false", "true"):
        made = operator.post(f"/runs/{first}/rerun", params={"from_failed": from_failed})
        assert made.status_code == 201, made.text
        assert made.json()["job_id"] is None and made.json()["target"]["params"] == {"n": "7"}
        run = api.wait_run(made.json()["id"], ("SUCCESS", "FAILED", "CANCELLED"))
        assert run["status"] == "SUCCESS", run
        tasks = viewer.get(f"/runs/{run['id']}").json()["tasks"]
        statuses[from_failed] = sorted(t["status"] for t in tasks)
    assert statuses == {"false": ["SUCCESS", "SUCCESS"], "true": ["SKIPPED", "SKIPPED"]}
