"""YAML pipelines: the cost of the front door and of a process node.

    python bench/yaml.py [--runs 5] [--nodes 2000] [--run-nodes 200] [--dir /dev/shm]

1. validate + plan a generated pipeline of 2,000 process nodes (a chain/fan-in mix, every
   node runs the same small module), in a fresh process: compile_pipeline (YAML, pydantic,
   references, modules, graph) and the plan. Target: under 1 s (median).
2. run 200 trivial module nodes (each copies its small input to its output through
   ``dagmill.processor``; a chain), workers=1, run record on, process spawn included,
   against a plain loop of ``subprocess.run([sys.executable, module])`` over the same
   modules with the same environment (the node's context JSON, a temporary output renamed
   into place). Target: dagmill within 1.3x of the loop.
Every figure is the median of fresh processes.
"""

from __future__ import annotations

import os
import sys

# run as a script, this file's folder comes first on sys.path, and this file is named
# like PyYAML: take the folder out before anything imports `yaml`
HERE = os.path.abspath(__file__)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

MODULE = """\
import shutil

from dagmill import processor

(src,), (dst,) = processor.fetch_datanodes_information()
shutil.copyfile(src, dst)
"""


# -- the pipelines ---------------------------------------------------------------------------
def big_pipeline(n: int) -> str:
    """n process nodes: chains of 9 that every 10th node joins (fan-in of the last 10)."""
    lines = ["dataNodes:", "  src:", "    source: src.txt"]
    lines += [f"  d{i}:\n    source: d{i}.txt" for i in range(n)]
    lines.append("processNodes:")
    for i in range(n):
        if i == 0:
            inputs = ["src"]
        elif i % 10 == 0:
            inputs = [f"d{j}" for j in range(max(0, i - 10), i)]
        else:
            inputs = [f"d{i - 1}"]
        lines += [
            f"  p{i}:",
            f"    input: [{', '.join(inputs)}]",
            f"    output: [d{i}]",
            "    processor: step",
        ]
    return "\n".join(lines) + "\n"


def chain_pipeline(n: int) -> str:
    lines = ["dataNodes:", "  src:", "    source: src.txt"]
    lines += [f"  d{i}:\n    source: d{i}.txt" for i in range(n)]
    lines.append("processNodes:")
    for i in range(n):
        lines += [
            f"  p{i}:",
            f"    input: [{'src' if i == 0 else f'd{i - 1}'}]",
            f"    output: [d{i}]",
            "    processor: step",
        ]
    return "\n".join(lines) + "\n"


def make_folder(text: str) -> str:
    folder = tempfile.mkdtemp(prefix="dagmill_bench_yaml_")
    with open(os.path.join(folder, "pipeline.yaml"), "w") as f:
        f.write(text)
    with open(os.path.join(folder, "step.py"), "w") as f:
        f.write(MODULE)
    return folder


def fresh_data(folder: str, run: int) -> str:
    data = os.path.join(folder, f"data{run}")
    os.makedirs(data)
    with open(os.path.join(data, "src.txt"), "w") as f:
        f.write("a small input\n")
    return data


# -- the children: one measured thing in a fresh process -------------------------------------
def child_validate(folder: str) -> dict[str, float]:
    t0 = time.perf_counter()
    from dagmill.services.pipelines import plan_pipeline, validate

    import_s = time.perf_counter() - t0
    file = os.path.join(folder, "pipeline.yaml")
    data = os.path.join(folder, "data")
    t1 = time.perf_counter()
    compiled = validate(file, data)
    t2 = time.perf_counter()
    plan, _ = plan_pipeline(file, data, compiled=compiled)
    t3 = time.perf_counter()
    ran = [t for t in plan.to_run if not plan.graph.tasks[t].external]
    assert len(ran) == len(compiled.spec.processNodes), "expected every node to run"
    return {"import_s": import_s, "validate_s": t2 - t1, "plan_s": t3 - t2, "total_s": t3 - t1}


def child_run(folder: str, data: str) -> dict[str, float]:
    os.environ["DAGMILL_HOME"] = os.path.join(folder, ".dagmill")
    from dagmill.services.execution import RunOptions
    from dagmill.services.pipelines import run_pipeline

    t = time.perf_counter()
    result = run_pipeline(
        os.path.join(folder, "pipeline.yaml"), data, options=RunOptions(execution_summary=False)
    )
    inrun = time.perf_counter() - t
    assert result is not None and result.ok, "the run failed"
    return {"inrun_s": inrun, "ran": len(result.plan.to_run)}


def child_loop(folder: str, data: str, n: int) -> dict[str, float]:
    """What dagmill does per node, without dagmill: a context, a process, a rename."""
    module = os.path.join(folder, "step.py")
    contexts = []
    for i in range(n):
        src = os.path.join(data, "src.txt" if i == 0 else f"d{i - 1}.txt")
        dst = os.path.join(data, f"d{i}.txt")
        tmp = os.path.join(data, f".d{i}.txt.tmp")
        context = {
            "node": f"p{i}",
            "inputs": [{"name": "in", "source": src, "format": "text", "options": {}}],
            "outputs": [
                {"name": "out", "source": tmp, "final": dst, "format": "text", "options": {}}
            ],
            "params": {},
            "error_file": os.path.join(data, ".error"),
        }
        contexts.append((json.dumps(context), tmp, dst))
    t = time.perf_counter()
    for context, tmp, dst in contexts:
        env = {**os.environ, "DAGMILL_PROCESSOR_CONTEXT": context}
        subprocess.run([sys.executable, module], cwd=folder, env=env, check=True)
        os.replace(tmp, dst)
    return {"loop_s": time.perf_counter() - t}


def in_child(*args: str) -> dict[str, float]:
    p = subprocess.run(
        [sys.executable, HERE, "--child", *args], capture_output=True, text=True, check=False
    )
    if p.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{p.stderr}")
    figures: dict[str, float] = json.loads(p.stdout.strip().splitlines()[-1])
    return figures


# -- the parent ------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per figure")
    ap.add_argument("--nodes", type=int, default=2000, help="process nodes to validate")
    ap.add_argument("--run-nodes", type=int, default=200, help="process nodes to run")
    ap.add_argument("--dir", help="folder for the pipelines (default: the temp folder)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "validate":
            out = child_validate(rest[0])
        elif kind == "run":
            out = child_run(rest[0], rest[1])
        else:
            out = child_loop(rest[0], rest[1], int(rest[2]))
        print(json.dumps(out))
        return

    if args.dir:
        tempfile.tempdir = args.dir
    print(
        f"YAML pipelines, medians of {args.runs} fresh processes "
        f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, in {tempfile.gettempdir()})\n"
    )

    folder = make_folder(big_pipeline(args.nodes))
    try:
        rows = [in_child("validate", folder) for _ in range(args.runs)]
        exe = [sys.executable, "-m", "dagmill.cli.main", "validate", "pipeline.yaml"]
        cli = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(exe, cwd=folder, capture_output=True, check=True)
            cli.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    total = sorted(r["total_s"] for r in rows)
    verdict = "ok" if med("total_s") < 1.0 else "OVER the 1 s target"
    print(f"validate + plan, {args.nodes} process nodes (chain/fan-in mix, one module):")
    print(
        f"  {med('total_s'):.3f} s (min {total[0]:.3f}, max {total[-1]:.3f}): "
        f"validate {med('validate_s'):.3f} s, plan {med('plan_s'):.3f} s; "
        f"imports {med('import_s'):.3f} s apart  [{verdict}]"
    )
    print(f"  `dagmill validate` wall time, start-up included: {statistics.median(cli):.3f} s\n")

    n = args.run_nodes
    folder = make_folder(chain_pipeline(n))
    try:
        engine, loop = [], []
        for i in range(args.runs):  # interleaved, so both see the same disk and load
            r = in_child("run", folder, fresh_data(folder, 2 * i))
            assert r["ran"] == n, r
            engine.append(r["inrun_s"] / n * 1000)
            loop.append(in_child("loop", folder, fresh_data(folder, 2 * i + 1), str(n))["loop_s"])
            loop[-1] = loop[-1] / n * 1000
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    e, p = statistics.median(engine), statistics.median(loop)
    ratio = e / p
    verdict = "ok" if ratio <= 1.3 else "OVER the 1.3x target"
    print(f"run {n} module nodes (a chain), workers=1, run record on; ms per node:")
    print(f"  dagmill        {e:8.2f}  (min {min(engine):.2f}, max {max(engine):.2f})")
    print(f"  plain loop     {p:8.2f}  (min {min(loop):.2f}, max {max(loop):.2f})")
    print(f"  ratio          {ratio:8.2f}x  [{verdict}]; dagmill's own: {e - p:.2f} ms per node")


if __name__ == "__main__":
    main()
