"""Fingerprints: a task's params, code and input data versions, hashed together."""

from __future__ import annotations

from collections.abc import Mapping

from dagmill.model.ids import digest

__all__ = ["fingerprint"]


def fingerprint(
    params: tuple[tuple[str, str], ...],
    code: tuple[tuple[str, str], ...],
    inputs: Mapping[str, str],
) -> str:
    """Hash of everything a task's output depends on.

    The text hashed is the ``repr`` of tuples of strings: canonical, and made in C.
    """
    return digest(repr((params, code, tuple(sorted(inputs.items())))))
