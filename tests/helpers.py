"""Small helpers the test files share."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def wait_for(
    cond: Callable[[], Any], timeout: float = 5.0, what: str | None = None, every: float = 0.02
) -> Any:
    """Poll ``cond`` until it is truthy and return its value. At ``timeout``: fail the test
    saying ``what`` was awaited, or (without ``what``) return the last, falsy, value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            break
        time.sleep(every)
    if not value and what is not None:
        pytest.fail(f"timed out after {timeout}s waiting for {what}")
    return value


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` on a tmpfs of ``size`` (a disk that fills up), unmounted afterwards.
    Mounting needs root: CI runs as root, so there it must work; elsewhere the test is
    skipped with the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
