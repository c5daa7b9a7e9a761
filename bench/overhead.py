"""Engine overhead per task, with the run record and pickle outputs on.

    python bench/overhead.py [--runs 5] [--quick] [--dir /dev/shm]

Shapes (every task is a no-op writing a small pickle, like ../shared/peers/):
  chain 200     task i needs task i-1
  fanout N      1 root -> N independent tasks -> 1 join (N = 1,000 and 5,000)
each inline (workers=1) and with two worker processes. Every figure is the median of
fresh processes: "in-run" is graph construction + ``dagmill.run`` (what the peers'
scripts time), per task = in-run / tasks. Also: the time to find a 5,000-task graph
already complete (plan only, and a full no-op ``dagmill.run``), peak memory of the
5,000-task run, ``dagmill --help`` start-up, and which heavy modules ``import dagmill``
loads.

Outputs are real files in ``--dir`` (default: the temp folder). File creation on a
shared virtual disk varies several-fold from minute to minute, so the script also times
a plain Python loop doing the same file work with no engine (write to a temporary name,
rename, read the inputs): the difference is dagmill's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
from shapes import expected, final_task, shapes  # noqa: E402


# -- the child: one measured run in a fresh process ----------------------------------------
def child(shape: str, n: int, workers: int, folder: str, mode: str) -> None:
    t0 = time.perf_counter()
    import dagmill

    # the engine's modules load on first use; load them here, so that "import" is the
    # whole package (as `import luigi` is in the peers' scripts) and in-run is the run
    import dagmill.store
    import dagmill.workflow

    import_s = time.perf_counter() - t0

    s = shapes(dagmill)

    os.environ["DAGMILL_HOME"] = os.path.join(folder, ".dagmill")
    dagmill.set_dir(folder)
    t1 = time.perf_counter()
    final = final_task(s, shape, n)
    if mode == "plan":
        from dagmill.services.tasks import make_plan

        plan, _ = make_plan([final])
        ran = len(plan.to_run)
    else:
        result = dagmill.run([final], workers=workers, execution_summary=False)
        assert result is not None
        ran = len(result.plan.to_run)
    inrun = time.perf_counter() - t1
    assert final.outputLoad() == expected(shape, n), "wrong result"
    tasks = n if shape == "chain" else n + 2
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "inrun_s": inrun,
                "tasks": tasks,
                "ran": ran,
                "import_s": import_s,
                "peak_mb": rss_kb / 1024,
            }
        )
    )


def plain_loop(shape: str, n: int, folder: str) -> float:
    """The same file work as the tasks, with no engine: the floor for this disk."""
    import pickle

    t = time.perf_counter()

    def save(name: str, obj: int) -> None:
        sub = os.path.join(folder, name.split("_")[0])
        if not os.path.isdir(sub):
            os.makedirs(sub)
        tmp = os.path.join(sub, f".{name}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f)
        os.replace(tmp, os.path.join(sub, name))

    def load(name: str) -> int:
        with open(os.path.join(folder, name.split("_")[0], name), "rb") as f:
            value: int = pickle.load(f)
            return value

    if shape == "chain":
        save("Chain_0", 1)
        for i in range(1, n):
            save(f"Chain_{i}", load(f"Chain_{i - 1}") + 1)
    else:
        save("Root_", 1)
        for i in range(n):
            save(f"Leaf_{i}", load("Root_") + i)
        save("Join_", sum(load(f"Leaf_{i}") for i in range(n)))
    return time.perf_counter() - t


# -- the parent: repeat, take medians, print --------------------------------------------
def measure(
    shape: str, n: int, workers: int, runs: int, mode: str = "run", folder: str | None = None
) -> list[dict[str, float]]:
    out = []
    for _ in range(runs):
        d = folder or tempfile.mkdtemp(prefix="dagmill_bench_")
        try:
            p = subprocess.run(
                [sys.executable, HERE, "--child", shape, str(n), str(workers), d, mode],
                capture_output=True,
                text=True,
                check=True,
            )
            out.append(json.loads(p.stdout.strip().splitlines()[-1]))
        finally:
            if folder is None:
                shutil.rmtree(d, ignore_errors=True)
    return out


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per figure")
    ap.add_argument("--quick", action="store_true", help="skip the 5,000-task fan-out runs")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--dir", help="folder for the outputs (default: the temp folder)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        shape, n, workers, folder, mode = args.child
        child(shape, int(n), int(workers), folder, mode)
        return

    if args.dir:
        tempfile.tempdir = args.dir
    figures: dict[str, object] = {"dir": tempfile.gettempdir()}
    print(
        f"outputs in {tempfile.gettempdir()}; floor = the same file work in a plain loop,"
        " dagmill = ms/task - floor"
    )
    print(
        f"dagmill overhead, medians of {args.runs} fresh processes "
        f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)\n"
    )
    print(
        f"{'shape':<14}{'workers':>8}{'ms/task':>10}{'min':>8}{'max':>8}"
        f"{'in-run s':>10}{'import s':>10}{'peak MB':>9}{'floor':>8}{'dagmill':>9}"
    )
    shapes = [("chain", 200), ("fanout", 1000)] + ([] if args.quick else [("fanout", 5000)])
    for shape, n in shapes:
        floors = []
        for _ in range(args.runs):
            d = tempfile.mkdtemp(prefix="dagmill_bench_floor_")
            try:
                floors.append(plain_loop(shape, n, d) / (n if shape == "chain" else n + 2) * 1000)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        floor = statistics.median(floors)
        for workers in (1, 2):
            rows = measure(shape, n, workers, args.runs)
            per = sorted(r["inrun_s"] / r["tasks"] * 1000 for r in rows)
            key = f"{shape}{n}_w{workers}"
            figures[key] = {
                "ms_per_task": statistics.median(per),
                "inrun_s": med(rows, "inrun_s"),
                "peak_mb": med(rows, "peak_mb"),
                "import_s": med(rows, "import_s"),
                "floor_ms_per_task": floor,
            }
            print(
                f"{shape + ' ' + str(n):<14}{workers:>8}{statistics.median(per):>10.3f}"
                f"{per[0]:>8.3f}{per[-1]:>8.3f}{med(rows, 'inrun_s'):>10.3f}"
                f"{med(rows, 'import_s'):>10.3f}{med(rows, 'peak_mb'):>9.0f}"
                f"{floor:>8.3f}{statistics.median(per) - floor:>9.3f}"
            )

    n_done = 1000 if args.quick else 5000
    d = tempfile.mkdtemp(prefix="dagmill_bench_done_")
    try:
        measure("fanout", n_done, 1, 1, "run", d)  # make it complete (not measured)
        plan_rows = measure("fanout", n_done, 1, args.runs, "plan", d)
        run_rows = measure("fanout", n_done, 1, args.runs, "run", d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert all(r["ran"] == 0 for r in plan_rows + run_rows), "graph was not complete"
    figures["complete"] = {
        "tasks": n_done + 2,
        "plan_s": med(plan_rows, "inrun_s"),
        "run_s": med(run_rows, "inrun_s"),
    }
    print(
        f"\n{n_done + 2}-task graph already complete: plan {med(plan_rows, 'inrun_s'):.3f} s,"
        f" full dagmill.run (records a run) {med(run_rows, 'inrun_s'):.3f} s"
    )

    exe = shutil.which("dagmill") or os.path.join(os.path.dirname(sys.executable), "dagmill")
    helps = []
    for _ in range(max(5, args.runs)):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - t)
    figures["help_s"] = statistics.median(helps)
    print(f"dagmill --help: {statistics.median(helps):.3f} s (median of {len(helps)})")

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, time; t = time.perf_counter(); import dagmill;"
            " d = time.perf_counter() - t; print(json.dumps([d, sorted(m for m in"
            " ('pandas', 'pyarrow', 'sqlalchemy', 'sqlite3', 'rich', 'numpy')"
            " if m in sys.modules)]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    import_s, heavy = json.loads(probe.stdout)
    figures["import"] = {"seconds": import_s, "loaded": heavy}
    print(f"import dagmill: {import_s:.3f} s; heavy modules loaded: {heavy or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
