"""Small helpers the test files share."""

from __future__ import annotations

import time
from collections.abc import Callable
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
