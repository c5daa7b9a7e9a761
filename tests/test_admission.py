"""The engine's side of project quotas: tasks that declare resources are admitted against
their project's quota, shared by every run of the project (other processes included);
tasks that declare none never touch the ledger.

Tasks tell the test what happened by appending JSON lines to ``$DM_EVENTS/<name>``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dagmill
from dagmill.errors import DefinitionError, ResourceError
from dagmill.io.wake import Waker, poke
from dagmill.model.projects import Quota
from dagmill.model.resources import Resources
from dagmill.model.states import RunStatus
from dagmill.store import Store, open_store
from helpers import wait_for

FLOW = textwrap.dedent(
    """
    import json, os, sys, time
    import dagmill

    def log(**fields):
        line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\\n"
        fd = os.open(os.environ["DM_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line.encode())
        os.close(fd)

    class Hold(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter()
        seconds = dagmill.FloatParameter(default=0.4)
        resources = {"cpu": 2}

        def run(self):
            log(event="start", n=self.n)
            time.sleep(self.seconds)
            log(event="end", n=self.n)
            self.save(self.n)

    class Free(dagmill.tasks.TaskPickle):
        n = dagmill.IntParameter()

        def run(self):
            self.save(self.n)

    if __name__ == "__main__":
        n, seconds, workers = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
        dagmill.set_dir(sys.argv[4])
        tasks = [Hold(n=n * 10 + i, seconds=seconds) for i in range(int(sys.argv[5]))]
        result = dagmill.run(tasks, workers=workers, project="ml", execution_summary=False)
        print(json.dumps({"run_id": result.run_id, "status": result.status.value}))
    """
)


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "flow_admission.py"
    path.write_text(FLOW)
    monkeypatch.setenv("DM_EVENTS", os.fspath(tmp_path / "events.jsonl"))
    monkeypatch.syspath_prepend(os.fspath(tmp_path))
    return path


def _project(cpu: float = 2) -> None:
    with open_store() as s:
        assert s.create_project("ml", Quota.parse({"cpu": cpu})) is not None


def _events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _intervals(events: list[dict]) -> list[tuple[float, float, int]]:
    starts = {e["n"]: e["t"] for e in events if e["event"] == "start"}
    return sorted((starts[e["n"]], e["t"], e["n"]) for e in events if e["event"] == "end")


def _start(
    flow: Path, n: int, seconds: float, tasks: int = 1, workers: int = 1
) -> subprocess.Popen:
    data = flow.parent / f"data{n}"
    return subprocess.Popen(
        [
            sys.executable,
            os.fspath(flow),
            str(n),
            str(seconds),
            str(workers),
            str(data),
            str(tasks),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _lease_rows(store: Store) -> list[tuple]:
    return list(store._execute("SELECT run_id, task_id FROM leases").fetchall())


# -- in one process ------------------------------------------------------------------------
def test_tasks_without_resources_never_touch_the_ledger(
    flow: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flow_admission as f

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the ledger was asked about a task without resources")

    monkeypatch.setattr(Store, "admit", refuse)
    monkeypatch.setattr(Store, "release_lease", refuse)
    for workers in (1, 2):
        result = dagmill.run(
            [f.Free(n=i + 10 * workers) for i in range(4)],
            workers=workers,
            execution_summary=False,
        )
        assert result is not None and result.status is RunStatus.SUCCESS


def test_one_run_s_tasks_share_the_project_quota(flow: Path, tmp_path: Path) -> None:
    import flow_admission as f

    _project(cpu=2)
    result = dagmill.run(
        [f.Hold(n=1, seconds=0.3), f.Hold(n=2, seconds=0.3)],
        workers=2,
        project="ml",
        execution_summary=False,
    )
    assert result is not None and result.status is RunStatus.SUCCESS
    (_a0, a1, _), (b0, _b1, _) = _intervals(_events(tmp_path))
    assert a1 <= b0, "two 2-CPU tasks ran at once in a project with 2 CPUs"
    with open_store() as s:
        assert s.get_run(result.run_id).project == "ml"  # type: ignore[union-attr]
        waited = [a.waited for t in s.get_run_tasks(result.run_id) for a in t.history if a.waited]
        reasons = [a.waiting_for for t in s.get_run_tasks(result.run_id) for a in t.history]
        assert len(waited) == 1 and waited[0] >= 0.2, waited
        assert _lease_rows(s) == [], "a lease outlived its task"
        assert s._execute("SELECT COUNT(*) FROM lease_waits").fetchone()[0] == 0
    assert all(r is None for r in reasons)  # cleared once running; waited is kept


def test_a_task_larger_than_the_project_quota_is_refused_before_the_run(flow: Path) -> None:
    import flow_admission as f

    _project(cpu=1)
    with pytest.raises(ResourceError, match=r"Hold.*project ml's whole quota \(cpu 2 > 1"):
        dagmill.run([f.Hold(n=1)], project="ml", execution_summary=False)
    with open_store() as s:
        assert s.list_runs() == [], "a refused run was recorded"


def test_an_unknown_project_is_refused(flow: Path) -> None:
    import flow_admission as f

    with pytest.raises(DefinitionError, match="project 'nope' does not exist"):
        dagmill.run([f.Free(n=1)], project="nope", execution_summary=False)


# -- across processes ----------------------------------------------------------------------
def test_two_processes_share_the_project_quota(
    database_url: str, flow: Path, tmp_path: Path
) -> None:
    _project(cpu=2)
    first = _start(flow, 1, 1.0)
    assert wait_for(lambda: len(_events(tmp_path)) >= 1, 20, "the first task to start")
    second = _start(flow, 2, 0.2)
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    run1, run2 = json.loads(out1)["run_id"], json.loads(out2)["run_id"]
    (_a0, a1, na), (b0, _b1, nb) = _intervals(_events(tmp_path))
    assert (na, nb) == (10, 20)
    assert a1 <= b0, "tasks of two runs overlapped beyond the project's quota"
    # woken by the release (a wake-up), not by the 5 s recheck
    assert b0 - a1 < 2.0, f"the waiting task started {b0 - a1:.2f}s after the release"
    with open_store() as s:
        history = [a for t in s.get_run_tasks(run2) for a in t.history]
        assert history[-1].status == "SUCCESS" and (history[-1].waited or 0) > 0.3
        runs = s.list_runs()
        assert {r.project for r in runs} == {"ml"}
    # the reason was recorded while it waited: the runs' logs tell the rest
    assert run1 != run2


def test_the_pending_reason_names_the_run_holding_the_quota(flow: Path, tmp_path: Path) -> None:
    _project(cpu=2)
    first = _start(flow, 1, 3.0)
    try:
        assert wait_for(lambda: len(_events(tmp_path)) >= 1, 20, "the first task to start")
        second = _start(flow, 2, 0.1)
        with open_store() as s:
            holder = s.list_runs(limit=1)[0].id

            def reason() -> str | None:
                usage = s.project_usage("ml", Resources())
                assert usage is not None
                return usage.waits[0].reason if usage.waits else None

            assert wait_for(lambda: reason() is not None, 20, "the second task to wait")
            text = reason()
            assert text is not None and text.startswith("project ml: cpu 2 of 2 in use by ")
            assert holder in text and "Hold" in text
    finally:
        first.communicate(timeout=60)
        second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0


def test_a_killed_holder_s_lease_stops_counting(flow: Path, tmp_path: Path) -> None:
    _project(cpu=2)
    holder = _start(flow, 1, 60.0)
    assert wait_for(lambda: len(_events(tmp_path)) >= 1, 20, "the first task to start")
    waiter = _start(flow, 2, 0.1)
    time.sleep(0.5)
    os.killpg(holder.pid, signal.SIGKILL)  # its worker too: nothing releases the lease
    holder.wait(10)
    started = time.monotonic()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    # its process is gone (this host): the next look (at most the recheck) admits
    assert time.monotonic() - started < 12
    assert json.loads(out)["status"] == "SUCCESS"


def test_a_wake_up_crosses_processes() -> None:
    waker = Waker(None)
    try:
        assert waker.address is not None
        assert not waker.drain()
        code = f"from dagmill.io.wake import poke; assert poke({waker.address!r})"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert wait_for(lambda: waker.drain(), 5, "the wake-up")
    finally:
        waker.close()
    assert not poke(waker.address)  # nobody listens any more: no error, False
