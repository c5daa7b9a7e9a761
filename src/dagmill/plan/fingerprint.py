"""Fingerprints: a task's params, code and input data versions, hashed together."""

from __future__ import annotations

import json
from collections.abc import Mapping

from dagmill.model.ids import digest

__all__ = ["fingerprint"]


def fingerprint(
    params: tuple[tuple[str, str], ...],
    code: tuple[tuple[str, str], ...],
    inputs: Mapping[str, str],
) -> str:
    """Hash of everything a task's output depends on."""
    return digest(json.dumps([params, code, sorted(inputs.items())], separators=(",", ":")))
