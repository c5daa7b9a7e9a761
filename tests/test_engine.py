"""Running graphs: results, failure isolation, retries, resources, timeouts, dead workers.

Task classes live at module level so worker processes can unpickle them. Tasks tell the
test what happened by appending lines to files in ``$DM_EVENTS``.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import threading
import time
from pathlib import Path

import pytest

import dagmill
from dagmill.model.states import RunStatus, TaskRunStatus
from dagmill.store import open_store
from helpers import wait_for

S = TaskRunStatus
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])


@pytest.fixture(autouse=True)
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "events"
    folder.mkdir()
    monkeypatch.setenv("DM_EVENTS", os.fspath(folder))
    return folder


def log_event(name: str, **fields) -> None:
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(Path(os.environ["DM_EVENTS"]) / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(name: str) -> list[dict]:
    path = Path(os.environ["DM_EVENTS"]) / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def run(tasks, **kwargs) -> dagmill.RunResult:
    kwargs.setdefault("execution_summary", False)
    kwargs.setdefault("abort", False)
    result = dagmill.run(tasks, **kwargs)
    assert result is not None
    return result


def nothing_written(data_dir: Path) -> bool:
    return not data_dir.exists() or not any(p.is_file() for p in data_dir.rglob("*"))


def no_runs_recorded() -> bool:
    db = Path(os.environ["DAGMILL_HOME"]) / "dagmill.db"
    if not db.exists():
        return True
    store = open_store()
    try:
        return store.list_runs() == []
    finally:
        store.close()


# -- results -------------------------------------------------------------------------------
class Source(dagmill.tasks.TaskPickle):
    n = dagmill.IntParameter(default=5)

    def run(self):
        log_event("source")
        self.save(list(range(self.n)))


@dagmill.requires(Source)
class Double(dagmill.tasks.TaskPickle):
    def run(self):
        self.save([x * 2 for x in self.inputLoad()])


@dagmill.requires(Source)
class Square(dagmill.tasks.TaskPickle):
    def run(self):
        self.save([x * x for x in self.inputLoad()])


@dagmill.requires({"double": Double, "square": Square})
class Join(dagmill.tasks.TaskJson):
    def run(self):
        d = self.inputLoad(task="double")
        s = self.inputLoad(task="square")
        self.save([a + b for a, b in zip(d, s)])


@WORKERS
def test_diamond(workers: int) -> None:
    result = run(Join(n=6), workers=workers)
    assert result.status is RunStatus.SUCCESS
    assert set(result.statuses.values()) == {S.SUCCESS}
    assert len(result.statuses) == 4
    assert Join(n=6).outputLoad() == [2 * x + x * x for x in range(6)]
    assert len(read_events("source")) == 1  # reached twice, run once
    again = run(Join(n=6), workers=workers)
    assert set(again.statuses.values()) == {S.SKIPPED}
    assert len(read_events("source")) == 1


class Leaf(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()

    def requires(self):
        return Source(n=10)

    def run(self):
        log_event("leaf", i=self.i)
        self.save(sum(x for x in self.inputLoad() if x % 5 == self.i))


class Gather(dagmill.tasks.TaskJson):
    def requires(self):
        return {f"leaf{i}": Leaf(i=i) for i in range(5)}

    def run(self):
        self.save(self.inputLoad(as_dict=True))


@WORKERS
def test_fan_out_and_in(workers: int) -> None:
    result = run(Gather(), workers=workers)
    assert result.status is RunStatus.SUCCESS
    assert len(result.statuses) == 7
    assert set(result.statuses.values()) == {S.SUCCESS}
    expected = {f"leaf{i}": sum(x for x in range(10) if x % 5 == i) for i in range(5)}
    assert Gather().outputLoad() == expected
    assert sorted(e["i"] for e in read_events("leaf")) == [0, 1, 2, 3, 4]
    assert len(read_events("source")) == 1
    if workers == 2:  # in worker processes
        assert os.getpid() not in {e["pid"] for e in read_events("leaf")}


# -- failure -------------------------------------------------------------------------------
class Broken(dagmill.tasks.TaskPickle):
    def run(self):
        values = [1, 2, 3]
        raise ValueError(f"bad row {values[1]}")  # the line the error must point at


@dagmill.requires(Broken)
class AfterBroken(dagmill.tasks.TaskPickle):
    def run(self):
        log_event("after_broken")
        self.save(1)


class Fine(dagmill.tasks.TaskPickle):
    def run(self):
        time.sleep(0.05)
        self.save("fine")


@dagmill.requires(Fine)
class AfterFine(dagmill.tasks.TaskPickle):
    def run(self):
        self.save(self.inputLoad() + "!")


class Everything(dagmill.tasks.TaskPickle):
    def requires(self):
        return [AfterBroken(), AfterFine()]

    def run(self):
        self.save("all")


def _raise_line() -> int:
    lines, start = inspect.getsourcelines(Broken.run)
    return start + next(i for i, line in enumerate(lines) if "raise ValueError" in line)


@WORKERS
def test_failure_is_isolated_and_points_at_the_users_line(workers: int) -> None:
    result = run(Everything(), workers=workers)
    assert result.status is RunStatus.FAILED
    assert not result.ok
    st = result.statuses
    assert st[Broken().task_id] is S.FAILED
    assert st[AfterBroken().task_id] is S.UPSTREAM_FAILED
    assert st[Everything().task_id] is S.UPSTREAM_FAILED
    assert st[Fine().task_id] is S.SUCCESS
    assert st[AfterFine().task_id] is S.SUCCESS
    assert AfterFine().outputLoad() == "fine!"
    assert read_events("after_broken") == []

    err = result.errors[Broken().task_id]
    assert err.type == "ValueError"
    assert "bad row 2" in err.message
    assert err.location is not None
    assert err.location.startswith(f"{__file__}:{_raise_line()}")
    assert "in run" in err.location
    assert list(result.errors) == [Broken().task_id]


def test_abort_raises_run_failed_naming_the_task_and_line() -> None:
    with pytest.raises(dagmill.RunFailed) as info:
        dagmill.run(Everything(), execution_summary=False)
    assert info.value.failed == [Broken().task_id]
    msg = str(info.value)
    assert "Broken" in msg
    assert f"test_engine.py:{_raise_line()}" in msg
    assert "ValueError: bad row 2" in msg


# -- retries -------------------------------------------------------------------------------
class Flaky(dagmill.tasks.TaskPickle):
    retries = 2
    retry_delay = 0.15

    def run(self):
        log_event("flaky")
        if len(read_events("flaky")) < 3:
            raise ConnectionError("try again")
        self.save("finally")


class AlwaysFails(dagmill.tasks.TaskPickle):
    retries = 1

    def run(self):
        log_event("always")
        raise RuntimeError("nope")


@WORKERS
def test_retries_with_backoff(workers: int) -> None:
    result = run([Flaky(), AlwaysFails()], workers=workers)
    assert result.statuses[Flaky().task_id] is S.SUCCESS
    assert result.attempts[Flaky().task_id] == 3
    assert Flaky().outputLoad() == "finally"
    assert Flaky().task_id not in result.errors

    times = [e["t"] for e in read_events("flaky")]
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.15
    assert second_gap >= 0.3  # the delay doubles
    assert second_gap > first_gap

    assert result.statuses[AlwaysFails().task_id] is S.FAILED
    assert result.attempts[AlwaysFails().task_id] == 2
    assert len(read_events("always")) == 2
    assert result.status is RunStatus.FAILED

    store = open_store()
    try:
        tasks = {t.task_id: t for t in store.get_run_tasks(result.run_id)}
    finally:
        store.close()
    flaky = tasks[Flaky().task_id]
    assert flaky.attempts == 3
    assert [a.status for a in flaky.history] == ["FAILED", "FAILED", "SUCCESS"]
    assert "ConnectionError" in (flaky.history[0].error or "")


# -- resources -----------------------------------------------------------------------------
class Heavy(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()
    resources = {"cpu": 2}

    def run(self):
        log_event("heavy", i=self.i, phase="start")
        time.sleep(0.25)
        log_event("heavy", i=self.i, phase="end")
        self.save(self.i)


def test_tasks_that_fill_the_pool_never_overlap() -> None:
    tasks = [Heavy(i=i) for i in range(3)]
    result = run(tasks, workers=2, pool={"cpu": 2, "memory": "1Gi"})
    assert result.status is RunStatus.SUCCESS
    spans: dict[int, dict[str, float]] = {}
    for e in read_events("heavy"):
        spans.setdefault(e["i"], {})[e["phase"]] = e["t"]
    assert len(spans) == 3
    ordered = sorted(spans.values(), key=lambda s: s["start"])
    for before, after in itertools.pairwise(ordered):
        assert after["start"] >= before["end"], f"overlap: {before} and {after}"


class Light(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()
    resources = {"cpu": 1}

    def run(self):
        log_event("light", i=self.i)
        # both must be running at once: wait for the other one
        wait_for(lambda: len(read_events("light")) >= 2, timeout=5)
        self.save(len(read_events("light")))


def test_tasks_that_fit_together_run_together() -> None:
    result = run([Light(i=0), Light(i=1)], workers=2, pool={"cpu": 2, "memory": "1Gi"})
    assert result.status is RunStatus.SUCCESS
    assert Light(i=0).outputLoad() == 2
    assert Light(i=1).outputLoad() == 2


class Greedy(dagmill.tasks.TaskPickle):
    resources = {"memory": "4Gi"}

    def run(self):
        self.save("should never run")


@dagmill.requires(Greedy)
class AfterGreedy(dagmill.tasks.TaskPickle):
    def run(self):
        self.save("no")


class Small(dagmill.tasks.TaskPickle):
    def run(self):
        self.save("small")


class GreedyFlow(dagmill.tasks.TaskPickle):
    def requires(self):
        return [Small(), AfterGreedy()]

    def run(self):
        self.save("x")


@WORKERS
def test_request_larger_than_the_pool_fails_before_anything_runs(
    workers: int, data_dir: Path
) -> None:
    with pytest.raises(dagmill.ResourceError) as info:
        dagmill.run(GreedyFlow(), workers=workers, pool={"cpu": 2, "memory": "1Gi"},
                    execution_summary=False)  # fmt: skip
    msg = str(info.value)
    assert "Greedy" in msg
    assert "memory" in msg and "4Gi" in msg and "1Gi" in msg
    assert nothing_written(data_dir)
    assert no_runs_recorded()


class BadCpu(dagmill.tasks.TaskPickle):
    resources = {"cpu": "lots"}

    def run(self):
        self.save(1)


class BadKey(dagmill.tasks.TaskPickle):
    resources = {"cpu": 1, "disk": "10Gi"}

    def run(self):
        self.save(1)


@pytest.mark.parametrize("cls", [BadCpu, BadKey], ids=["bad-quantity", "unknown-key"])
def test_bad_resource_string_on_a_task_is_a_resource_error(cls, data_dir: Path) -> None:
    with pytest.raises(dagmill.ResourceError, match=cls.__name__):
        dagmill.run(cls(), execution_summary=False)
    assert nothing_written(data_dir)
    assert no_runs_recorded()


@pytest.mark.parametrize(
    "pool", [{"cpu": 2, "memory": "1Gb"}, {"cpu": "two"}], ids=["memory-1Gb", "cpu-two"]
)
def test_bad_resource_string_in_the_pool_is_a_resource_error(pool, data_dir: Path) -> None:
    with pytest.raises(dagmill.ResourceError):
        dagmill.run(Small(), pool=pool, execution_summary=False)
    assert nothing_written(data_dir)
    assert no_runs_recorded()


class Hog(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()
    resources = {"cpu": 2}

    def run(self):
        log_event("hog", i=self.i)
        wait_for(lambda: (Path(os.environ["DM_EVENTS"]) / "release").exists(), timeout=8)
        self.save(self.i)


def test_task_waiting_for_resources_is_pending_in_the_store(events: Path) -> None:
    seen: list[tuple[str, str | None]] = []
    errors: list[BaseException] = []
    store = open_store()  # created (and migrated) before the run starts

    def watch() -> None:
        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline and not seen:
                for info in store.list_runs(limit=1):
                    for t in store.get_run_tasks(info.id):
                        seen.extend((t.task_id, a.waiting_for) for a in t.history
                                    if a.status == "PENDING")  # fmt: skip
                time.sleep(0.02)
        except BaseException as e:
            errors.append(e)
        finally:
            (events / "release").touch()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run([Hog(i=0), Hog(i=1)], workers=2, pool={"cpu": 2, "memory": "1Gi"})
    finally:
        (events / "release").touch()
        watcher.join()
        store.close()
    assert errors == []
    assert result.status is RunStatus.SUCCESS
    assert seen, "no task run was PENDING in the store while it waited for cpu"
    task_id, waiting_for = seen[0]
    assert task_id in {Hog(i=0).task_id, Hog(i=1).task_id}
    assert waiting_for is not None and "cpu" in waiting_for


class Gpu(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()
    resources = {"gpu": 1}

    def run(self):
        log_event("gpu", i=self.i, devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
        together = wait_for(lambda: len(read_events("gpu")) >= 2, timeout=5)
        self.save({"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "together": together})


def test_gpus_are_handed_out_by_device_index() -> None:
    result = run([Gpu(i=0), Gpu(i=1)], workers=2, pool={"gpu": 2})
    assert result.status is RunStatus.SUCCESS
    outs = [Gpu(i=i).outputLoad() for i in range(2)]
    assert all(o["together"] for o in outs), "the two GPU tasks did not run concurrently"
    assert sorted(o["devices"] for o in outs) == ["0", "1"]


# -- timeouts and dead workers -------------------------------------------------------------
class Sleepy(dagmill.tasks.TaskPickle):
    timeout = 0.5

    def run(self):
        time.sleep(10)
        self.save("woke up")


@WORKERS
def test_timeout_fails_the_task(workers: int) -> None:
    started = time.monotonic()
    result = run([Sleepy(), Small()], workers=workers)
    elapsed = time.monotonic() - started
    assert elapsed < 5
    assert result.statuses[Sleepy().task_id] is S.FAILED
    assert result.statuses[Small().task_id] is S.SUCCESS
    err = result.errors[Sleepy().task_id]
    assert err.type == "TimeoutError"
    assert "0.5" in err.message
    assert not Path(Sleepy().output().path).exists()


class Dies(dagmill.tasks.TaskPickle):
    def run(self):
        os._exit(3)


@dagmill.requires(Dies)
class AfterDies(dagmill.tasks.TaskPickle):
    def run(self):
        self.save(1)


class Survivor(dagmill.tasks.TaskPickle):
    i = dagmill.IntParameter()

    def run(self):
        time.sleep(0.1)
        self.save(self.i)


def test_killed_worker_fails_its_task_and_the_run_goes_on() -> None:
    tasks = [AfterDies(), *(Survivor(i=i) for i in range(4))]
    result = run(tasks, workers=2)
    assert result.status is RunStatus.FAILED
    assert result.statuses[Dies().task_id] is S.FAILED
    assert result.statuses[AfterDies().task_id] is S.UPSTREAM_FAILED
    for i in range(4):
        assert result.statuses[Survivor(i=i).task_id] is S.SUCCESS
        assert Survivor(i=i).outputLoad() == i
    err = result.errors[Dies().task_id]
    assert "died" in err.message
    assert "exit code 3" in err.message


class InMemory(dagmill.tasks.TaskCache):
    def run(self):
        self.save({"in": "memory"})


def test_in_memory_output_with_workers_2_says_use_workers_1() -> None:
    try:
        result = run(InMemory(), workers=2)
    except dagmill.DefinitionError as e:  # refusing up front is fine too
        assert "workers=1" in str(e)
        return
    assert result.statuses[InMemory().task_id] is S.FAILED
    assert "workers=1" in str(result.errors[InMemory().task_id])


def test_in_memory_output_with_workers_1_works() -> None:
    result = run(InMemory(), workers=1)
    assert result.status is RunStatus.SUCCESS
    assert InMemory().outputLoad() == {"in": "memory"}
