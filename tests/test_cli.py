"""The command line: what a user types, what they see, and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows" / "numbers.py"


def dagmill(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGMILL_HOME": os.fspath(cwd / ".dagmill"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_run_then_nothing_reruns_then_a_param_change_reruns(tmp_path: Path) -> None:
    target = f"{FLOWS}:Total"
    first = dagmill("run", target, "-p", "n=10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "* 2 ran successfully:" in first.stdout
    assert "SUCCESS" in first.stdout
    again = dagmill("run", target, "-p", "n=10", cwd=tmp_path)
    assert "Did not run any tasks" in again.stdout
    preview = dagmill("preview", target, "-p", "n=11", cwd=tmp_path)
    assert preview.returncode == 0
    assert "(PENDING)] => new params: n 10→11" in preview.stdout
    out = json.loads(dagmill("run", target, "-p", "n=11", "--json", cwd=tmp_path).stdout)
    assert out["status"] == "SUCCESS"
    assert {t["family"]: t["status"] for t in out["tasks"]} == {
        "Numbers": "SUCCESS", "Total": "SUCCESS",
    }  # fmt: skip
    assert json.loads((tmp_path / "data/Total").glob("*.json").__next__().read_text()) in (
        {"data": {"total": 45}}, {"data": {"total": 55}},
    )  # fmt: skip


def test_preview_json_lists_states_and_reasons(tmp_path: Path) -> None:
    out = dagmill("preview", f"{FLOWS}:Total", "--json", cwd=tmp_path)
    plan = json.loads(out.stdout)
    assert [(t["family"], t["state"], t["reason"]) for t in plan] == [
        ("Numbers", "PENDING", "never ran"), ("Total", "PENDING", "never ran"),
    ]  # fmt: skip
    assert plan[1]["upstream"] == [plan[0]["id"]]


def test_quiet_prints_nothing_and_a_failure_exits_1(tmp_path: Path) -> None:
    ok = dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == ""
    bad = dagmill("run", f"{FLOWS}:Broken", cwd=tmp_path)
    assert bad.returncode == 1
    assert "* 1 failed:" in bad.stdout
    assert "the numbers do not add up" in bad.stderr
    assert "numbers.py:" in bad.stderr  # the user's own file and line


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nowhere.py:Total"], "no such file"),
        (["run", f"{FLOWS}:Totl"], "did you mean 'Total'"),
        (["run", f"{FLOWS}:Total", "-p", "m=3"], "unknown parameter 'm'"),
        (["run", f"{FLOWS}:Total", "-p", "n=three"], "'n' expects an integer"),
        (["run", f"{FLOWS}:Total", "-p", "n"], "expected KEY=VALUE"),
        (["run", f"{FLOWS}:Greedy"], "requests more than the resource pool has"),
        (["run", f"{FLOWS}:Total", "--pool", "cpu=two"], "cpu"),
        (["run", "Total"], "expected MODULE:TASK"),
    ],
    ids=["missing-file", "typo-task", "unknown-param", "bad-int", "no-equals", "too-big",
         "bad-pool", "no-module"],
)  # fmt: skip
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = dagmill(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / ".dagmill").exists()


def test_runs_list_and_show(tmp_path: Path) -> None:
    dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    dagmill("run", f"{FLOWS}:Broken", "--quiet", cwd=tmp_path)
    runs = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["FAILED", "SUCCESS"]  # newest first
    failed = json.loads(dagmill("runs", "list", "--status", "failed", "--json",
                                cwd=tmp_path).stdout)  # fmt: skip
    assert [r["id"] for r in failed] == [runs[0]["id"]]
    table = dagmill("runs", "list", cwd=tmp_path)
    assert runs[0]["id"] in table.stdout and "FAILED" in table.stdout
    shown = json.loads(dagmill("runs", "show", runs[0]["id"][:17], "--json", cwd=tmp_path).stdout)
    by_family = {t["family"]: t for t in shown["tasks"]}
    assert by_family["Broken"]["status"] == "FAILED"
    assert "the numbers do not add up" in by_family["Broken"]["history"][0]["error"]
    assert by_family["Numbers"]["status"] == "SKIPPED"
    assert by_family["Numbers"]["fingerprint"]
    assert dagmill("runs", "show", "nope", cwd=tmp_path).returncode == 2


def test_reset_deletes_outputs(tmp_path: Path) -> None:
    dagmill("run", f"{FLOWS}:Total", "--quiet", cwd=tmp_path)
    out = dagmill("reset", f"{FLOWS}:Total", "--upstream", "--yes", cwd=tmp_path)
    assert out.returncode == 0 and "reset 2 tasks" in out.stdout
    assert not list((tmp_path / "data").rglob("*.pkl")) and not list(
        (tmp_path / "data").rglob("*.json")
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = dagmill("--help", cwd=tmp_path)
    for cmd in ("run", "preview", "reset", "runs"):
        assert cmd in out.stdout
