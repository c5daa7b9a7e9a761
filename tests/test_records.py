"""Fingerprint records (``.dagmill-records.jsonl``): written as each task finishes, so a
killed engine never redoes a task that had finished; damaged lines are skipped with a
warning naming the file and line, and never swallow the next record."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from dagmill.io.records import RECORDS_FILE, Record, RecordBook
from helpers import small_tmpfs

FLOW = textwrap.dedent(
    """
    import multiprocessing
    import os
    import signal
    import time
    from pathlib import Path

    import dagmill

    MARKS = Path(__file__).parent / "marks"


    def ran(name):
        MARKS.mkdir(exist_ok=True)
        fd = os.open(MARKS / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, b"%d\\n" % os.getpid())
        finally:
            os.close(fd)
        return len((MARKS / name).read_text().splitlines())


    class First(dagmill.tasks.TaskPickle):
        def run(self):
            ran("First")
            self.save(1)


    class Other(dagmill.tasks.TaskPickle):
        def run(self):
            ran("Other")
            self.save(2)


    class Second(dagmill.tasks.TaskPickle):
        def requires(self):
            return [First(), Other()]

        def run(self):
            if ran("Second") == 1 and os.environ.get("KILL_ENGINE"):
                # the moment First's output is in place and Second starts: kill -9 the
                # engine (this process inline, the parent of a worker)
                worker = multiprocessing.parent_process() is not None
                os.kill(os.getppid() if worker else os.getpid(), signal.SIGKILL)
                time.sleep(60)  # a worker goes with its engine before it saves anything
            self.save(sum(self.inputLoad()))
    """
)


def _dagmill(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _executions(tmp_path: Path) -> Counter[str]:
    return Counter(
        {p.name: len(p.read_text().splitlines()) for p in (tmp_path / "marks").iterdir()}
    )


def _records(data_dir: Path, family: str) -> Path:
    return data_dir / family / RECORDS_FILE


# -- a killed engine never redoes a finished task ---------------------------------------------
@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "workers=2"])
def test_a_task_finished_before_a_kill_is_not_redone(
    workers: int, tmp_path: Path, data_dir: Path
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    killed = _dagmill(
        tmp_path, "run", "flow.py:Second", "-w", str(workers), "--quiet", KILL_ENGINE="1"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert _executions(tmp_path) == Counter({"First": 1, "Other": 1, "Second": 1})
    # the records of what finished are in their files, though the engine died at once
    for family in ("First", "Other"):
        assert f'"f":"{family}"' in _records(data_dir, family).read_text()

    again = _dagmill(tmp_path, "run", "flow.py:Second", "-w", str(workers), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executions(tmp_path) == Counter({"First": 1, "Other": 1, "Second": 2})


# -- damaged lines ---------------------------------------------------------------------------
def _run_once(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    done = _dagmill(tmp_path, "run", "flow.py:Second", "--quiet")
    assert done.returncode == 0, done.stderr


def test_a_non_utf8_byte_skips_its_line_with_a_warning_and_that_task_reruns_once(
    tmp_path: Path, data_dir: Path
) -> None:
    _run_once(tmp_path)
    path = _records(data_dir, "First")
    path.write_bytes(path.read_bytes().replace(b'"f":"First"', b'"f":"Fi\xffst"'))

    for command in ("preview", "run"):
        out = _dagmill(tmp_path, command, "flow.py:Second")
        assert out.returncode == 0, out.stderr
        # named as the data folder was given (./data by default)
        where = path.relative_to(tmp_path)
        assert f"{where}:1: skipped a damaged line (not UTF-8)" in out.stderr
        assert "Traceback" not in out.stderr
    # First ran again (its record was the damaged line); its dependent, then, too
    assert _executions(tmp_path) == Counter({"First": 2, "Other": 1, "Second": 2})
    # the file was rewritten without the damaged line: no more warnings, nothing reruns
    # (First's lines: its mark as it started, then its record)
    lines = [json.loads(raw) for raw in path.read_bytes().decode("utf-8").splitlines()]
    assert [d["f"] for d in lines] == ["First", "First"] and "w" not in lines[-1]
    out = _dagmill(tmp_path, "run", "flow.py:Second")
    assert out.returncode == 0 and "skipped" not in out.stderr, out.stderr
    assert _executions(tmp_path) == Counter({"First": 2, "Other": 1, "Second": 2})


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_on_a_new_line(
    tmp_path: Path, data_dir: Path
) -> None:
    _run_once(tmp_path)
    path = _records(data_dir, "First")
    line = path.read_text().splitlines()[-1]  # First's record (after its mark)
    path.write_text(line[: len(line) // 2])  # a write cut short: no newline at the end

    out = _dagmill(tmp_path, "preview", "flow.py:Second")
    assert out.returncode == 0, out.stderr
    assert f"{path.relative_to(tmp_path)}:1: skipped a torn last line" in out.stderr
    out = _dagmill(tmp_path, "run", "flow.py:Second")
    assert out.returncode == 0, out.stderr
    assert _executions(tmp_path) == Counter({"First": 2, "Other": 1, "Second": 2})
    # every line of the file is a whole record: the new one did not land on the torn one
    lines = path.read_text().splitlines()
    written = [json.loads(raw) for raw in lines]  # First's mark as it started, its record
    assert [d["f"] for d in written] == ["First", "First"]
    assert "w" in written[0] and "w" not in written[1]
    out = _dagmill(tmp_path, "run", "flow.py:Second")
    assert out.returncode == 0 and "skipped" not in out.stderr, out.stderr
    assert _executions(tmp_path) == Counter({"First": 2, "Other": 1, "Second": 2})


@pytest.mark.parametrize("command", ["preview", "run"])
def test_a_record_whose_parts_have_the_wrong_types_is_read_without_a_traceback(
    command: str, tmp_path: Path, data_dir: Path
) -> None:
    # valid JSON with a record's keys, but edited by hand: params a list, inputs a
    # number, the time a string (was AttributeError/TypeError in the planner)
    _run_once(tmp_path)
    line = {"o": "", "f": "First", "fp": "00", "p": [1], "c": "x", "i": 7, "t": "now"}
    for family in ("First", "Second"):
        path = _records(data_dir, family)
        line["o"], line["f"] = json.loads(path.read_text().splitlines()[-1])["o"], family
        path.write_text(json.dumps(line) + "\n")

    out = _dagmill(tmp_path, command, "flow.py:Second")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    if command == "preview":
        assert "First-{} (STALE)" in out.stdout, out.stdout
    else:  # what had the damaged records ran again
        assert _executions(tmp_path) == Counter({"First": 2, "Other": 1, "Second": 2})


def test_the_record_book_keeps_good_lines_around_damaged_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def record(fp: str) -> Record:
        return Record(fp, {}, {}, {}, 1.0, "F")

    book = RecordBook()
    for key in "abc":
        book.put(os.fspath(tmp_path / key), record("aa"))
    book.flush()
    path = tmp_path / RECORDS_FILE
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"\x80" + lines[1]  # b: not UTF-8
    path.write_bytes(b"\n".join(lines[:3]) + b'\n{"o":"d","f":"F","fp":"a')  # d: torn

    caplog.set_level(logging.WARNING, logger="dagmill")
    book = RecordBook()
    found = {k: book.fingerprint(os.fspath(tmp_path / k)) for k in "abcd"}
    assert found == {"a": "aa", "b": None, "c": "aa", "d": None}
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"{path}:2: skipped a damaged line (not UTF-8)",
        f"{path}:4: skipped a torn last line",
    ]

    book.put(os.fspath(tmp_path / "d"), record("dd"))
    book.flush()
    written = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert {d["o"]: d["fp"] for d in written} == {"a": "aa", "c": "aa", "d": "dd"}
    assert len(written) == 3


# -- killed between an output's rename and its record: the mark decides -------------------------
MARKED = textwrap.dedent(
    """
    import multiprocessing
    import os
    import signal
    import time
    from pathlib import Path

    import dagmill

    MARKS = Path(__file__).parent / "marks"


    def ran(name):
        MARKS.mkdir(exist_ok=True)
        with open(MARKS / name, "a") as f:
            f.write("x\\n")


    def kill_engine():
        worker = multiprocessing.parent_process() is not None
        os.kill(os.getppid() if worker else os.getpid(), signal.SIGKILL)
        time.sleep(60)  # a worker goes with its engine


    class Two(dagmill.tasks.TaskPickle):
        v = dagmill.IntParameter(default=1)
        persist = ["a", "b"]

        def run(self):
            ran("Two")
            self.save({"a": self.v, "b": self.v})
            if os.environ.get("KILL") == "after-save":
                kill_engine()


    class Half(dagmill.tasks.TaskPickle):
        v = dagmill.IntParameter(default=1)
        persist = ["a", "b"]

        def run(self):
            ran("Half")
            if os.environ.get("KILL") == "half":
                self.output()["a"].save(self.v)  # one output of two in place
                kill_engine()
            self.save({"a": self.v, "b": self.v})
    """
)


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "workers=2"])
def test_a_task_killed_after_its_outputs_were_in_place_is_complete(
    workers: int, tmp_path: Path, data_dir: Path
) -> None:
    (tmp_path / "flow.py").write_text(MARKED)
    killed = _dagmill(tmp_path, "run", "flow.py:Two", "-w", str(workers), KILL="after-save")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    preview = _dagmill(tmp_path, "preview", "flow.py:Two")
    assert "COMPLETE" in preview.stdout, preview.stdout + preview.stderr
    again = _dagmill(tmp_path, "run", "flow.py:Two", "-w", str(workers))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executions(tmp_path) == Counter({"Two": 1})


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "workers=2"])
def test_a_task_killed_with_some_outputs_rewritten_runs_again(
    workers: int, tmp_path: Path, data_dir: Path
) -> None:
    (tmp_path / "flow.py").write_text(MARKED)
    first = _dagmill(tmp_path, "run", "flow.py:Half", "-w", str(workers))
    assert first.returncode == 0, first.stdout + first.stderr
    # new code: the task is stale; killed with output a rewritten and b as it was
    (tmp_path / "flow.py").write_text(MARKED.replace('ran("Half")', 'ran("Half"); self.v += 1'))
    killed = _dagmill(tmp_path, "run", "flow.py:Half", "-w", str(workers), KILL="half")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    preview = _dagmill(tmp_path, "preview", "flow.py:Half")
    assert "its last attempt stopped before it finished" in preview.stdout, preview.stdout
    again = _dagmill(tmp_path, "run", "flow.py:Half", "-w", str(workers))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executions(tmp_path) == Counter({"Half": 3})


def test_a_mark_without_its_record_gives_a_plain_reason(tmp_path: Path, data_dir: Path) -> None:
    """Killed after its outputs were in place, a task has only its mark (no params or code
    to compare): changed since, it is STALE with a reason that does not invent changes."""
    (tmp_path / "flow.py").write_text(MARKED)
    killed = _dagmill(tmp_path, "run", "flow.py:Two", KILL="after-save")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (tmp_path / "flow.py").write_text(MARKED.replace('ran("Two")', 'ran("Two"); self.v += 1'))
    preview = _dagmill(tmp_path, "preview", "flow.py:Two")
    assert "fingerprint changed since its last attempt, which was stopped" in preview.stdout
    assert "added" not in preview.stdout, preview.stdout


def test_a_full_data_folder_fails_the_task_with_a_message(tmp_path: Path) -> None:
    """The record written as a task starts cannot reach a full disk: the task fails
    before it runs, saying where and what to do; no traceback."""
    with small_tmpfs(tmp_path / "full", "64k") as data:
        (data / "Two").mkdir()
        with contextlib.suppress(OSError), open(data / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        (tmp_path / "flow.py").write_text(MARKED)
        out = _dagmill(tmp_path, "run", "flow.py:Two", "--data", str(data))
        shown = out.stdout + out.stderr
        assert out.returncode == 1, shown
        assert re.search(r"cannot write the task's record in .*full.*No space left", shown)
        assert "Traceback" not in shown
        assert not (tmp_path / "marks").exists()  # the task did not run


# -- the per-task fast paths give what the general functions give -------------------------
_PATHS = ["/d/f/a.pkl", "/a.pkl", "a.pkl", "d/a.pkl", "/d//a.pkl", "//a.pkl", "/d/f/", "s3://b/k"]


@pytest.mark.parametrize("location", _PATHS)
def test_split_and_temp_names_match_os_path(location: str) -> None:
    from dagmill.io import atomic
    from dagmill.io.records import _split

    assert _split(location) == os.path.split(location)
    folder, name = os.path.split(location)
    unique = atomic.temp_path(location, unique=False)
    assert unique == os.path.join(folder, f".{name}{atomic.TMP_MARKER}{os.getpid()}@{atomic._HOST}")


@pytest.mark.parametrize(
    "value",
    [
        {"o": 'a\u00e9"b\n', "t": 1712345678.123, "p": {"x": "1"}, "c": {}, "i": {"a": "1:2|3"}},
        {"k": 1e20, "n": None, "b": True, "l": [1, 0.1]},
        "plain",
    ],
)
def test_record_and_run_row_encoders_match_json(value: object) -> None:
    from dagmill.io.records import _encode
    from dagmill.store.base import _dumps

    assert _encode(value) == json.dumps(value, separators=(",", ":"))
    assert _dumps(value) == json.dumps(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _encode({"x": object()})


def test_mark_writes_lines_waiting_for_other_folders_too(tmp_path: Path) -> None:
    """The mark goes out at once, with every line buffered before it (any folder)."""
    book = RecordBook()
    rec = Record("ab12", {"x": "1"}, {}, {}, 1.0, "F")
    book.put(str(tmp_path / "one" / "a.pkl"), rec)
    book.mark(str(tmp_path / "two" / "b.pkl"), rec, "")
    book.put(str(tmp_path / "two" / "c.pkl"), rec)
    book.mark(str(tmp_path / "two" / "d.pkl"), rec, "1:2")
    for folder, keys in (("one", ["a.pkl"]), ("two", ["b.pkl", "c.pkl", "d.pkl"])):
        lines = (tmp_path / folder / RECORDS_FILE).read_text().splitlines()
        assert [json.loads(line)["o"] for line in lines] == keys
    again = RecordBook()
    assert again.before(str(tmp_path / "two" / "d.pkl")) == "1:2"
    assert again.fingerprint(str(tmp_path / "two" / "c.pkl")) == "ab12"
    book.close()


def test_put_as_done_writes_what_put_of_the_done_record_writes(tmp_path: Path) -> None:
    mark = Record("ab12", {"x": "1"}, {"version": "2"}, {"up": "3:4"}, 1.0, "F", "5:6")
    one, two = RecordBook(), RecordBook()
    one.put(str(tmp_path / "one" / "a.pkl"), mark, 12.34567)
    two.put(str(tmp_path / "two" / "a.pkl"), mark.done(12.34567))
    one.close()
    two.close()
    written = (tmp_path / "one" / RECORDS_FILE).read_text()
    assert written == (tmp_path / "two" / RECORDS_FILE).read_text()
    assert '"t":12.346' in written and '"w"' not in written
    assert RecordBook().get(str(tmp_path / "one" / "a.pkl")) == mark.done(12.346)
