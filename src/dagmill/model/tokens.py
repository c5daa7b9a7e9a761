"""Access tokens of the REST API: a public id and a secret, bound to one project and a role.

    viewer    reads (jobs, runs, logs, the project and its use)
    operator  + runs jobs, cancels and reruns runs, pauses, resumes and backfills jobs
    admin     + builds and deletes jobs, deletes runs, manages tokens, sets the quota

The secret is shown once, as the token is created; the record keeps only a slow hash of
it and a copy encrypted with the server's key (see :mod:`dagmill.services.tokens`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dagmill.errors import DefinitionError

__all__ = [
    "ROLES",
    "TOKEN_ID",
    "NewToken",
    "TokenInfo",
    "check_role",
    "role_allows",
    "split_bearer",
]

ROLES = ("viewer", "operator", "admin")
# "dm_" + 16 characters of lowercase base32: no "." (it separates id and secret in a
# Bearer value) and no "/" (it separates the parts of a SigV4 credential)
TOKEN_ID = re.compile(r"^dm_[a-z2-7]{16}$")


def check_role(role: str) -> str:
    """``role`` if it is one, lower-cased; else a DefinitionError naming the roles."""
    value = role.strip().lower()
    if value not in ROLES:
        raise DefinitionError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return value


def role_allows(role: str, needed: str) -> bool:
    """Whether a token of ``role`` may do what needs ``needed`` (roles are ordered)."""
    return ROLES.index(role) >= ROLES.index(needed)


def split_bearer(value: str) -> tuple[str, str] | None:
    """(token id, secret) of a Bearer value ``<id>.<secret>``, or None if it is not one."""
    token_id, sep, secret = value.strip().partition(".")
    if not sep or not secret or not TOKEN_ID.match(token_id):
        return None
    return token_id, secret


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as recorded, without its secret."""

    id: str
    project: str
    role: str
    name: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def usable(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: its record and its secret, shown this once."""

    info: TokenInfo
    secret: str

    @property
    def bearer(self) -> str:
        """What goes after ``Authorization: Bearer`` (and in ``DAGMILL_TOKEN``)."""
        return f"{self.info.id}.{self.secret}"
