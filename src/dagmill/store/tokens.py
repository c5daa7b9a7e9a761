"""Access tokens in the run record (their secrets only hashed and encrypted: the caller,
:mod:`dagmill.services.tokens`, does both before anything reaches here)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from dagmill.model.tokens import TokenInfo

__all__ = ["TokenRecord", "TokenStore"]

_COLS = "id, project, role, name, created_at, expires_at, revoked_at, last_used_at"


class _Backend(Protocol):
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def _tx(self) -> AbstractContextManager[Any]: ...


def _info(r: Sequence[Any]) -> TokenInfo:
    return TokenInfo(*r[:8])


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token's row with what checks its secret."""

    info: TokenInfo
    secret_hash: str
    secret_enc: str


class TokenStore:
    """The store's token functions (mixed into ``Store``)."""

    def create_token(
        self: _Backend, info: TokenInfo, secret_hash: str, secret_enc: str
    ) -> TokenInfo:
        with self._tx():
            self._execute(
                f"INSERT INTO tokens ({_COLS}, secret_hash, secret_enc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.project,
                    info.role,
                    info.name,
                    info.created_at,
                    info.expires_at,
                    info.revoked_at,
                    info.last_used_at,
                    secret_hash,
                    secret_enc,
                ),
            )
        return info

    def get_token(self: _Backend, token_id: str) -> TokenInfo | None:
        row = self._execute(f"SELECT {_COLS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return _info(row) if row else None

    def token_record(self: _Backend, token_id: str) -> TokenRecord | None:
        """The token with its hash and encrypted secret (to check a request with)."""
        row = self._execute(
            f"SELECT {_COLS}, secret_hash, secret_enc FROM tokens WHERE id = ?", (token_id,)
        ).fetchone()
        return TokenRecord(_info(row), row[8], row[9]) if row else None

    def list_tokens(
        self: _Backend, project: str | None = None, revoked: bool = True
    ) -> list[TokenInfo]:
        """Newest first; ``project``: only its tokens; ``revoked``: include revoked ones."""
        where, args = [], []
        if project is not None:
            where.append("project = ?")
            args.append(project)
        if not revoked:
            where.append("revoked_at IS NULL")
        sql = f"SELECT {_COLS} FROM tokens"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_info(r) for r in self._execute(sql + " ORDER BY created_at DESC, id", args)]

    def revoke_token(self: _Backend, token_id: str, now: float | None = None) -> bool:
        """Revoke a token (it fails from its next request on); False if it was already."""
        with self._tx():
            cur = self._execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time() if now is None else now, token_id),
            )
        return bool(cur.rowcount)

    def token_used(self: _Backend, token_id: str, at: float) -> None:
        """Note when the token was last used."""
        with self._tx():
            self._execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (at, token_id))
