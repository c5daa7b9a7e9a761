"""Reading task output back: an attempt's byte range of its log file, and following a run.

Following polls the files a few times a second (like ``tail -f``), so a printed line shows
within a second; it ends once the run has ended and every line has been read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dagmill.model.runs import RunTaskInfo, TaskAttempt
from dagmill.store import Store

__all__ = ["LogChunk", "attempt_text", "follow", "run_logs"]

_FINAL = ("SUCCESS", "FAILED", "CANCELLED")
_POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Output of one attempt of one task (all of it, or what is new since the last chunk)."""

    task_id: str
    attempt: int
    text: str


def _read(path: str, start: int, end: int | None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))
    except FileNotFoundError:
        return b""


def attempt_text(a: TaskAttempt) -> str:
    """What one attempt wrote ("" if it was not captured)."""
    if a.log_path is None or a.log_start is None:
        return ""
    return _read(a.log_path, a.log_start, a.log_end).decode("utf-8", "replace")


def _selected(tasks: list[RunTaskInfo], task: str | None) -> list[RunTaskInfo]:
    if task is None:
        return tasks
    exact = [t for t in tasks if t.task_id == task]
    return exact or [t for t in tasks if t.family == task or t.task_id.startswith(task)]


def run_logs(store: Store, run_id: str, task: str | None = None) -> list[LogChunk]:
    """Every captured attempt of a run (or of the tasks matching ``task``), in order."""
    tasks = _selected(store.get_run_tasks(run_id), task)
    chunks = [
        LogChunk(t.task_id, a.attempt, attempt_text(a))
        for t in tasks
        for a in t.history
        if a.log_path is not None
    ]
    return sorted(chunks, key=lambda c: _started(tasks, c))


def _started(tasks: list[RunTaskInfo], c: LogChunk) -> float:
    for t in tasks:
        if t.task_id == c.task_id:
            for a in t.history:
                if a.attempt == c.attempt:
                    return a.started_at or 0.0
    return 0.0


def follow(
    store: Store, run_id: str, task: str | None = None, stop: Callable[[], bool] | None = None
) -> Iterator[LogChunk]:
    """New output of a run as it is written, until the run has ended and all is read, or
    ``stop()`` is true (its reader went away while the run goes on)."""
    read_to: dict[tuple[str, int], int] = {}
    while True:
        run = store.get_run(run_id)
        done = run is None or run.status in _FINAL
        attempts = sorted(
            ((t, a) for t in _selected(store.get_run_tasks(run_id), task) for a in t.history),
            key=lambda ta: ta[1].started_at or 0.0,
        )
        for t, a in attempts:
            if a.log_path is None or a.log_start is None:
                continue
            key = (t.task_id, a.attempt)
            start = read_to.get(key, a.log_start)
            data = _read(a.log_path, start, a.log_end)
            if a.log_end is None:  # still running: only whole lines, the rest next time
                data = data[: data.rfind(b"\n") + 1]
            if data:
                read_to[key] = start + len(data)
                yield LogChunk(t.task_id, a.attempt, data.decode("utf-8", "replace"))
        if done or (stop is not None and stop()):
            return
        time.sleep(_POLL_SECONDS)
