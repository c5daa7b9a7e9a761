"""AWS Signature Version 4, checked on the server side (the client the platform our YAML
users come from documents: ``requests_aws4auth.AWS4Auth(token_id, secret, "", "s3")``).

The signature is computed again from the request as received and the token's secret,
then compared in constant time. Any region and service are accepted (they are part of
what is signed); the request's date must be within five minutes of the server's clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["MAX_SKEW_SECONDS", "SigV4", "parse_authorization", "signature_matches"]

MAX_SKEW_SECONDS = 300.0
_ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class SigV4:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key: str  # the token id
    date: str  # yyyymmdd of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> SigV4 | None:
    """The SigV4 parts of an Authorization header, or None if it is not one."""
    m = _AUTH.match(value.strip())
    if m is None:
        return None
    parts = m.group("cred").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        return None
    headers = tuple(m.group("headers").lower().split(";"))
    if "host" not in headers:
        return None
    return SigV4(parts[0], parts[1], parts[2], parts[3], headers, m.group("sig"))


def _amz_time(headers: Mapping[str, str]) -> dt.datetime | None:
    text = headers.get("x-amz-date") or ""
    try:
        return dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _canonical_query(query: Sequence[tuple[str, str]]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_matches(
    sig: SigV4,
    secret: str,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> bool:
    """Whether ``sig`` signs this request (as received) with ``secret``, dated within
    five minutes of ``now``; ``headers`` by lower-case name."""
    when = _amz_time(headers)
    if when is None or when.strftime("%Y%m%d") != sig.date:
        return False
    if abs(when.timestamp() - now) > MAX_SKEW_SECONDS:
        return False
    payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != payload:
        return False  # the body is not the one signed
    if any(h not in headers for h in sig.signed_headers):
        return False
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in sig.signed_headers)
    # S3 signs the path as sent, each segment encoded once
    path = quote(unquote(raw_path), safe="/-_.~") or "/"
    request = "\n".join(
        [
            method.upper(),
            path,
            _canonical_query(query),
            canonical_headers,
            ";".join(sig.signed_headers),
            payload,
        ]
    )
    to_sign = "\n".join(
        [
            _ALGORITHM,
            headers["x-amz-date"],
            sig.scope,
            hashlib.sha256(request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret).encode(), sig.date)
    for part in (sig.region, sig.service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig.signature)
