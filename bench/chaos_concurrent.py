"""Start two runs of the same graph on the same folder and count tasks executed twice.

    python bench/chaos_concurrent.py [--trials 30] [--resume-races 3] [--seed N]
                                     [--budget 110] [--json FILE]

The three graphs of bench/chaos_common.py (a chain of 20 Python tasks with 1 worker, a
fan-out of 40 + a join with `--workers 2`, a YAML pipeline of 7 processor modules), the
trials split evenly between them, each in a fresh folder (DAGMILL_HOME and data inside).
A trial starts two `dagmill run` of the same target: together on even trials, the second
0-1 s (random) after the first on odd ones. Both must end with exit 0, the outputs must
be right, and no task may start twice (the tasks append to a side log).

A resume race (``--resume-races``, one per graph by default) kills a run (SIGKILL, once a
random number of its tasks started), then starts `dagmill runs list` (whose automatic
resume takes the dead run over in the background) and `dagmill run` of the same target
together; no task may start twice after the kill, and the resumed run must end SUCCESS.

The total time stays under ``--budget`` seconds (it stops early and says so). Exit status
0 when every count is zero and every planned trial happened, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chaos_common import (
    SCENARIOS,
    Deadline,
    Scenario,
    engine_env,
    kill_group,
    kill_processes,
    run_statuses,
    side_log,
    start,
    tail,
    wrong_outputs,
)

RUN_TIMEOUT_S = 60.0
RESUME_WAIT_S = 20.0


@dataclass
class Trial:
    scenario: str
    n: int
    mode: str  # together | apart | resume-race
    gap_s: float  # seconds between the two starts
    mark: str  # in the environment of all it starts, and its folder's name
    twice: int = 0  # tasks that started more than once
    twice_tasks: list[str] = field(default_factory=list)
    extra_executions: int = 0  # starts beyond the first, over all tasks
    exit_codes: list[int | None] = field(default_factory=list)
    wrong_outputs: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _wait(proc: subprocess.Popen[bytes], until: float) -> int | None:
    try:
        return proc.wait(timeout=max(0.5, until - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None


def _argv(scn: Scenario, folder: Path) -> list[str]:
    return ["run", *scn.target(folder), "--workers", str(scn.workers), "--quiet"]


def two_runs(scn: Scenario, t: Trial, folder: Path, deadline: Deadline) -> int:
    """Returns the side log offset from which starts are counted (0: all of them)."""
    procs = []
    try:
        procs.append(start(_argv(scn, folder), folder, _env(folder, t, "a"), folder / "a.log"))
        if t.gap_s:
            time.sleep(t.gap_s)
        procs.append(start(_argv(scn, folder), folder, _env(folder, t, "b"), folder / "b.log"))
        until = time.monotonic() + min(RUN_TIMEOUT_S, max(1.0, deadline.left()))
        t.exit_codes = [_wait(p, until) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    for name, code in zip("ab", t.exit_codes):
        log = folder / f"{name}.log"
        if code is None:
            t.errors.append(f"run {name} did not end in time: {tail(log)}")
        elif code != 0:
            t.errors.append(f"run {name} exit {code}: {tail(log, 4)}")
        elif "Traceback" in log.read_text(errors="replace"):
            t.errors.append(f"run {name} printed a traceback: {tail(log, 4)}")
    return 0


def resume_race(
    scn: Scenario, t: Trial, folder: Path, rng: random.Random, deadline: Deadline
) -> int:
    first = start(_argv(scn, folder), folder, _env(folder, t, "killed"), folder / "killed.log")
    at_start = rng.randint(1, len(scn.expected) - 1)
    try:
        give_up = time.monotonic() + min(30.0, max(1.0, deadline.left()))
        while first.poll() is None and time.monotonic() < give_up:
            if (folder / "side.log").exists() and (folder / "side.log").read_bytes().count(
                b" start "
            ) >= at_start:
                break
            time.sleep(0.005)
        if first.poll() is not None:
            t.errors.append(f"the run to kill ended first (exit {first.returncode})")
        else:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
    finally:
        if first.poll() is None:
            kill_group(first)
    offset = (folder / "side.log").stat().st_size if (folder / "side.log").exists() else 0
    killed = set(run_statuses(folder) or {})
    procs = []
    try:
        lister = start(["runs", "list"], folder, _env(folder, t, "list"), folder / "list.log")
        procs.append(lister)
        procs.append(start(_argv(scn, folder), folder, _env(folder, t, "b"), folder / "b.log"))
        until = time.monotonic() + min(RUN_TIMEOUT_S, max(1.0, deadline.left()))
        t.exit_codes = [_wait(p, until) for p in procs]
        # the automatic resume runs detached: wait until the killed run has ended (a task's
        # child the killed engine left behind may live on: that is chaos_kill's count)
        until = min(until, time.monotonic() + RESUME_WAIT_S)
        while time.monotonic() < until and any(
            (run_statuses(folder) or {}).get(r) in ("RUNNING", None) for r in killed
        ):
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    for name, code in zip(("runs list", "run"), t.exit_codes):
        log = folder / ("list.log" if name == "runs list" else "b.log")
        if code is None:
            t.errors.append(f"`dagmill {name}` did not end in time: {tail(log)}")
        elif code != 0:
            t.errors.append(f"`dagmill {name}` exit {code}: {tail(log, 4)}")
    statuses = run_statuses(folder) or {}
    for run_id in killed:
        if statuses.get(run_id) != "SUCCESS":
            why = tail(folder / ".dagmill" / "logs" / run_id / "engine-resume.log", 3)
            t.errors.append(f"the killed run {run_id} ended {statuses.get(run_id)}: {why}")
    return offset


def _env(folder: Path, t: Trial, engine: str) -> dict[str, str]:
    return engine_env(folder, t.mark, engine)


def trial(scn: Scenario, t: Trial, root: Path, rng: random.Random, deadline: Deadline) -> None:
    folder = root / t.mark
    scn.prepare(folder)
    began = time.monotonic()
    try:
        if t.mode == "resume-race":
            offset = resume_race(scn, t, folder, rng, deadline)
        else:
            offset = two_runs(scn, t, folder, deadline)
    except (OSError, subprocess.SubprocessError) as e:
        t.errors.append(f"{type(e).__name__}: {e}")
        offset = 0
    t.seconds = round(time.monotonic() - began, 2)
    starts = Counter(e.task for e in side_log(folder) if e.what == "start" and e.offset >= offset)
    t.twice_tasks = sorted(task for task, c in starts.items() if c > 1)
    t.twice = len(t.twice_tasks)
    t.extra_executions = sum(c - 1 for c in starts.values())
    wrong = wrong_outputs(folder, scn.expected)
    t.wrong_outputs = len(wrong)
    if wrong:
        t.errors.append(f"wrong outputs: {'; '.join(wrong[:3])}")


def totals(trials: list[Trial]) -> dict[str, int]:
    return {
        "trials": len(trials),
        "twice": sum(t.twice for t in trials),
        "tasks": sum(len(SCENARIOS[t.scenario].expected) for t in trials),
        "extra_executions": sum(t.extra_executions for t in trials),
        "wrong_outputs": sum(t.wrong_outputs for t in trials),
        "failed_runs": sum(any(c != 0 for c in t.exit_codes) or bool(t.errors) for t in trials),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="in all, split over 3 graphs")
    parser.add_argument("--resume-races", type=int, default=3, help="also, split likewise")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's gaps")
    parser.add_argument("--budget", type=float, default=110.0, help="seconds in all")
    parser.add_argument("--scenarios", default="chain,fanout,yaml")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    names = [s for s in args.scenarios.split(",") if s]

    def split(total: int) -> list[int]:
        return [total // len(names) + (i < total % len(names)) for i in range(len(names))]

    token = f"chaos{secrets.token_hex(4)}"
    plan: list[Trial] = []
    for name, pairs, races in zip(names, split(args.trials), split(args.resume_races)):
        for n in range(pairs):
            together = n % 2 == 0
            gap = 0.0 if together else round(rng.uniform(0, 1), 3)
            mode = "together" if together else "apart"
            plan.append(Trial(name, n, mode, gap, f"{token}-{name}-{n:03d}"))
        for n in range(pairs, pairs + races):
            plan.append(Trial(name, n, "resume-race", 0.0, f"{token}-{name}-{n:03d}"))
    root = Path(tempfile.mkdtemp(prefix=f"dagmill-{token}-"))
    deadline = Deadline(args.budget)
    print(
        f"chaos_concurrent: seed {seed} (replay with --seed {seed}), {args.trials} trials "
        f"+ {args.resume_races} resume races, budget {args.budget:.0f} s, folder {root}"
    )
    done: list[Trial] = []
    notes: list[str] = []
    try:
        for i, t in enumerate(plan):
            per = max((t.seconds for t in done), default=3.0)
            if deadline.left() < per + 2:
                notes.append(f"stopped early after {i} of {len(plan)} trials: time budget")
                break
            trial(SCENARIOS[t.scenario], t, root, rng, deadline)
            done.append(t)
    finally:
        left = kill_processes(token)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = args.budget - deadline.left()

    for name in names:
        print(f"\n{name}")
        print(
            f"  {'#':>3} {'mode':<11} {'gap':>5} {'twice':>5} {'extra':>5} {'wrong':>5} "
            f"{'exit':>9} {'s':>5}"
        )
        for t in (t for t in done if t.scenario == name):
            codes = ",".join("-" if c is None else str(c) for c in t.exit_codes)
            print(
                f"  {t.n:>3} {t.mode:<11} {t.gap_s:>5.2f} {t.twice:>5} {t.extra_executions:>5} "
                f"{t.wrong_outputs:>5} {codes:>9} {t.seconds:>5.1f}"
            )
            for e in t.errors:
                print(f"        error: {e[:300]}")
    print(
        f"\n{'scenario':<8} {'mode':<11} {'trials':>6} {'tasks twice':>11} {'of tasks':>8} "
        f"{'extra runs':>10} {'wrong':>5} {'failed':>6}"
    )
    for name in names:
        for mode in ("together", "apart", "resume-race"):
            ts = [t for t in done if t.scenario == name and t.mode == mode]
            if ts:
                c = totals(ts)
                print(
                    f"{name:<8} {mode:<11} {c['trials']:>6} {c['twice']:>11} {c['tasks']:>8} "
                    f"{c['extra_executions']:>10} {c['wrong_outputs']:>5} "
                    f"{c['failed_runs']:>6}"
                )
    pairs = totals([t for t in done if t.mode != "resume-race"])
    races = totals([t for t in done if t.mode == "resume-race"])
    for label, c in (("two runs", pairs), ("resume races", races)):
        print(
            f"{label}: {c['trials']} trials, tasks executed twice {c['twice']} of "
            f"{c['tasks']}, wrong outputs {c['wrong_outputs']}, trials with a failed run "
            f"{c['failed_runs']}"
        )
    stopped = len(done) < len(plan)
    print(f"{elapsed:.1f} s" + (" (STOPPED EARLY)" if stopped else ""))
    for note in notes:
        print(f"NOTE: {note}")
    if left:
        print(f"(killed {left} processes of ours still alive at the end)")
    if args.json is not None:
        report = {
            "seed": seed,
            "budget_s": args.budget,
            "elapsed_s": round(elapsed, 2),
            "trials_planned": len(plan),
            "stopped_early": stopped,
            "notes": notes,
            "totals": {"two_runs": pairs, "resume_races": races},
            "trials": [asdict(t) for t in done],
        }
        args.json.write_text(json.dumps(report, indent=1))
    bad = sum(c["twice"] + c["wrong_outputs"] + c["failed_runs"] for c in (pairs, races))
    return 0 if bad == 0 and not stopped else 1


if __name__ == "__main__":
    sys.exit(main())
