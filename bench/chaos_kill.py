"""Kill the engine at random moments, resume, and count what went wrong.

    python bench/chaos_kill.py [--kills 30] [--seed N] [--budget 115] [--json FILE]

Three graphs (bench/chaos_common.py): a chain of 20 Python tasks with 1 worker, a fan-out
of 40 (+ a join) with `--workers 2`, a YAML pipeline of 7 processor modules (1 worker, no
`requirement:`). Each kill gets a fresh folder (DAGMILL_HOME, data, TMPDIR inside it):
`dagmill run` starts, gets SIGKILL (its own pid only, as the OOM killer or `kill -9`
would) at a random moment of its run, and is resumed until complete: by `dagmill run` of
the same target on even kills, by `dagmill runs resume RUN` on odd ones. The moment: once
the m-th task (m random) has started, plus a random 0-1.5 times the mean time between two
task starts (measured on the earlier runs of the graph; a guess for the first), so inside
a task, between two, in a module's start-up, or after the last one; not a clock time,
which misses the run on a busier or a faster machine. The graphs take turns, so a stop
for time cuts them evenly.
Counted per kill:

- re-executed: tasks whose output was in place (renamed) when the engine died and which
  started again afterwards (side log).
- orphans: processes of that folder's runs (marker in their environment or command line)
  still alive at least 2 s after its resume ended (/proc scan).
- temp files: ``*.dagmill-tmp-*`` and ``dagmill-processor-error-*`` anywhere in the
  folder (data, DAGMILL_HOME, its own TMPDIR), once everything has ended.
- wrong outputs: final values that differ from the plain-Python answer.
- late (not part of the verdict): task executions that finished after their engine was
  dead (a module or worker that outlived it).
- errors: a resume that did not end with exit 0 and correct outputs, or a traceback.

The total time stays under ``--budget`` seconds: when it would not, the script stops
starting kills, says so, and reports what it did. Exit status 0 when every count is zero
and every planned kill happened, else 1. Everything it started is killed on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chaos_common import (
    SCENARIOS,
    WORK_S,
    Deadline,
    Scenario,
    engine_env,
    kill_group,
    kill_processes,
    our_processes,
    outputs,
    running_run_id,
    side_log,
    start,
    tail,
    temp_files,
    wrong_outputs,
)

ORPHAN_AFTER_S = 2.0
RESUME_TRIES = 3
RESUME_TIMEOUT_S = 40.0
RUN_TIMEOUT_S = 30.0
COUNTS = ("reexecuted", "orphans", "temp_files", "wrong_outputs")


@dataclass
class Kill:
    scenario: str
    n: int
    mark: str
    at_start: int  # killed once this many task starts are in the side log ...
    extra_s: float  # ... and this much later (drawn as a fraction of the mean start gap)
    delay_s: float = 0.0  # seconds from `dagmill run` to the kill
    landed: bool = False  # the engine was still running when the kill came
    done_at_kill: int = 0
    resumed_by: list[str] = field(default_factory=list)
    reexecuted: int = 0
    reexecuted_tasks: list[str] = field(default_factory=list)
    orphans: int = 0
    orphan_cmdlines: list[str] = field(default_factory=list)
    temp_files: int = 0
    temp_file_names: list[str] = field(default_factory=list)
    wrong_outputs: int = 0
    wrong_output_detail: list[str] = field(default_factory=list)
    late: int = 0
    errors: list[str] = field(default_factory=list)
    # kept for the final pass, not printed
    killed_at: float = 0.0
    log_offset: int = 0
    finished: list[str] = field(default_factory=list)
    resume_ended: float = 0.0


def resume(scn: Scenario, k: Kill, folder: Path, deadline: Deadline) -> None:
    """Resume until the graph is complete and right (at most RESUME_TRIES commands)."""
    for attempt in range(1, RESUME_TRIES + 1):
        run_id = running_run_id(folder) if k.n % 2 == 1 else None
        if run_id is not None:
            argv = ["runs", "resume", run_id, "--workers", str(scn.workers), "--quiet"]
            how = "runs resume"
        else:
            argv = ["run", *scn.target(folder), "--workers", str(scn.workers), "--quiet"]
            how = "run"
        k.resumed_by.append(how)
        log = folder / f"engine-resume-{attempt}.log"
        proc = start(argv, folder, engine_env(folder, k.mark, f"r{attempt}"), log)
        try:
            proc.wait(timeout=max(1.0, min(RESUME_TIMEOUT_S, deadline.left())))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            k.errors.append(f"`dagmill {how}` did not end in time: {tail(log)}")
            break
        finally:
            k.resume_ended = time.monotonic()
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in text:
            k.errors.append(f"`dagmill {how}` printed a traceback: {tail(log, 4)}")
        if proc.returncode != 0:
            k.errors.append(f"`dagmill {how}` exit {proc.returncode}: {tail(log, 4)}")
        if proc.returncode == 0 and not wrong_outputs(folder, scn.expected):
            return
        if deadline.left() < 2:
            break


def _starts(folder: Path) -> int:
    try:
        return (folder / "side.log").read_bytes().count(b" start ")
    except FileNotFoundError:
        return 0


def one_kill(scn: Scenario, k: Kill, folder: Path, deadline: Deadline) -> None:
    """Run, SIGKILL the engine once the k.at_start-th task has started and k.extra_s more
    seconds passed (a moment in a task, between tasks or after the last one), resume."""
    scn.prepare(folder)
    env = engine_env(folder, k.mark, "r0")
    argv = ["run", *scn.target(folder), "--workers", str(scn.workers), "--quiet"]
    began = time.monotonic()
    proc = start(argv, folder, env, folder / "engine-killed.log")
    try:
        give_up = began + min(RUN_TIMEOUT_S, max(1.0, deadline.left()))
        while proc.poll() is None and time.monotonic() < give_up:
            if _starts(folder) >= k.at_start:
                time.sleep(k.extra_s)
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            k.landed = True
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    k.killed_at = time.time()
    k.delay_s = round(time.monotonic() - began, 3)
    try:
        k.log_offset = (folder / "side.log").stat().st_size
    except FileNotFoundError:
        k.log_offset = 0
    k.finished = sorted(outputs(folder))
    k.done_at_kill = len(k.finished)
    resume(scn, k, folder, deadline)


def final_pass(kills: list[Kill], root: Path, token: str) -> None:
    """Count what is left, at least ORPHAN_AFTER_S after the last resume ended (the tasks'
    children sleep 120 s: one left behind by the first kill is still there)."""
    if not kills:
        return
    wait = ORPHAN_AFTER_S - (time.monotonic() - max(k.resume_ended for k in kills))
    if wait > 0:
        time.sleep(wait)
    alive = our_processes(token)
    for k in kills:
        scn = SCENARIOS[k.scenario]
        folder = root / k.mark
        mine = [p for p in alive if p.mark == k.mark]
        k.orphans = len(mine)
        k.orphan_cmdlines = [f"{p.engine}: {p.cmdline[:80]}" for p in mine]
        k.temp_file_names = temp_files(folder)
        k.temp_files = len(k.temp_file_names)
        k.wrong_output_detail = wrong_outputs(folder, scn.expected)
        k.wrong_outputs = len(k.wrong_output_detail)
        events = side_log(folder)
        again = {
            e.task
            for e in events
            if e.offset >= k.log_offset and e.what == "start" and e.task in k.finished
        }
        k.reexecuted_tasks = sorted(again)
        k.reexecuted = len(again)
        k.late = sum(
            1 for e in events if e.engine == "r0" and e.what == "done" and e.at > k.killed_at
        )


def start_gap(folder: Path) -> float | None:
    """The mean time between two task starts under one engine of this folder's runs."""
    by_engine: dict[str, list[float]] = {}
    for e in side_log(folder):
        if e.what == "start":
            by_engine.setdefault(e.engine, []).append(e.at)
    gaps = [(max(v) - min(v)) / (len(v) - 1) for v in by_engine.values() if len(v) >= 3]
    return statistics.median(gaps) if gaps else None


def run_kills(plan: list[Kill], root: Path, deadline: Deadline) -> tuple[list[Kill], list[str]]:
    """The kills in order (the scenarios take turns, so a stop for time cuts them evenly)."""
    done: list[Kill] = []
    gaps: dict[str, list[float]] = {}
    took: dict[str, list[float]] = {}
    for i, k in enumerate(plan):
        scn = SCENARIOS[k.scenario]
        expect = statistics.mean(took.get(k.scenario) or [5.0])
        if deadline.left() < expect * 1.2 + ORPHAN_AFTER_S + 1:
            return done, [f"stopped early after {i} of {len(plan)} kills: time budget"]
        gap = statistics.median(gaps.get(k.scenario) or [scn.gap_guess])
        k.extra_s = round(k.extra_s * gap, 3)  # planned as a fraction of the gap
        began = time.monotonic()
        try:
            one_kill(scn, k, root / k.mark, deadline)
        except (OSError, subprocess.SubprocessError) as e:
            k.errors.append(f"{type(e).__name__}: {e}")
        took.setdefault(k.scenario, []).append(time.monotonic() - began)
        measured = start_gap(root / k.mark)
        if measured is not None:
            gaps.setdefault(k.scenario, []).append(max(measured, WORK_S))
        done.append(k)
    return done, []


def totals(kills: list[Kill]) -> dict[str, int]:
    out = {"kills": len(kills), "landed": sum(k.landed for k in kills)}
    for c in (*COUNTS, "late"):
        out[c] = sum(getattr(k, c) for k in kills)
    out["errors"] = sum(bool(k.errors) for k in kills)
    return out


def print_scenario(name: str, kills: list[Kill]) -> None:
    print(f"\n{name}")
    print(
        f"  {'#':>3} {'kill at':>13} {'mid-run':>7} {'done':>4} {'re-exec':>7} {'orphans':>7} "
        f"{'tmp':>4} {'wrong':>5} {'late':>4}  resumed by"
    )
    for k in kills:
        at = f"{k.at_start}+{k.extra_s * 1000:.0f}ms={k.delay_s:.2f}s"
        print(
            f"  {k.n:>3} {at:>13} {'yes' if k.landed else 'no':>7} "
            f"{k.done_at_kill:>4} {k.reexecuted:>7} {k.orphans:>7} {k.temp_files:>4} "
            f"{k.wrong_outputs:>5} {k.late:>4}  {', '.join(k.resumed_by)}"
        )
        for e in k.errors:
            print(f"        error: {e[:300]}")
        if k.reexecuted_tasks:
            print(f"        re-executed: {' '.join(k.reexecuted_tasks)}")
        for c in k.orphan_cmdlines[:3]:
            print(f"        orphan {c}")
        if k.temp_file_names:
            print(f"        left: {' '.join(k.temp_file_names[:4])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30, help="in all, split over 3 graphs")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's moments")
    parser.add_argument("--budget", type=float, default=115.0, help="seconds in all")
    parser.add_argument("--scenarios", default="chain,fanout,yaml")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    names = [s for s in args.scenarios.split(",") if s]
    token = f"chaos{secrets.token_hex(4)}"
    # the plan is drawn first, so a seed replays the same task counts and fractions
    plan = [
        Kill(name, n, f"{token}-{name}-{n:03d}", at_start, round(rng.uniform(0, 1.5), 3))
        for n in range(args.kills // len(names) + 1)
        for name in names
        for at_start in [rng.randint(1, len(SCENARIOS[name].expected))]
    ][: args.kills]
    root = Path(tempfile.mkdtemp(prefix=f"dagmill-{token}-"))
    deadline = Deadline(args.budget)
    print(
        f"chaos_kill: seed {seed} (replay with --seed {seed}), {args.kills} kills, "
        f"budget {args.budget:.0f} s, folder {root}"
    )
    try:
        done, notes = run_kills(plan, root, deadline)
        final_pass(done, root, token)
        results = {n: [k for k in done if k.scenario == n] for n in names}
        for name, kills in results.items():
            print_scenario(name, kills)
    finally:
        left = kill_processes(token)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = args.budget - deadline.left()

    print(
        f"\n{'scenario':<8} {'kills':>5} {'mid-run':>7} {'re-exec':>7} {'orphans':>7} "
        f"{'tmp':>4} {'wrong':>5} {'late':>4} {'errors':>6}"
    )
    all_kills: list[Kill] = []
    for name, kills in results.items():
        all_kills += kills
        t = totals(kills)
        print(
            f"{name:<8} {t['kills']:>5} {t['landed']:>7} {t['reexecuted']:>7} "
            f"{t['orphans']:>7} {t['temp_files']:>4} {t['wrong_outputs']:>5} {t['late']:>4} "
            f"{t['errors']:>6}"
        )
    t = totals(all_kills)
    print(
        f"{'total':<8} {t['kills']:>5} {t['landed']:>7} {t['reexecuted']:>7} "
        f"{t['orphans']:>7} {t['temp_files']:>4} {t['wrong_outputs']:>5} {t['late']:>4} "
        f"{t['errors']:>6}"
    )
    stopped = t["kills"] < args.kills
    print(
        f"{elapsed:.1f} s; finished tasks executed again {t['reexecuted']}, orphan processes "
        f"{t['orphans']}, temporary files left {t['temp_files']}, wrong outputs "
        f"{t['wrong_outputs']}, kills {t['kills']} of {args.kills}"
        + (" (STOPPED EARLY)" if stopped else "")
    )
    for note in notes:
        print(f"NOTE: {note}")
    if left:
        print(f"(killed {left} processes of ours still alive at the end)")
    if args.json is not None:
        report = {
            "seed": seed,
            "budget_s": args.budget,
            "elapsed_s": round(elapsed, 2),
            "kills_planned": args.kills,
            "stopped_early": stopped,
            "notes": notes,
            "totals": t,
            "scenarios": {
                n: {"totals": totals(ks), "kills": [_public(k) for k in ks]}
                for n, ks in results.items()
            },
        }
        args.json.write_text(json.dumps(report, indent=1))
    clean = all(t[c] == 0 for c in COUNTS) and t["errors"] == 0 and not stopped and not notes
    return 0 if clean else 1


def _public(k: Kill) -> dict[str, object]:
    d = asdict(k)
    for private in ("killed_at", "log_offset", "finished", "resume_ended"):
        d.pop(private)
    return d


if __name__ == "__main__":
    sys.exit(main())
