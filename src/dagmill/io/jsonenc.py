"""A JSON encoder made once, for lines and rows written per task.

``json.dumps`` with any option (and ``JSONEncoder.encode``) builds a new C encoder on
every call; this builds it once. The output is exactly ``json.dumps`` with the same
separators (tests/test_records.py pins it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["encoder"]


def encoder(item_separator: str, key_separator: str) -> Callable[[Any], str]:
    """``json.dumps(o, separators=(item_separator, key_separator))`` as a function."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain way
        return json.JSONEncoder(separators=(item_separator, key_separator)).encode
    enc = make(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
        None, key_separator, item_separator, False, False, True,
    )  # fmt: skip

    def encode(o: Any) -> str:
        return "".join(enc(o, 0))

    return encode
