"""Deterministic identities.

Task ids follow luigi's format (``Family_<first params>_<md5 prefix>``), so a data folder
written by d6tflow/luigi lines up with the one dagmill writes.

    >>> task_id("TaskTrain", {"do_preprocess": "True"})
    'TaskTrain_True_e00389f8b2'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _enc

__all__ = ["digest", "task_id"]

_INCLUDE_PARAMS = 20  # d6tflow raises luigi's 3 and 16 to 20 and 64
_TRUNCATE_PARAMS = 64
_TRUNCATE_HASH = 10
_INVALID = re.compile(r"[^A-Za-z0-9_]")


_NO_PARAMS_HASH = hashlib.md5(b"{}", usedforsecurity=False).hexdigest()[:_TRUNCATE_HASH]


def task_id(family: str, params: Mapping[str, str]) -> str:
    """The id of a task: family, the first 20 canonical param values, a hash of all."""
    if not params:
        return f"{family}__{_NO_PARAMS_HASH}"
    # the same text as json.dumps(params, separators=(",", ":"), sort_keys=True), faster
    param_str = "{" + ",".join(f"{_enc(k)}:{_enc(params[k])}" for k in sorted(params)) + "}"
    param_hash = hashlib.md5(param_str.encode("utf-8"), usedforsecurity=False).hexdigest()
    names = sorted(params)[:_INCLUDE_PARAMS]
    summary = _INVALID.sub("_", "_".join(params[n][:_TRUNCATE_PARAMS] for n in names))
    return f"{family}_{summary}_{param_hash[:_TRUNCATE_HASH]}"


def digest(text: str) -> str:
    """A short stable hash of a string (fingerprints, code versions)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()
