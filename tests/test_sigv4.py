"""The server's SigV4 check (``dagmill.api.sigv4``) against the signatures of the client the
issue documents, ``requests_aws4auth.AWS4Auth(token_id, secret, "", "s3")``: what that
client signs passes; a request changed after signing, or signed too long ago, does not."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests_aws4auth import AWS4Auth

from dagmill.api.sigv4 import MAX_SKEW_SECONDS, parse_authorization, signature_matches

TOKEN = "dm_abcdefghijklmnop"
SECRET = "s3cr3t-" + "x" * 36


@dataclass(frozen=True)
class Signed:
    """A request as the server receives it."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


def sign(
    method: str,
    url: str,
    body: bytes | None = None,
    region: str = "",
    service: str = "s3",
    secret: str = SECRET,
    headers: Mapping[str, str] | None = None,
    at: dt.datetime | None = None,
) -> Signed:
    """What requests sends for ``method url`` with the documented auth (and ``headers``,
    signed too), as received."""
    signed_too = {"include_hdrs": ["host", "content-type", "date", "x-amz-*", *(headers or {})]}
    auth = AWS4Auth(TOKEN, secret, region, service, **signed_too)
    req = requests.Request(method, url, data=body, headers=dict(headers or {}))
    prepared = req.prepare()
    if at is not None:
        # AWS4Auth dates a request now; an older one is signed with its own x-amz-date
        prepared.headers["x-amz-date"] = at.strftime("%Y%m%dT%H%M%SZ")
        prepared.headers["date"] = at.strftime("%a, %d %b %Y %H:%M:%S GMT")
        auth = AWS4Auth(TOKEN, secret, region, service, date=at.strftime("%Y%m%d"), **signed_too)
    signed = auth(prepared)
    parts = urlsplit(signed.url)
    sent = {k.lower(): str(v) for k, v in signed.headers.items()}
    sent["host"] = parts.netloc
    raw = signed.body or b""
    return Signed(
        signed.method or method,
        parts.path,
        parse_qsl(parts.query, keep_blank_values=True),
        sent,
        raw if isinstance(raw, bytes) else raw.encode(),
    )


def check(req: Signed, secret: str = SECRET, now: float | None = None, **change: Any) -> bool:
    sig = parse_authorization(req.headers["authorization"])
    assert sig is not None, req.headers["authorization"]
    fields = {
        "method": req.method,
        "raw_path": req.raw_path,
        "query": req.query,
        "headers": req.headers,
        "body": req.body,
        **change,
    }
    return signature_matches(
        sig,
        secret,
        fields["method"],
        fields["raw_path"],
        fields["query"],
        fields["headers"],
        fields["body"],
        time.time() if now is None else now,
    )


API = "http://127.0.0.1:8080/api/v1"


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("POST", f"{API}/jobs/j-1/run", None),  # the documented call: no body
        ("POST", f"{API}/jobs/j-1/run", b'{"params": {"lr": "0.1"}}'),
        ("GET", f"{API}/runs?limit=50&status=SUCCESS", None),
        ("GET", f"{API}/runs?status=FAILED&limit=5&job_id=j-1", None),  # any order
        ("GET", f"{API}/runs?since=2026-01-01T00%3A00%3A00%2B00%3A00", None),
        ("GET", f"{API}/runs?cursor=eyJhIjogMX0%3D&limit=2", None),
        ("GET", f"{API}/runs?task=a%20b&x=", None),  # a space, an empty value
        ("GET", f"{API}/runs/r%2D1/logs?task=t%2F1", None),  # encoded path and value
        ("GET", f"{API}/jobs/caf%C3%A9", None),  # a non-ASCII id
        ("DELETE", f"{API}/tokens/dm_aaaaaaaaaaaaaaaa", None),
        ("PATCH", f"{API}/projects/p", b'{"cpu": "2"}'),
    ],
)
def test_what_the_client_signs_passes(method: str, url: str, body: bytes | None) -> None:
    assert check(sign(method, url, body))


@pytest.mark.parametrize("region, service", [("", "s3"), ("eu-west-1", "s3"), ("x", "execute-api")])
def test_any_region_and_service(region: str, service: str) -> None:
    req = sign("GET", f"{API}/runs", region=region, service=service)
    sig = parse_authorization(req.headers["authorization"])
    assert sig is not None and (sig.region, sig.service) == (region, service)
    assert check(req)


def test_a_signed_extra_header_is_checked() -> None:
    req = sign("GET", f"{API}/runs", headers={"X-Trace": "a  b"})
    assert "x-trace" in req.headers["authorization"]
    assert check(req)
    assert not check(req, headers={**req.headers, "x-trace": "c"})


def test_a_wrong_secret_fails() -> None:
    assert not check(sign("GET", f"{API}/runs"), secret=SECRET + "y")
    assert not check(sign("GET", f"{API}/runs", secret="other" * 9))


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"raw_path": "/api/v1/jobs/j-2/run"},
        {"query": [("limit", "1")]},
        {"body": b'{"params": {"lr": "0.2"}}'},
    ],
    ids=["method", "path", "query", "body"],
)
def test_a_request_changed_after_signing_fails(change: dict[str, Any]) -> None:
    req = sign("POST", f"{API}/jobs/j-1/run", b'{"params": {"lr": "0.1"}}')
    assert check(req)
    assert not check(req, **change)


def test_a_body_changed_along_with_its_hash_header_fails() -> None:
    req = sign("POST", f"{API}/jobs/j-1/run", b'{"a": 1}')
    other = b'{"a": 2}'
    headers = {**req.headers, "x-amz-content-sha256": hashlib.sha256(other).hexdigest()}
    assert not check(req, body=other, headers=headers)


@pytest.mark.parametrize("header", ["host", "x-amz-date", "x-amz-content-sha256"])
def test_a_signed_header_changed_fails(header: str) -> None:
    req = sign("GET", f"{API}/runs")
    changed = dict(req.headers)
    value = changed[header]
    if header == "x-amz-date":  # one second later, still within the skew
        when = dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ") + dt.timedelta(seconds=1)
        changed[header] = when.strftime("%Y%m%dT%H%M%SZ")
    else:
        changed[header] = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert not check(req, headers=changed)


def test_a_missing_signed_header_fails() -> None:
    req = sign("GET", f"{API}/runs")
    assert not check(req, headers={k: v for k, v in req.headers.items() if k != "host"})


def test_skew_five_minutes_either_way() -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    req = sign("GET", f"{API}/runs", at=at)
    t = at.timestamp()
    assert check(req, now=t)
    assert check(req, now=t + MAX_SKEW_SECONDS - 1)
    assert check(req, now=t - MAX_SKEW_SECONDS + 1)  # the client's clock is a bit ahead
    assert not check(req, now=t + MAX_SKEW_SECONDS + 1)
    assert not check(req, now=t - MAX_SKEW_SECONDS - 1)


def test_a_request_signed_six_minutes_ago_fails() -> None:
    req = sign("GET", f"{API}/runs", at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))
    assert not check(req)


def test_a_date_that_is_not_the_credential_s_fails() -> None:
    req = sign("GET", f"{API}/runs")
    auth = req.headers["authorization"]
    sig = parse_authorization(auth)
    assert sig is not None
    other = auth.replace(f"/{sig.date}/", "/20200101/")
    parsed = parse_authorization(other)
    assert parsed is not None
    assert not signature_matches(
        parsed, SECRET, req.method, req.raw_path, req.query, req.headers, req.body, time.time()
    )


def test_no_date_fails() -> None:
    req = sign("GET", f"{API}/runs")
    headers = {k: v for k, v in req.headers.items() if k != "x-amz-date"}
    assert not check(req, headers=headers)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer dm_abcdefghijklmnop.x",
        "AWS4-HMAC-SHA256 Credential=dm_a/20260101/s3/aws4_request, SignedHeaders=host, "
        "Signature=" + "0" * 64,  # a scope of 4 parts
        "AWS4-HMAC-SHA256 Credential=dm_a/2026011/r/s3/aws4_request, SignedHeaders=host, "
        "Signature=" + "0" * 64,  # not a date
        "AWS4-HMAC-SHA256 Credential=dm_a/20260101/r/s3/aws4_request, SignedHeaders=x-amz-date,"
        " Signature=" + "0" * 64,  # host not signed
        "AWS4-HMAC-SHA256 Credential=dm_a/20260101/r/s3/aws4_request, SignedHeaders=host, "
        "Signature=xyz",
        "AWS4-HMAC-SHA1 Credential=dm_a/20260101/r/s3/aws4_request, SignedHeaders=host, "
        "Signature=" + "0" * 64,
    ],
)
def test_headers_that_are_not_sigv4_are_refused(value: str) -> None:
    assert parse_authorization(value) is None


def test_the_parsed_parts() -> None:
    req = sign("GET", f"{API}/runs", region="", service="s3")
    sig = parse_authorization(req.headers["authorization"])
    assert sig is not None
    assert sig.access_key == TOKEN
    assert sig.region == "" and sig.service == "s3"
    assert "host" in sig.signed_headers and "x-amz-date" in sig.signed_headers
    assert sig.scope.endswith("//s3/aws4_request")
