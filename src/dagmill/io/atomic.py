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
from collections.abc import Iterator

__all__ = ["TMP_MARKER", "atomic_path", "ensure_dir"]

TMP_MARKER = ".dagmill-tmp-"
_counter = itertools.count()


def ensure_dir(path: str) -> None:
    """Create a folder (and parents) unless it exists (it may have been deleted meanwhile)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    final = os.fspath(path)
    folder, name = os.path.split(final)
    ensure_dir(folder or ".")
    tmp = os.path.join(folder, f".{name}{TMP_MARKER}{os.getpid()}-{next(_counter)}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
