"""`dagmill tokens` on the server's machine (direct database access): create, list, show,
revoke; the secret is printed once; --expires periods and dates; bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dagmill.cli.tokens import parse_expiry
from dagmill.errors import DefinitionError
from dagmill.services.tokens import check_bearer


def dagmill_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}
    for name in ("DAGMILL_SERVER", "DAGMILL_TOKEN", "DAGMILL_PROFILE"):
        env.pop(name, None)
    env["DAGMILL_CONFIG"] = os.fspath(cwd / "no-config.toml")
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(*args: str, cwd: Path) -> str:
    out = dagmill_cli(*args, cwd=cwd)
    assert out.returncode == 0, f"dagmill {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def create(tmp_path: Path, *args: str) -> dict[str, Any]:
    made: dict[str, Any] = json.loads(ok("tokens", "create", *args, "--json", cwd=tmp_path))
    return made


def test_create_prints_the_secret_once_with_how_to_use_it(tmp_path: Path) -> None:
    out = ok("tokens", "create", "--role", "operator", "--name", "ci", cwd=tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("created token dm_") and "role operator in project default" in first
    token_id = first.split()[2]
    secret = out.split("secret (shown this once", 1)[1].splitlines()[1].strip()
    assert len(secret) == 43
    assert f"DAGMILL_TOKEN={token_id}.{secret}" in out
    assert f"Authorization: Bearer {token_id}.{secret}" in out
    assert f"token id:   {token_id}" in out and f"secret key: {secret}" in out
    assert "expires never" in first
    # the secret works, and nothing prints it again
    info = check_bearer(token_id, secret)
    assert info is not None and info.role == "operator" and info.name == "ci"
    for args in (["list"], ["list", "--json"], ["list", "--all", "--wide"], ["show", token_id],
                 ["show", token_id, "--json"]):  # fmt: skip
        assert secret not in ok("tokens", *args, cwd=tmp_path), args


def test_list_show_revoke(tmp_path: Path) -> None:
    ok("projects", "create", "ml", cwd=tmp_path)
    viewer = create(tmp_path, "--role", "viewer", "--name", "dashboard")
    admin = create(
        tmp_path, "--project", "ml", "--role", "ADMIN", "--name", "ops", "--expires", "30d"
    )
    assert admin["role"] == "admin" and admin["project"] == "ml"
    assert admin["bearer"] == f"{admin['id']}.{admin['secret']}"
    assert admin["expires_at_iso"].endswith("+00:00") and admin["revoked_at"] is None

    listed = json.loads(ok("tokens", "list", "--json", cwd=tmp_path))
    assert [t["id"] for t in listed] == [admin["id"], viewer["id"]]  # newest first
    assert all("secret" not in t for t in listed)
    mine = json.loads(ok("tokens", "list", "--project", "ml", "--json", cwd=tmp_path))
    assert [t["id"] for t in mine] == [admin["id"]]

    table = ok("tokens", "list", cwd=tmp_path)
    assert max(map(len, table.splitlines())) <= 80, table
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["TOKEN", "PROJECT", "ROLE"]
    row = next(r for r in rows if admin["id"] in r)
    assert "ml" in row and "admin" in row and "active" in row and "ops" in row

    shown = json.loads(ok("tokens", "show", viewer["id"], "--json", cwd=tmp_path))
    assert shown == {k: v for k, v in viewer.items() if k not in ("secret", "bearer")}
    text = ok("tokens", "show", viewer["id"], cwd=tmp_path)
    assert "dashboard" in text and "viewer" in text and "active" in text

    out = ok("tokens", "revoke", viewer["id"], cwd=tmp_path)
    assert f"revoked token {viewer['id']} (dashboard)" in out
    assert check_bearer(viewer["id"], viewer["secret"]) is None
    assert [t["id"] for t in json.loads(ok("tokens", "list", "--json", cwd=tmp_path))] == [
        admin["id"]
    ]
    everything = json.loads(ok("tokens", "list", "--all", "--json", cwd=tmp_path))
    assert {t["id"]: t["revoked_at"] is not None for t in everything} == {
        admin["id"]: False,
        viewer["id"]: True,
    }
    assert "revoked" in ok("tokens", "show", viewer["id"], cwd=tmp_path)


def test_expiry_periods_and_dates() -> None:
    now = 1_790_000_000.0  # 2026-09-21
    assert parse_expiry("30d", now) == now + 30 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("2w", now) == now + 14 * 86400
    assert parse_expiry("2027-01-01", now) == 1798761600.0  # midnight UTC
    assert parse_expiry("2027-01-01T12:00+01:00", now) == 1798761600.0 + 11 * 3600
    for bad in ("30", "soon", "0d", "2020-01-01", "30y"):
        with pytest.raises(DefinitionError):
            parse_expiry(bad, now)


def test_an_expiring_token_says_when(tmp_path: Path) -> None:
    made = create(tmp_path, "--role", "viewer", "--name", "temp", "--expires", "2099-01-01")
    assert made["expires_at_iso"] == "2099-01-01T00:00:00.000+00:00"
    assert "2099-01-01" in ok("tokens", "list", cwd=tmp_path)
    assert abs(create(tmp_path, "--role", "viewer", "--name", "w", "--expires", "1w")["expires_at"]
               - (time.time() + 7 * 86400)) < 60  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--role", "boss", "--name", "x"], "'boss' is not one of 'viewer', 'operator', 'admin'"),
        (["--role", "viewer"], "Missing option '--name'"),
        (["--role", "viewer", "--name", " "], "a token's name is 1 to 100 characters"),
        (["--role", "viewer", "--name", "x", "--expires", "soon"], "expected a period"),
        (["--role", "viewer", "--name", "x", "--expires", "2001-01-01"], "in the past"),
        (["--role", "viewer", "--name", "x", "--project", "nope"], "no project 'nope'"),
    ],
    ids=["bad-role", "no-name", "blank-name", "bad-expiry", "past-expiry", "no-project"],
)
def test_bad_input_to_create_exits_2_and_makes_no_token(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = dagmill_cli("tokens", "create", *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""
    assert json.loads(ok("tokens", "list", "--all", "--json", cwd=tmp_path)) == []


def test_unknown_token_exits_2(tmp_path: Path) -> None:
    for args in (["show", "dm_aaaaaaaaaaaaaaaa"], ["revoke", "dm_aaaaaaaaaaaaaaaa"]):
        out = dagmill_cli("tokens", *args, cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "no token 'dm_aaaaaaaaaaaaaaaa'" in out.stderr


def test_dagmill_server_refuses_server_and_token_options(tmp_path: Path) -> None:
    out = dagmill_cli("--server", "http://127.0.0.1:1", "server", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "works on this machine's database" in out.stderr
