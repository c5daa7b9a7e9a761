"""The chaos scripts of bench/, small: kill -9 at random moments and two runs of one graph.

bench/chaos_kill.py kills the engine of a chain (1 worker), a fan-out (2 workers) and a
YAML pipeline at random moments and resumes them; bench/chaos_concurrent.py starts two
runs of the same graph on one folder (and races `dagmill runs list`'s automatic resume
against a `dagmill run`). Each prints its seed: a failure here is replayed with
`python bench/chaos_kill.py --seed N` (or chaos_concurrent.py) and the same counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _script(name: str, *args: str, out: Path) -> tuple[dict[str, Any], str]:
    """Run a chaos script (it bounds its own time with --budget) and read its JSON."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    printed = proc.stdout + proc.stderr
    assert out.exists(), f"{name} wrote no report (exit {proc.returncode}):\n{printed}"
    report: dict[str, Any] = json.loads(out.read_text())
    return report, printed


@pytest.mark.chaos
def test_kill_9_at_random_moments_redoes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    report, printed = _script(
        "chaos_kill.py", "--kills", "6", "--budget", "100", out=tmp_path / "k.json"
    )
    t = report["totals"]
    assert not report["stopped_early"] and t["kills"] == 6, printed
    counts = {c: t[c] for c in ("reexecuted", "orphans", "temp_files", "wrong_outputs", "errors")}
    assert counts == dict.fromkeys(counts, 0), printed


@pytest.mark.chaos
def test_two_runs_of_one_graph_execute_no_task_twice(tmp_path: Path) -> None:
    report, printed = _script(
        "chaos_concurrent.py",
        "--trials",
        "6",
        "--resume-races",
        "3",
        "--budget",
        "100",
        out=tmp_path / "c.json",
    )
    assert not report["stopped_early"] and len(report["trials"]) == 9, printed
    for kind in ("two_runs", "resume_races"):
        t = report["totals"][kind]
        counts = {c: t[c] for c in ("twice", "wrong_outputs", "failed_runs")}
        assert counts == dict.fromkeys(counts, 0), f"{kind}:\n{printed}"
