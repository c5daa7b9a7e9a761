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

__all__ = ["TMP_MARKER", "atomic_path", "ensure_dir"]

TMP_MARKER = ".dagmill-tmp-"
_counter = itertools.count()


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
        self.final = os.fspath(path)
        folder, name = os.path.split(self.final)
        ensure_dir(folder or ".")
        self.tmp = os.path.join(folder, f".{name}{TMP_MARKER}{os.getpid()}-{next(_counter)}")

    def __enter__(self) -> str:
        return self.tmp

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if et is None:
            os.replace(self.tmp, self.final)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
