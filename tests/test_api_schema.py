"""schemathesis against the live API's ``/openapi.json``: every operation, with an admin
token, a bounded number of generated requests each; no 5xx, every response as the
schema says (body, status code, content type).

The store holds a project with a job and an ended run, so lists are not empty; generated
ids mostly name nothing (404, which the schema documents)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from servers import ServerHome

MAX_EXAMPLES = 25  # per operation: ~25 operations, well under a minute in all
SECRET_KEY = "s" * 40
PIPELINE = """\
processNodes:
  hello:
    processor: hello
"""
HELLO = "from dagmill import processor\n\nprocessor.params()\nprint('hello')\n"


@dataclass(frozen=True)
class Live:
    base: str  # http://127.0.0.1:PORT
    bearer: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("api-schema")
    project = ServerHome(root, f"sqlite:///{root}/.dagmill/dagmill.db", secret_key=SECRET_KEY)
    try:
        assert project.dagmill("projects", "create", "team", "-q").returncode == 0
        pipeline = project.pipeline("hello", PIPELINE, {"hello": HELLO})
        built = project.dagmill("jobs", "build", str(pipeline), "--project", "team")
        assert built.returncode == 0, built.stderr
        ran = project.dagmill("jobs", "run", built.stdout.split()[-1], "--wait")
        assert ran.returncode == 0, ran.stderr
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in project.env().items() if k.startswith("DAGMILL")})
        try:
            from dagmill.services.tokens import create_token

            token = create_token("team", "admin", "schemathesis")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        server = project.server("--log-json", "--max-runs", "2", "--grace", "2")
        url = next(e["url"] for e in server.events() if e.get("event") == "api_listening")
        yield Live(url.rsplit("/api/", 1)[0], token.bearer)
    finally:
        project.cleanup()


def _openapi() -> dict[str, Any]:
    from dagmill.api.app import create_app

    return create_app().openapi()


# the schema the server serves (test_the_server_serves_this_schema), loaded as the module
# is collected: schemathesis' lazy loader from a fixture does not work with pytest 9
schema = schemathesis.openapi.from_dict(_openapi())


def test_the_server_serves_this_schema(live: Live) -> None:
    served = httpx.get(live.base + "/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == _openapi()
    assert len(schema.raw_schema["paths"]) >= 15


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure says enough
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests each run: a failure is reproducible
)
def test_the_api_keeps_its_schema(case: Any, live: Live) -> None:
    case.call_and_validate(
        base_url=live.base,
        headers={"Authorization": f"Bearer {live.bearer}"},
        checks=CHECKS,
        timeout=30,
    )
