"""Which values are secrets: those of environment variables whose names say SECRET,
TOKEN, PASSWORD, API_KEY ..., or that ``DAGMILL_SECRET_ENV`` lists (comma-separated).
Their values are masked in logs and error messages before anything reaches the disk."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "mask", "secret_values"]

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY", re.I)
MASK = "***"
_NOT_SECRET = {"DAGMILL_RUN_TOKEN"}  # dagmill's own marker of a run's processes


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values to mask (longest first): variables named like secrets, and those listed in
    ``DAGMILL_SECRET_ENV``. Values under 4 characters are not masked (they would mask
    half the log)."""
    named = {n.strip() for n in environ.get("DAGMILL_SECRET_ENV", "").split(",") if n.strip()}
    values = {
        v
        for k, v in environ.items()
        if (k in named or (_SECRET_NAME.search(k) and k not in _NOT_SECRET)) and len(v) >= 4
    }
    return sorted(values, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text
