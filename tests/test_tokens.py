"""Access tokens in the run record: secrets never stored in plain text, the server's key,
expiry, revocation, and the check of a Bearer secret (services/tokens, model/tokens)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.model.tokens import TOKEN_ID, check_role, role_allows, split_bearer
from dagmill.services import tokens
from dagmill.store import open_store


def test_a_token_is_made_with_its_secret_shown_once_and_kept_only_hashed_and_encrypted(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGMILL_DATABASE_URL", database_url)
    made = tokens.create_token("default", "Operator", "ci")
    assert TOKEN_ID.match(made.info.id) and made.info.role == "operator"
    assert made.bearer == f"{made.info.id}.{made.secret}" and len(made.secret) >= 40
    with open_store() as store:
        record = store.token_record(made.info.id)
        assert record is not None
        assert made.secret not in record.secret_hash and made.secret not in record.secret_enc
        assert record.secret_hash.startswith("scrypt$")
        listed = store.list_tokens("default")
    assert [t.id for t in listed] == [made.info.id]
    assert not hasattr(listed[0], "secret")
    # the secret checks, a wrong one does not; SigV4's view gets the secret back
    assert tokens.check_bearer(made.info.id, made.secret) is not None
    assert tokens.check_bearer(made.info.id, made.secret + "x") is None
    assert tokens.check_bearer(made.info.id, made.secret[:-1]) is None
    found = tokens.token_secret(made.info.id)
    assert found is not None and found[1] == made.secret
    assert tokens.check_bearer("dm_aaaaaaaaaaaaaaaa", made.secret) is None


def test_revoked_and_expired_tokens_fail_from_the_next_check_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = tokens.create_token("default", "viewer", "soon", expires_at=time.time() + 60)
    assert tokens.check_bearer(made.info.id, made.secret) is not None  # cached as verified
    now = time.time()
    assert tokens.check_bearer(made.info.id, made.secret, now=now + 61) is None
    assert tokens.token_secret(made.info.id, now=now + 61) is None
    tokens.revoke_token(made.info.id)
    assert tokens.check_bearer(made.info.id, made.secret) is None
    assert tokens.token_secret(made.info.id) is None
    assert tokens.get_token(made.info.id).revoked_at is not None
    assert tokens.list_tokens("default") == []
    assert [t.id for t in tokens.list_tokens("default", revoked=True)] == [made.info.id]


def test_last_used_is_noted_at_most_once_a_minute() -> None:
    made = tokens.create_token("default", "viewer", "x")
    now = time.time()
    first = tokens.check_bearer(made.info.id, made.secret, now=now)
    assert first is not None and first.last_used_at == now
    tokens.check_bearer(made.info.id, made.secret, now=now + 30)
    assert tokens.get_token(made.info.id).last_used_at == now
    tokens.check_bearer(made.info.id, made.secret, now=now + 61)
    assert tokens.get_token(made.info.id).last_used_at == now + 61


def test_another_projects_token_is_no_token_to_a_project() -> None:
    from dagmill.services.projects import create_project

    create_project("ml")
    made = tokens.create_token("ml", "admin", "x")
    with pytest.raises(DefinitionError, match="no token"):
        tokens.get_token(made.info.id, project="default")
    with pytest.raises(DefinitionError, match="no token"):
        tokens.revoke_token(made.info.id, project="default")
    assert tokens.get_token(made.info.id, project="ml").project == "ml"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": "nope", "role": "viewer", "name": "x"}, "nope"),
        ({"project": "default", "role": "root", "name": "x"}, "viewer, operator, admin"),
        ({"project": "default", "role": "viewer", "name": " "}, "1 to 100 characters"),
        (
            {"project": "default", "role": "viewer", "name": "x", "expires_at": 1.0},
            "future date",
        ),
    ],
)
def test_bad_token_requests_are_refused_with_what_to_do(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        tokens.create_token(**kwargs)
    with open_store() as store:
        assert store.list_tokens() == []  # nothing half-written


def test_the_key_file_is_made_once_with_mode_0600() -> None:
    key = tokens.server_key()
    path = Path(settings.home()) / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.server_key() == key and len(key) == 32


def test_a_secret_encrypted_under_another_key_says_which_key_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGMILL_SECRET_KEY", "k" * 40)
    made = tokens.create_token("default", "viewer", "x")
    assert tokens.token_secret(made.info.id) is not None
    assert not (Path(settings.home()) / "secret.key").exists()  # the variable wins
    monkeypatch.setenv("DAGMILL_SECRET_KEY", "other" * 10)
    with pytest.raises(tokens.ServerKeyError, match="another server key"):
        tokens.token_secret(made.info.id)
    # a Bearer secret does not need the key: the hash checks it
    assert tokens.check_bearer(made.info.id, made.secret) is not None
    monkeypatch.setenv("DAGMILL_SECRET_KEY", "short")
    with pytest.raises(tokens.ServerKeyError, match="32 or more"):
        tokens.server_key()


def test_roles_are_ordered_and_bearer_values_are_split_strictly() -> None:
    assert role_allows("admin", "operator") and role_allows("operator", "operator")
    assert not role_allows("viewer", "operator")
    assert check_role(" ADMIN ") == "admin"
    assert split_bearer("dm_abcdefghijklmnop.s3cr.et") == ("dm_abcdefghijklmnop", "s3cr.et")
    for bad in ["", "dm_abcdefghijklmnop", "dm_abcdefghijklmnop.", "x.y", "dm_ABC.x"]:
        assert split_bearer(bad) is None


def test_the_remote_settings_come_from_variables_or_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("DAGMILL_CONFIG", os.fspath(config))
    assert settings.remote() is None
    config.write_text(
        '[default]\nserver = "http://a:8080/"\ntoken = "t1"\n'
        '[profiles.prod]\nserver = "https://prod"\ntoken = "t2"\n'
    )
    assert settings.remote() == settings.RemoteConfig("http://a:8080", "t1")
    monkeypatch.setenv("DAGMILL_PROFILE", "prod")
    assert settings.remote() == settings.RemoteConfig("https://prod", "t2", "prod")
    monkeypatch.setenv("DAGMILL_TOKEN", "t3")  # a variable overrides the profile's key
    assert settings.remote() == settings.RemoteConfig("https://prod", "t3", "prod")
    monkeypatch.setenv("DAGMILL_PROFILE", "nope")
    with pytest.raises(DefinitionError, match="no profile 'nope'"):
        settings.remote()
    monkeypatch.delenv("DAGMILL_PROFILE")
    monkeypatch.delenv("DAGMILL_TOKEN")
    config.write_text("[default\n")
    with pytest.raises(DefinitionError, match="not valid TOML"):
        settings.remote()
    config.unlink()
    monkeypatch.setenv("DAGMILL_SERVER", "http://b")
    with pytest.raises(DefinitionError, match="needs an access token"):
        settings.remote()
