"""The server's log: one line per event on stderr, plain and greppable by default
(``2026-12-02T05:20:01.123Z INFO slot_fired job=j3fa9c24b1e run=20261202-...``), or one
JSON object per line with ``--log-json`` (``{"at": ..., "level": ..., "event": ...}``)."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

__all__ = ["ServerLog"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _value(v: Any) -> str:
    text = str(v)
    # control characters (a NUL, \r, a terminal escape from a request's path) are quoted
    # as JSON escapes: a client must not write raw bytes or fake lines into the log
    if not text or not text.isprintable() or any(c in text for c in ' "='):
        return json.dumps(text)
    return text


class ServerLog:
    """``log(event, level="info", **fields)``; fields that are None are left out."""

    def __init__(self, as_json: bool = False, stream: IO[str] | None = None, level: str = "info"):
        self._json = as_json
        self._stream = stream or sys.stderr
        self._min = _LEVELS[level]
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        if _LEVELS.get(level, 20) < self._min:
            return
        at = time.time()
        fields = {k: v for k, v in fields.items() if v is not None}
        if self._json:
            line = json.dumps(
                {"at": round(at, 3), "at_iso": _iso(at), "level": level, "event": event, **fields},
                default=str,
            )
        else:
            pairs = " ".join(f"{k}={_value(v)}" for k, v in fields.items())
            line = f"{_iso(at)} {level.upper():<5} {event}" + (f" {pairs}" if pairs else "")
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed (a detached service): keep serving
                pass
