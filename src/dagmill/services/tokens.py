"""Access tokens: create, list, revoke, and check the secret a request presents.

A secret is never kept in plain text. The record holds:

- a slow hash (scrypt), which checks a Bearer secret. A secret that passed it is
  remembered by this process (its SHA-256, in memory) so that later requests cost a
  lookup, not 50 ms of scrypt; the token's row is still read on every request, so a
  revocation or an expiry holds from the next request on;
- the secret encrypted with the server's key (AES-GCM, the token id as associated
  data), because a SigV4 signature can only be checked by computing it again.

The server's key is ``DAGMILL_SECRET_KEY`` (any string of 32 characters or more; servers
sharing a database share it) or else the file ``$DAGMILL_HOME/secret.key``, created with
mode 0600 the first time a key is needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.model.tokens import NewToken, TokenInfo, check_role
from dagmill.services.remote import remote_ok
from dagmill.store import open_store

if TYPE_CHECKING:
    from dagmill.store import Store

__all__ = [
    "ServerKeyError",
    "check_bearer",
    "create_token",
    "get_token",
    "list_tokens",
    "revoke_token",
    "server_key",
    "token_secret",
]

_KEY_ENV = "DAGMILL_SECRET_KEY"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # 16 MiB, ~50 ms: the cost of a guess
_USED_EVERY = 60.0  # last_used_at is written at most once a minute per token
_B32 = "abcdefghijklmnopqrstuvwxyz234567"

_verified: dict[str, bytes] = {}  # token id -> sha256 of a secret that passed scrypt
_verified_lock = threading.Lock()
_file_keys: dict[str, bytes] = {}  # key file -> the key it holds


class ServerKeyError(DefinitionError):
    """The server's key is missing, unreadable or not the one a secret was encrypted with."""


def _key_file() -> str:
    return os.path.join(settings.home(), "secret.key")


def server_key() -> bytes:
    """The 32-byte key that encrypts the tokens' secrets (created on first need)."""
    text = os.environ.get(_KEY_ENV)
    if text is not None:
        if len(text.strip()) < 32:
            raise ServerKeyError(
                f"{_KEY_ENV} is {len(text.strip())} characters: a key is 32 or more (e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return hashlib.sha256(text.strip().encode()).digest()
    path = _key_file()
    if path in _file_keys:  # read once per process: each SigV4 request needs it
        return _file_keys[path]
    try:
        with open(path, "rb") as f:
            raw = f.read().strip()
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        raw = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            with open(path, "rb") as f:
                raw = f.read().strip()
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(raw + b"\n")
    if len(raw) < 32:
        raise ServerKeyError(f"{path} holds no key (expected 64 hex digits): delete it to make one")
    key = _file_keys[path] = hashlib.sha256(raw).digest()
    return key


def _hash(secret: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{b64(salt).decode()}${b64(digest).decode()}"


def _hash_matches(secret: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.urlsafe_b64decode(salt),
            dklen=len(want),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _encrypt(token_id: str, secret: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(server_key()).encrypt(nonce, secret.encode(), token_id.encode())
    return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def _decrypt(token_id: str, stored: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.urlsafe_b64decode(stored.removeprefix("v1:"))
    try:
        return AESGCM(server_key()).decrypt(raw[:12], raw[12:], token_id.encode()).decode()
    except InvalidTag:
        raise ServerKeyError(
            f"the secret of token {token_id} was encrypted with another server key: give "
            f"this server the key of the one that created it ({_KEY_ENV}, or "
            f"{_key_file()}), or create a new token"
        ) from None


def _new_id() -> str:
    return "dm_" + "".join(secrets.choice(_B32) for _ in range(16))


_LONGEST = 36500 * 86400.0  # seconds a token may live (the API's expires_in_days bound)


@remote_ok
def create_token(
    project: str,
    role: str,
    name: str,
    expires_at: float | None = None,
) -> NewToken:
    """A new token of ``project`` with ``role``; its secret is in the result, and only
    there. ``expires_at``: seconds since the epoch (None: it does not expire)."""
    from dagmill.services.projects import get_project

    role = check_role(role)
    name = name.strip()
    if not name or len(name) > 100:
        raise DefinitionError("a token's name is 1 to 100 characters (what it is for: 'ci')")
    now = time.time()
    if expires_at is not None and expires_at <= now:
        raise DefinitionError("the token would expire before it is made: give a future date")
    # past that, a date is no date (inf, 1e300): it could not be shown, nor the list it is in
    if expires_at is not None and not expires_at <= now + _LONGEST:
        raise DefinitionError(
            "a token expires within 100 years (36500 days) of being made: give an earlier "
            "date, or none for a token that does not expire"
        )
    get_project(project)  # refused with a clear message if there is no such project
    secret = secrets.token_urlsafe(32)
    info = TokenInfo(_new_id(), project, role, name, now, expires_at)
    with open_store() as store:
        store.create_token(info, _hash(secret), _encrypt(info.id, secret))
    return NewToken(info, secret)


@remote_ok
def list_tokens(project: str | None = None, revoked: bool = False) -> list[TokenInfo]:
    """The tokens (of ``project``), newest first; ``revoked``: revoked ones too."""
    with open_store() as store:
        return store.list_tokens(project, revoked)


@remote_ok
def get_token(token_id: str, project: str | None = None) -> TokenInfo:
    """One token (of ``project`` if given: another project's is "no token")."""
    with open_store() as store:
        info = store.get_token(token_id)
    if info is None or (project is not None and info.project != project):
        raise DefinitionError(f"no token {token_id!r}: see `dagmill tokens list`")
    return info


@remote_ok
def revoke_token(token_id: str, project: str | None = None) -> TokenInfo:
    """Revoke a token: requests with it fail from the next one on."""
    info = get_token(token_id, project)
    with open_store() as store:
        store.revoke_token(info.id)
        info = store.get_token(info.id) or info
    with _verified_lock:
        _verified.pop(info.id, None)
    return info


def _note_use(store: Store, info: TokenInfo, now: float) -> TokenInfo:
    if info.last_used_at is None or now - info.last_used_at >= _USED_EVERY:
        store.token_used(info.id, now)
        info = replace(info, last_used_at=now)
    return info


def verified(token_id: str, secret: str) -> bool:
    """Whether this process has seen ``secret`` pass the slow hash for the token (then
    :func:`check_bearer` costs one read of the token's row, no scrypt)."""
    with _verified_lock:
        known = _verified.get(token_id)
    return known is not None and hmac.compare_digest(
        known, hashlib.sha256(secret.encode()).digest()
    )


def check_bearer(token_id: str, secret: str, now: float | None = None) -> TokenInfo | None:
    """The token if ``secret`` is its secret and it is usable now; else None."""
    now = time.time() if now is None else now
    with open_store() as store:
        record = store.token_record(token_id)
        if record is None or not record.info.usable(now):
            return None
        seen = hashlib.sha256(secret.encode()).digest()
        with _verified_lock:
            known = _verified.get(token_id)
        if known is None or not hmac.compare_digest(known, seen):
            if not _hash_matches(secret, record.secret_hash):
                return None
            with _verified_lock:
                _verified[token_id] = seen
        return _note_use(store, record.info, now)


def token_secret(token_id: str, now: float | None = None) -> tuple[TokenInfo, str] | None:
    """The usable token and its secret (to check a SigV4 signature with), or None."""
    now = time.time() if now is None else now
    with open_store() as store:
        record = store.token_record(token_id)
        if record is None or not record.info.usable(now):
            return None
        secret = _decrypt(token_id, record.secret_enc)
        return _note_use(store, record.info, now), secret
