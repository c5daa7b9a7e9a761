"""The ``/jobs`` resource of the API on a real ``dagmill server``: jobs built from uploaded
bundles (a pipeline with its package of processors and a requirement, a Python file with
its neighbour module), run over the API until SUCCESS, paused, resumed, backfilled and
deleted; bad uploads and specs refused with what is wrong; another project's jobs 404.

One server per backend for the whole module (it is started once: each test uses jobs of
its own)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import fresh_postgres_database
from dagmill.model.runs import RunInfo
from dagmill.services.bundles import Bundle, pack
from dagmill.store import open_store
from helpers import wait_for
from servers import Project

FLOWS = textwrap.dedent("""\
    import dagmill
    from helpers_mod import double


    class Twice(dagmill.tasks.TaskJson):
        n = dagmill.IntParameter(default=2)

        def run(self):
            self.save({"value": double(self.n)})


    class Hourly(dagmill.tasks.TaskJson):
        day = dagmill.Parameter(default="")

        def run(self):
            self.save({"day": self.day})
    """)

PIPELINE = textwrap.dedent("""\
    dataNodes:
      out:
        source: out.txt
    processNodes:
      write:
        output: [out]
        processor: steps.write
        params: {word: hello}
    requirement:
      - name: six
        version: "1.16.0"
    """)

WRITE = textwrap.dedent("""\
    import six

    from dagmill import processor

    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write(processor.params()["word"] + " " + six.__version__ + "\\n")
    """)


@dataclass
class Api:
    url: str
    database_url: str
    home: Path
    root: Path
    bearer: dict[str, str]  # role (and "other": another project's admin) -> token
    secrets: dict[str, tuple[str, str]]  # role -> (token id, secret)

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.bearer[role]}"},
            timeout=180,
        )

    def run(self, run_id: str) -> RunInfo | None:
        with open_store(self.database_url) as s:
            return s.get_run(run_id)

    def wait_run(self, run_id: str, timeout: float = 120) -> RunInfo:
        def ended() -> RunInfo | None:
            run = self.run(run_id)
            return run if run and run.status in ("SUCCESS", "FAILED", "CANCELLED") else None

        run = wait_for(ended, timeout, f"run {run_id} to end", every=0.1)
        assert run.status == "SUCCESS", run.error
        return run


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-jobs")
    home = root / ".dagmill"
    if request.param == "sqlite":
        url = f"sqlite:///{home}/dagmill.db"
    else:
        url = fresh_postgres_database(request)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGMILL_HOME", str(home))
        mp.setenv("DAGMILL_DATABASE_URL", url)
        mp.delenv("DAGMILL_SECRET_KEY", raising=False)
        project = Project(root, url)
        try:
            server = project.server("--max-upload", "1")  # 1 MiB: the oversize test
            found = re.search(r"(http://[^\s\"]+/api/v1)", server.log())
            assert found, server.log()
            from dagmill.services.projects import create_project
            from dagmill.services.tokens import create_token

            create_project("other")
            made = {role: create_token("default", role, role) for role in ("viewer", "operator")}
            made["admin"] = create_token("default", "admin", "admin")
            made["other"] = create_token("other", "admin", "other")
            yield Api(
                found.group(1),
                url,
                home,
                root,
                {k: t.bearer for k, t in made.items()},
                {k: (t.info.id, t.secret) for k, t in made.items()},
            )
        finally:
            project.cleanup()
            for server in project.servers:
                print(server.log()[-20_000:])


def _python_bundle(root: Path) -> Bundle:
    folder = root / "py"
    folder.mkdir(exist_ok=True)
    (folder / "flows.py").write_text(FLOWS)
    (folder / "helpers_mod.py").write_text("def double(n):\n    return 2 * n\n")
    return pack(f"{folder}/flows.py:Twice")


def _pipeline_bundle(root: Path) -> Bundle:
    folder = root / "pipe"
    (folder / "steps").mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(PIPELINE)
    (folder / "steps" / "__init__.py").write_text("")
    (folder / "steps" / "write.py").write_text(WRITE)
    return pack(str(folder / "pipeline.yaml"))


def _build(client: httpx.Client, content: bytes, spec: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/jobs",
        files={"bundle": ("bundle.tar.gz", content, "application/gzip")},
        data={"spec": json.dumps(spec)},
    )


def _built(client: httpx.Client, content: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    r = _build(client, content, spec)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_python_bundle_builds_and_runs_with_its_neighbour_module(api: Api) -> None:
    bundle = _python_bundle(api.root)
    with api.client() as c:
        job = _built(c, bundle.content, {"target": bundle.ref, "name": "twice-py"})
        assert job["bundle"] == bundle.sha256
        assert job["ref"] == "flows.py:Twice" and job["kind"] == "python"
        assert job["data_dir"] == str(api.home / "data" / "default" / "twice-py")
        assert job["status"] == "READY" and job["trigger"] == "manual"
        assert {"trigger", "next_run_at", "next_run_at_iso", "running", "queued"} <= set(job)
        assert c.get(f"/jobs/{job['id']}").json() == {**job, "status": "READY"}

        # no body at all: as requests.post(url, auth=AWS4Auth(...)) sends it
        r = c.post(f"/jobs/{job['id']}/run")
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["job_id"] == job["id"] and run["project"] == "default"
        assert run["target"]["bundle"] == bundle.sha256
        api.wait_run(run["id"])
        data = api.home / "data" / "default" / "twice-py"
        assert [json.loads(p.read_text()) for p in data.rglob("*.json")] == [{"data": {"value": 4}}]

        # params for this run only
        r = c.post(f"/jobs/{job['id']}/run", json={"params": {"n": "5"}})
        assert r.status_code == 201, r.text
        assert r.json()["target"]["params"] == {"n": "5"}
        api.wait_run(r.json()["id"])
        values = sorted(json.loads(p.read_text())["data"]["value"] for p in data.rglob("*.json"))
        assert values == [4, 10]

        r = c.post(f"/jobs/{job['id']}/run", json={"params": {"m": "5"}})
        assert r.status_code == 422, r.text
        assert "'m'" in r.json()["message"] and r.json()["field"] == "body.params"
        r = c.post(f"/jobs/{job['id']}/run", json={"params": {"n": "five"}})
        assert r.status_code in (400, 422) and "n" in r.json()["message"], r.text

        listed = c.get("/jobs", params={"name": "TWICE-P"}).json()
        assert [j["id"] for j in listed["items"]] == [job["id"]]
        assert listed["items"][0]["status"] == "SUCCESS"
        assert c.get("/jobs", params={"kind": "yaml", "name": "twice-py"}).json()["items"] == []


def test_a_dotted_module_bundle_runs_from_its_package(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = api.root / "ws" / "apijobs_pkg"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(FLOWS.replace("from helpers_mod", "from .helpers"))
    (package / "helpers.py").write_text("def double(n):\n    return 2 * n\n")
    monkeypatch.chdir(package.parent)
    bundle = pack("apijobs_pkg.flows:Twice")
    assert bundle.ref == "apijobs_pkg.flows:Twice"
    with api.client() as c:
        job = _built(c, bundle.content, {"target": bundle.ref, "params": {"n": "3"}})
        assert job["name"] == "Twice" and job["params"] == {"n": "3"}
        run = c.post(f"/jobs/{job['id']}/run", json={}).json()
        api.wait_run(run["id"])
    data = api.home / "data" / "default" / "Twice"
    assert [json.loads(p.read_text()) for p in data.rglob("*.json")] == [{"data": {"value": 6}}]


def test_a_new_version_of_a_bundle_imports_its_own_modules(api: Api) -> None:
    """The server validated (imported) the first bundle's flows and helpers_mod: the
    second, with the same module names, must get its own."""
    first = _python_bundle(api.root)
    folder = api.root / "py2"
    folder.mkdir(exist_ok=True)
    (folder / "flows.py").write_text(FLOWS.replace("import double", "import triple as double"))
    (folder / "helpers_mod.py").write_text("def triple(n):\n    return 3 * n\n")
    second = pack(f"{folder}/flows.py:Twice")
    assert second.sha256 != first.sha256
    with api.client() as c:
        _built(c, first.content, {"target": first.ref, "name": "v1"})
        job = _built(c, second.content, {"target": second.ref, "name": "v2"})
        run = c.post(f"/jobs/{job['id']}/run", json={"params": {"n": "2"}})
        assert run.status_code == 201, run.text
        api.wait_run(run.json()["id"])
    data = api.home / "data" / "default" / "v2"
    assert [json.loads(p.read_text()) for p in data.rglob("*.json")] == [{"data": {"value": 6}}]


def test_bundles_with_modules_of_one_name_build_at_once(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bundles = []
    for k, word in [(2, "double"), (3, "triple"), (4, "quadruple")]:
        folder = api.root / f"many-{word}"
        folder.mkdir(exist_ok=True)
        (folder / "flows.py").write_text(FLOWS.replace("import double", f"import {word} as double"))
        (folder / "helpers_mod.py").write_text(f"def {word}(n):\n    return {k} * n\n")
        bundles.append(pack(f"{folder}/flows.py:Twice"))
    with api.client() as c, ThreadPoolExecutor(6) as pool:
        built = list(
            pool.map(
                lambda i: _build(c, bundles[i % 3].content, {"target": "flows.py:Twice"}),
                range(12),
            )
        )
    assert [r.status_code for r in built] == [201] * 12, [r.text for r in built]


def test_the_documented_sigv4_client_runs_a_job(api: Api) -> None:
    import requests
    from requests_aws4auth import AWS4Auth

    bundle = _python_bundle(api.root)
    with api.client() as c:
        job_id = _built(c, bundle.content, {"target": bundle.ref, "name": "sigv4"})["id"]
    token_id, secret = api.secrets["operator"]
    awsauth = AWS4Auth(token_id, secret, "", "s3")
    r = requests.post(api.url + "/jobs/" + job_id + "/run", auth=awsauth, timeout=60)
    assert r.status_code == 201, r.text
    api.wait_run(r.json()["id"])


def test_a_pipeline_bundle_runs_its_packaged_processor_with_its_requirement(api: Api) -> None:
    bundle = _pipeline_bundle(api.root)
    assert "steps/write.py" in bundle.files
    with api.client() as c:
        job = _built(c, bundle.content, {"target": "pipeline.yaml", "data": "pipe-out"})
        assert job["kind"] == "yaml" and job["ref"] == "pipeline.yaml"
        assert job["name"] == "pipeline"
        assert job["data_dir"] == str(api.home / "data" / "default" / "pipe-out")
        run = c.post(f"/jobs/{job['id']}/run", content=b"").json()
        api.wait_run(run["id"], timeout=300)
    out = api.home / "data" / "default" / "pipe-out" / "out.txt"
    assert out.read_text() == "hello 1.16.0\n"
    assert (api.home / "bundles" / bundle.sha256 / "steps" / "write.py").is_file()


def test_a_scheduled_job_pauses_resumes_shows_its_slots_and_backfills(api: Api) -> None:
    bundle = _python_bundle(api.root)
    spec = {
        "target": "flows.py:Hourly",
        "name": "hourly",
        "every": "1h",
        "start": "2020-01-01 00:00",
        "timezone": "Europe/Paris",
        "catchup": "none",
        "slot_param": "day",
        "ttl": {"secondsAfterSuccess": None},
    }
    with api.client() as c, api.client("operator") as op, api.client("viewer") as viewer:
        job = _built(c, bundle.content, spec)
        # (PENDING: waiting for its next slot; a slot due as it is built may be running)
        assert job["trigger"] == "scheduled" and job["status"] in ("PENDING", "RUNNING")
        assert job["schedule"]["every"] == "1h" and job["policy"]["slot_param"] == "day"
        jid = job["id"]

        slots = viewer.get(f"/jobs/{jid}/slots", params={"count": 3}).json()
        assert slots["timezone"] == "Europe/Paris" and len(slots["next"]) == 3
        first = slots["next"][0]
        assert first["fires_at"] > time.time() and first["local"].endswith(("+01:00", "+02:00"))
        assert first["fires_at_iso"].endswith("+00:00")
        assert viewer.get(f"/jobs/{jid}/skipped").json() == []

        assert viewer.post(f"/jobs/{jid}/pause").status_code == 403
        paused = op.post(f"/jobs/{jid}/pause").json()
        assert paused["status"] == "PAUSED" and paused["paused"] is True
        assert paused["next_run_at"] is None
        assert [j["id"] for j in c.get("/jobs", params={"status": "paused"}).json()["items"]] == [
            jid
        ]
        resumed = op.post(f"/jobs/{jid}/resume").json()
        assert resumed["paused"] is False and resumed["next_run_at"] is not None

        r = op.post(
            f"/jobs/{jid}/backfill", json={"start": "2020-01-01 00:00", "end": "2020-01-01 01:00"}
        )
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["slots"] == 2 and len(done["queued"]) == 2 and done["already"] == 0
        runs = [api.wait_run(run_id) for run_id in done["queued"]]
        assert sorted(r.target.params["day"] for r in runs if r.target) == [
            "2020-01-01T00:00:00+01:00",
            "2020-01-01T01:00:00+01:00",
        ]
        again = op.post(
            f"/jobs/{jid}/backfill", json={"start": "2020-01-01", "end": "2020-01-01 01:00"}
        )
        assert again.json()["already"] == 2 and again.json()["queued"] == []

        def idle() -> bool:
            view = c.get(f"/jobs/{jid}").json()
            return view["running"] + view["queued"] == 0

        wait_for(idle, 60, "the job's runs to end")
        assert op.delete(f"/jobs/{jid}").status_code == 403
        assert c.delete(f"/jobs/{jid}").status_code == 204
        assert c.get(f"/jobs/{jid}").status_code == 404
        with open_store(api.database_url) as s:
            assert s.list_runs(job_id=jid) == []


def test_bad_specs_and_pipelines_say_what_is_wrong(api: Api) -> None:
    bundle = _python_bundle(api.root)
    with api.client() as c:
        r = _build(c, bundle.content, {"name": "no target"})
        assert (r.status_code, r.json()["field"]) == (422, "spec.target"), r.text
        r = _build(c, bundle.content, {"target": bundle.ref, "every": "1h", "cron": "@daily"})
        assert r.status_code == 422 and "cron or every" in r.json()["message"], r.text
        r = _build(c, bundle.content, {"target": bundle.ref, "colour": "red"})
        assert (r.status_code, r.json()["field"]) == (422, "spec.colour"), r.text
        r = c.post("/jobs", files={"bundle": ("b.tgz", bundle.content)}, data={"spec": "{nope"})
        assert (r.status_code, r.json()["field"]) == (422, "spec"), r.text
        r = _build(c, bundle.content, {"target": "../flows.py:Twice"})
        assert (r.status_code, r.json()["field"]) == (422, "spec.target"), r.text
        r = _build(c, bundle.content, {"target": "flows.py:Twice", "params": {"n": "x"}})
        assert r.status_code == 400 and "'n'" in r.json()["message"], r.text
        r = _build(c, bundle.content, {"target": "flows.py:Thrice"})
        assert r.status_code == 400 and "did you mean 'Twice'" in r.json()["message"], r.text
        assert r.json()["message"].startswith("flows.py:Thrice: "), r.text  # not a server path
        broken = _tar({"pipeline.yaml": PIPELINE.replace("steps.write", "gone").encode()})
        r = _build(c, broken, {"target": "pipeline.yaml"})
        assert r.status_code == 400, r.text
        assert "processor module 'gone' not found" in r.json()["message"]
        # nothing was built of the failures, and their bundles were not kept
        assert not c.get("/jobs", params={"name": "flows"}).json()["items"]
    with open_store(api.database_url) as s:
        assert s.bundle_content(hashlib.sha256(broken).hexdigest()) is None


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize(
    ("files", "links", "message"),
    [
        ({"../evil.py": b"x"}, None, "may not contain '..'"),
        ({"/tmp/evil.py": b"x"}, None, "absolute path"),
        ({"flows.py": b"x"}, {"evil.py": "/etc/passwd"}, "link or special file"),
    ],
)
def test_unsafe_bundles_are_refused(
    api: Api, files: dict[str, bytes], links: dict[str, str] | None, message: str
) -> None:
    with api.client() as c:
        r = _build(c, _tar(files, links), {"target": "flows.py:Twice"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "bundle" and message in r.json()["message"]
    assert not (api.root.parent / "evil.py").exists()


def test_an_oversize_bundle_is_refused(api: Api) -> None:
    big = _tar({"flows.py": FLOWS.encode(), "blob.txt": bytes(range(256)) * 8192})  # 2 MiB
    with api.client() as c:
        r = _build(c, big + b"\0" * (2 * 2**20), {"target": "flows.py:Twice"})
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "too_large"


def test_another_projects_jobs_are_not_there(api: Api) -> None:
    bundle = _python_bundle(api.root)
    with api.client() as c, api.client("other") as other:
        jid = _built(c, bundle.content, {"target": bundle.ref, "name": "mine"})["id"]
        assert other.get("/jobs").json()["items"] == []
        for method, path in [
            ("GET", f"/jobs/{jid}"),
            ("GET", f"/jobs/{jid}/slots"),
            ("GET", f"/jobs/{jid}/skipped"),
            ("POST", f"/jobs/{jid}/run"),
            ("POST", f"/jobs/{jid}/pause"),
            ("POST", f"/jobs/{jid}/resume"),
            ("DELETE", f"/jobs/{jid}"),
        ]:
            r = other.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert jid in r.json()["message"] and "project other" in r.json()["message"]
        r = other.post(f"/jobs/{jid}/backfill", json={"start": "2020-01-01", "end": "2020-01-02"})
        assert r.status_code == 404
        assert c.get(f"/jobs/{jid}").status_code == 200  # still there, untouched
        # its own job of the same bundle: shared bundle, jobs of their own
        theirs = _built(other, bundle.content, {"target": bundle.ref, "name": "mine"})
        assert theirs["project"] == "other"
        assert theirs["data_dir"] == str(api.home / "data" / "other" / "mine")
        assert [j["id"] for j in c.get("/jobs", params={"name": "mine"}).json()["items"]] == [jid]
