"""The API a processor module uses (stdlib only, so it imports in any environment).

    from dagmill import processor

    input_data, output_data = processor.fetch_datanodes_information()
    df = processor.load("raw_data")          # by the data node's format
    lr = processor.params().get("lr", 0.1)
    day = processor.slot().date()            # the run's slot, in the job's timezone
    processor.save("clean_data", df)

Outputs go to temporary names that dagmill renames into place when the module succeeds,
so a failed module never leaves an output that looks complete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pickle
import sys
import traceback
from types import TracebackType
from typing import Any

__all__ = ["fetch_datanodes_information", "load", "params", "save", "slot"]

_ENV = "DAGMILL_PROCESSOR_CONTEXT"


def _context() -> dict[str, Any]:
    raw = os.environ.get(_ENV)
    if raw is None:
        raise RuntimeError(
            "dagmill.processor is for modules that dagmill runs as process nodes: run the "
            "pipeline with `dagmill run pipeline.yaml`"
        )
    ctx: dict[str, Any] = json.loads(raw)
    return ctx


def fetch_datanodes_information() -> tuple[list[str], list[str]]:
    """(input sources, output sources) in the order the pipeline declares them."""
    ctx = _context()
    return [i["source"] for i in ctx["inputs"]], [o["source"] for o in ctx["outputs"]]


def params() -> dict[str, Any]:
    """The node's ``params`` from the pipeline file."""
    value: dict[str, Any] = _context()["params"]
    return value


def slot() -> datetime.datetime:
    """The run's slot, timezone-aware in the job's timezone (also in ``DAGMILL_SLOT`` as
    ISO 8601): the time a scheduled run was made for, or, for a manual run, the time the
    run began (in the schedule's timezone, UTC without one); the same time fills the
    ``{slot:...}`` placeholders of the data node sources."""
    ctx = _context()
    text = ctx.get("slot") or os.environ.get("DAGMILL_SLOT", "")
    return datetime.datetime.fromisoformat(text)


def _node(name: str, kind: str) -> dict[str, Any]:
    nodes = _context()[kind]
    for n in nodes:
        if n["name"] == name:
            return dict(n)
    names = ", ".join(n["name"] for n in nodes) or "none"
    raise KeyError(f"{name!r} is not one of this node's {kind}: {names}")


def load(name: str) -> Any:
    """Read an input data node by its format (csv, parquet, json, pickle, text, bytes)."""
    n = _node(name, "inputs")
    fmt, path, opts = n["format"] or "bytes", n["source"], n["options"]
    if fmt in ("csv", "parquet"):
        import pandas as pd

        return pd.read_csv(path, **opts) if fmt == "csv" else pd.read_parquet(path, **opts)
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if fmt == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    if fmt == "text":
        with open(path, encoding="utf-8") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def save(name: str, obj: Any) -> None:
    """Write an output data node by its format."""
    n = _node(name, "outputs")
    fmt, path, opts = n["format"] or "bytes", n["source"], n["options"]
    if fmt == "csv":
        obj.to_csv(path, **{"index": False, **opts})
    elif fmt == "parquet":
        obj.to_parquet(path, **opts)
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, **opts)
    elif fmt == "pickle":
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    elif fmt == "text":
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(obj))
    else:
        with open(path, "wb") as f:
            f.write(obj if isinstance(obj, bytes) else bytes(obj))


_LIBRARIES = tuple(
    {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
)


def _users_frame(frames: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame in the user's own code: not in this file, not in a library
    (pandas, the standard library), not in ``<frozen ...>``."""
    for f in reversed(frames):
        path = os.path.realpath(f.filename)
        if path == os.path.realpath(__file__) or f.filename.startswith("<"):
            continue
        if path.startswith(_LIBRARIES) or "site-packages" in path or "dist-packages" in path:
            continue
        return f
    return frames[-1] if frames else None


def _report(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """Tell dagmill where the module failed: its own file and line first."""
    frame = _users_frame(traceback.extract_tb(tb))
    where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    ctx = _context() if os.environ.get(_ENV) else {}
    fd = ctx.get("error_fd")
    # OSError: the engine is gone, the traceback below is all there is
    with contextlib.suppress(OSError):
        # dagmill's pipe, not another file that a process the module started has there
        if isinstance(fd, int) and os.fstat(fd).st_ino == ctx.get("error_pipe"):
            os.write(fd, f"{kind.__name__}: {value}{where}".encode()[:16384])
    sys.__excepthook__(kind, value, tb)


if os.environ.get(_ENV):
    sys.excepthook = _report
