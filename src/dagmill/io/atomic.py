"""Atomic writes: write to a hidden temporary name in the same folder, rename into place.

A crash, an exception or a cancellation leaves either the old file or none, never a
half-written file under the real name.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(p) as tmp, open(tmp, "w") as f:
    ...     _ = f.write("done")
    >>> p.read_text()
    'done'
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterable

from dagmill.io.owners import process_gone

__all__ = ["TMP_MARKER", "atomic_path", "ensure_dir", "remove_stale_temporaries", "temp_path"]

TMP_MARKER = ".dagmill-tmp-"
_counter = itertools.count()
# the writer's host is in the name: several machines may share one data folder, and only
# this host can tell whether one of its own processes is gone
_HOST = "".join(c if c.isalnum() or c in ".-_" else "_" for c in os.uname().nodename)
_OWNER = re.compile(re.escape(TMP_MARKER) + r"(\d+)(?:-\d+)?(?:@(.*))?$")


def temp_path(final: str, unique: bool = True) -> str:
    """``folder/.<name>.dagmill-tmp-<pid>[-<n>]@<host>``: hidden, beside ``final``, and
    naming the process that writes it, so that one left by a killed process can be told
    from one being written (``remove_stale_temporaries``)."""
    n = f"-{next(_counter)}" if unique else ""
    i = final.rfind("/")
    if i > 0 and final[i - 1] != "/":  # /a/b/name: what os.path.split + join give
        return f"{final[: i + 1]}.{final[i + 1 :]}{TMP_MARKER}{os.getpid()}{n}@{_HOST}"
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}{TMP_MARKER}{os.getpid()}{n}@{_HOST}")


def remove_stale_temporaries(finals: Iterable[str]) -> list[str]:
    """Remove the temporaries of these outputs that a process of this host left when it
    was killed (its pid is gone); returns the paths removed. One of another host, or of a
    live process, stays."""
    by_folder: dict[str, set[str]] = {}
    for final in finals:
        final = final if isinstance(final, str) else os.fspath(final)
        i = final.rfind("/")
        if i > 0 and final[i - 1] != "/":  # /a/b/name: what os.path.split gives, cheaper
            folder, name = final[:i], final[i + 1 :]
        else:
            folder, name = os.path.split(final)
        names = by_folder.get(folder or ".")
        if names is None:
            by_folder[folder or "."] = {name}
        else:
            names.add(name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            i = entry.find(TMP_MARKER)
            if i < 1 or entry[0] != "." or entry[1:i] not in names:
                continue
            m = _OWNER.match(entry, i)
            if m is None or (m.group(2) is not None and m.group(2) != _HOST):
                continue
            if process_gone(int(m.group(1))):
                path = os.path.join(folder, entry)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    return removed


def ensure_dir(path: str) -> None:
    """Create a folder (and parents) unless it exists (it may have been deleted meanwhile)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)


class atomic_path:
    """``with atomic_path(path) as tmp:`` yields a temporary path beside ``path`` and
    renames it to ``path`` if the block succeeds (a small class: this runs once per output,
    and a generator-based context manager costs more)."""

    __slots__ = ("final", "tmp")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.final = final = path if isinstance(path, str) else os.fspath(path)
        i = final.rfind("/")
        # /a/b/name: its folder without os.path.dirname's general case
        folder = final[:i] if i > 0 and final[i - 1] != "/" else os.path.dirname(final)
        ensure_dir(folder or ".")
        self.tmp = temp_path(final)

    def __enter__(self) -> str:
        return self.tmp

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if et is None:
            os.replace(self.tmp, self.final)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
