"""YAML pipelines (Allonia's format) from the command line: the seed examples verbatim,
requirements in their own environment, incremental runs, failures, the node options,
validate / schema / graph, jobs, and a corpus of broken files that must be refused."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dagmill.frontends.pipeline.compile import PipelineError
from dagmill.runs import get_run
from dagmill.services.execution import RunOptions
from helpers import wait_for

HERE = Path(__file__).parent
BROKEN = HERE / "pipelines_broken"
BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))

# the seed example, exactly as Allonia writes it
SEED = """\
dataNodes:
  data_node_1:
    source: my_input.csv
  data_node_2:
    source: intermediate.csv
  data_node_3:
    source: my_output.csv
processNodes:
  process_node_1:
    input: [data_node_1]
    output: [data_node_2]
    processor: my_first_task
  process_node_2:
    input: [data_node_2]
    output: [data_node_3]
    processor: my_second_task
schedule:
  schedule_interval: "5 10 * * *"
  start_date: "2022-01-01 00:00"
  end_date: "2022-12-31 00:00"
  timezone: "Europe/Paris"
requirement:
  - name: "pandas"
    version: 1.5.3
"""
SEED_WITHOUT_REQUIREMENT = SEED.split("requirement:")[0]

# a processor that copies its first input to its first output, upper-cased
UPPER = """\
from dagmill import processor

input_data, output_data = processor.fetch_datanodes_information()
with open(input_data[0]) as f, open(output_data[0], "w") as g:
    g.write(f.read().upper())
"""


def dagmill(
    *args: str, cwd: Path, timeout: float = 120, env_data: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    if env_data is not None:
        env["DAGMILL_DATA"] = env_data
    return subprocess.run(
        [sys.executable, "-m", "dagmill.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,  # as a script or CI runs it: no terminal to ask on
    )  # fmt: skip


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run_json(*args: str, cwd: Path) -> tuple[int, dict[str, Any], str]:
    """`dagmill run ... --json`: (exit code, the result, stderr)."""
    out = dagmill("run", *args, "--json", cwd=cwd)
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def executed(result: dict[str, Any]) -> set[str]:
    """The tasks that ran (at least one attempt) in a `run --json` result."""
    return {t["id"] for t in result["tasks"] if t["attempts"] > 0}


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["status"] for t in result["tasks"]}


def preview(*args: str, cwd: Path) -> dict[str, dict[str, Any]]:
    out = dagmill("preview", *args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return {t["id"]: t for t in json.loads(out.stdout)}


def states(plan: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {tid: t["state"] for tid, t in plan.items() if not tid.startswith("data:")}


def stray_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".dagmill-tmp-" in p.name]


# -- the seed examples, verbatim ---------------------------------------------------------
def test_seed_single_node(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path / "pipeline.yaml",
        """\
        dataNodes:
          data_node_1:
            source: my_input.csv
          data_node_2:
            source: my_output.csv
        processNodes:
          process_node_1:
            input: [data_node_1]
            output: [data_node_2]
            processor: my_first_task
        """,
    )
    write(
        tmp_path / "my_first_task.py",
        """\
        import json

        from dagmill import processor

        input_data, output_data = processor.fetch_datanodes_information()
        with open("seen.json", "w") as f:  # cwd is the pipeline's folder
            json.dump([input_data, output_data], f)
        with open(input_data[0]) as f, open(output_data[0], "w") as g:
            g.write(f.read().upper())
        """,
    )
    data = tmp_path / "d"
    missing = dagmill("run", str(pipeline), "--data", str(data), cwd=tmp_path)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert f"{data / 'my_input.csv'} is missing" in missing.stderr
    assert not data.exists() and not (tmp_path / "seen.json").exists()
    write(data / "my_input.csv", "a,b\n1,x\n")
    out = dagmill("run", str(pipeline), "--data", str(data), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "* 1 ran successfully:" in out.stdout and "SUCCESS" in out.stdout
    assert (data / "my_output.csv").read_text() == "A,B\n1,X\n"
    # the module saw resolved paths: the input where it is, the output a temporary name
    # beside its final place (renamed into place on success)
    (inp,), (outp,) = json.loads((tmp_path / "seen.json").read_text())
    assert inp == str(data / "my_input.csv")
    assert Path(outp).parent == data and Path(outp).name != "my_output.csv"
    assert not Path(outp).exists() and not stray_temporaries(data)
    again = dagmill("run", str(pipeline), "--data", str(data), cwd=tmp_path)
    assert again.returncode == 0 and "Did not run any tasks" in again.stdout


def test_seed_two_chained_nodes_with_schedule_and_requirement(tmp_path: Path) -> None:
    """The seed's example verbatim: its requirement (pandas 1.5.3) gets an environment of
    its own, in which the modules run (these modules do not import pandas: 1.5.3 does not
    cap numpy, and today's resolver gives it a numpy 2 it cannot load)."""
    pipeline = write(tmp_path / "pipeline.yaml", SEED)
    assert "schedule_interval" in pipeline.read_text() and "1.5.3" in pipeline.read_text()
    write(tmp_path / "my_first_task.py", UPPER)
    write(
        tmp_path / "my_second_task.py",
        """\
        from dagmill import processor

        input_data, output_data = processor.fetch_datanodes_information()
        with open(input_data[0]) as f:
            rows = f.read().splitlines()
        with open(output_data[0], "w") as g:
            g.write("\\n".join(rows + [f"rows,{len(rows) - 1}"]) + "\\n")
        """,
    )
    write(tmp_path / "data" / "my_input.csv", "name,city\nada,paris\n")
    # the default data root is ./data
    valid = dagmill("validate", "pipeline.yaml", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert "valid (3 data nodes, 2 process nodes, scheduled, 1 requirements)" in valid.stdout
    code, result, err = run_json("pipeline.yaml", cwd=tmp_path)
    assert code == 0, err
    assert executed(result) == {"process_node_1", "process_node_2"}
    assert (tmp_path / "data/intermediate.csv").read_text() == "NAME,CITY\nADA,PARIS\n"
    assert (tmp_path / "data/my_output.csv").read_text() == "NAME,CITY\nADA,PARIS\nrows,1\n"
    code, result, _ = run_json("pipeline.yaml", cwd=tmp_path)
    assert code == 0 and executed(result) == set()


def test_seed_three_inputs_two_outputs(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path / "pipeline.yaml",
        """\
        dataNodes:
          prices:
            source: prices.csv
          quantities:
            source: quantities.csv
          discounts:
            source: discounts.csv
          totals:
            source: totals.csv
          summary:
            source: summary.csv
        processNodes:
          combine:
            input: [prices, quantities, discounts]
            output: [totals, summary]
            processor: combine
        """,
    )
    write(
        tmp_path / "combine.py",
        """\
        from dagmill import processor

        def rows(path):
            with open(path) as f:
                return [line.split(",") for line in f.read().split()[1:]]

        input_data, output_data = processor.fetch_datanodes_information()
        prices, quantities, discounts = (dict(rows(p)) for p in input_data)
        totals = {
            k: float(prices[k]) * int(quantities[k]) * (1 - float(discounts[k]))
            for k in prices
        }
        with open(output_data[0], "w") as f:
            f.write("item,total\\n" + "".join(f"{k},{v:g}\\n" for k, v in totals.items()))
        with open(output_data[1], "w") as f:
            f.write(f"items,sum\\n{len(totals)},{sum(totals.values()):g}\\n")
        """,
    )
    data = tmp_path / "d"
    write(data / "prices.csv", "item,price\napple,2\npear,3\n")
    write(data / "quantities.csv", "item,qty\napple,10\npear,4\n")
    write(data / "discounts.csv", "item,rate\napple,0.5\npear,0\n")
    out = dagmill("run", str(pipeline), "--data", str(data), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (data / "totals.csv").read_text() == "item,total\napple,10\npear,12\n"
    assert (data / "summary.csv").read_text() == "items,sum\n2,22\n"


# -- requirements: their own environment, built once --------------------------------------
SIX_PIPELINE = """\
dataNodes:
  report:
    source: six.txt
processNodes:
  show:
    output: [report]
    processor: show_six
requirement:
  - name: six
    version: "1.16.0"
"""
SHOW_SIX = """\
import importlib.util
import sys

import six

from dagmill import processor

# dagmill's own dependencies are not the pipeline's
leaked = [m for m in ("pydantic", "click", "yaml") if importlib.util.find_spec(m)]
_, output_data = processor.fetch_datanodes_information()
with open(output_data[0], "w") as f:
    f.write(six.__version__ + "\\n" + sys.executable + "\\n" + ",".join(leaked) + "-\\n")
"""


def test_requirements_get_their_own_environment_built_once(tmp_path: Path) -> None:
    from dagmill.frontends.pipeline.envs import environment_python

    assert importlib.util.find_spec("six") is None, "dagmill's own venv must not have six"
    write(tmp_path / "p.yaml", SIX_PIPELINE)
    write(tmp_path / "show_six.py", SHOW_SIX)
    out = dagmill("run", "p.yaml", "--data", "d", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    version, python, leaked = (tmp_path / "d/six.txt").read_text().split()
    assert version == "1.16.0"
    assert leaked == "-", f"the environment sees dagmill's packages: {leaked}"
    assert python != sys.executable
    envs = tmp_path / ".dagmill" / "envs"
    built = [p for p in envs.iterdir() if p.is_dir()]
    assert len(built) == 1 and (built[0] / ".ready").exists()
    assert Path(python).is_relative_to(built[0])
    ready_mtime = (built[0] / ".ready").stat().st_mtime_ns

    # the same set again, from another pipeline file: the environment is reused
    write(tmp_path / "other/p.yaml", SIX_PIPELINE)
    write(tmp_path / "other/show_six.py", SHOW_SIX)
    again = dagmill("run", "other/p.yaml", "--data", "d2", cwd=tmp_path, timeout=60)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "d2/six.txt").read_text().split() == [version, python, "-"]
    assert [p for p in envs.iterdir() if p.is_dir()] == built
    assert (built[0] / ".ready").stat().st_mtime_ns == ready_mtime
    t = time.perf_counter()
    assert environment_python(["six==1.16.0"]) == python
    assert time.perf_counter() - t < 1.0


def test_an_unresolvable_requirement_fails_before_any_task_runs(tmp_path: Path) -> None:
    write(
        tmp_path / "p.yaml",
        """\
        dataNodes:
          out:
            source: out.txt
        processNodes:
          make:
            output: [out]
            processor: make
        requirement:
          - name: surely-not-a-package-xyz
        """,
    )
    write(
        tmp_path / "make.py",
        """\
        from dagmill import processor

        open("ran.txt", "w").close()
        processor.save("out", b"made")
        """,
    )
    out = dagmill("run", "p.yaml", "--data", "d", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "could not be installed" in out.stderr
    assert "surely-not-a-package-xyz" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "ran.txt").exists() and not (tmp_path / "d").exists()
    envs = tmp_path / ".dagmill" / "envs"
    assert not envs.exists() or not [p for p in envs.iterdir() if p.is_dir()]
    runs = dagmill("runs", "list", "--json", cwd=tmp_path)
    assert runs.returncode == 0 and json.loads(runs.stdout) == []

    job = dagmill("jobs", "build", "p.yaml", "--data", "d", cwd=tmp_path, timeout=120)
    assert job.returncode == 2, job.stdout + job.stderr
    assert "surely-not-a-package-xyz" in job.stderr and "could not be installed" in job.stderr
    assert json.loads(dagmill("jobs", "list", "--json", cwd=tmp_path).stdout) == []
    assert not (tmp_path / "ran.txt").exists()


# -- incremental runs ----------------------------------------------------------------------
INCREMENTAL = """\
dataNodes:
  raw:
    source: raw.csv
  clean:
    source: clean.csv
  features:
    source: features.csv
  report:
    source: report.txt
  other:
    source: other.csv
  other_out:
    source: other_out.csv
processNodes:
  prepare:
    input: [raw]
    output: [clean]
    processor: prepare
  featurize:
    input: [clean]
    output: [features]
    processor: featurize
  summarize:
    input: [features]
    output: [report]
    processor: summarize
  side:
    input: [other]
    output: [other_out]
    processor: side
"""
FEATURIZE = """\
from dagmill import processor

FACTOR = 2

(src,), (dst,) = processor.fetch_datanodes_information()
with open(src) as f, open(dst, "w") as g:
    g.write(f.read() * FACTOR)
"""
COPY = """\
import shutil

from dagmill import processor

(src,), (dst,) = processor.fetch_datanodes_information()
shutil.copyfile(src, dst)
"""


def test_changes_rerun_what_they_affect_and_nothing_else(tmp_path: Path) -> None:
    write(tmp_path / "flow/p.yaml", INCREMENTAL)
    write(tmp_path / "flow/prepare.py", UPPER)
    featurize = write(tmp_path / "flow/featurize.py", FEATURIZE)
    write(tmp_path / "flow/summarize.py", COPY)
    write(tmp_path / "flow/side.py", COPY)
    data = tmp_path / "d"
    raw = write(data / "raw.csv", "a\n")
    write(data / "other.csv", "o\n")
    args = ("flow/p.yaml", "--data", str(data))
    everything = {"prepare", "featurize", "summarize", "side"}

    code, result, err = run_json(*args, cwd=tmp_path)
    assert code == 0, err
    assert executed(result) == everything
    assert (data / "report.txt").read_text() == "A\nA\n"
    assert set(states(preview(*args, cwd=tmp_path)).values()) == {"COMPLETE"}

    # comments, blank lines and the docstring do not count
    featurize.write_text(
        '"""Features."""\n# doubles the rows\n\n' + FEATURIZE.replace("= 2", "= 2  # two")
    )
    assert set(states(preview(*args, cwd=tmp_path)).values()) == {"COMPLETE"}
    code, result, _ = run_json(*args, cwd=tmp_path)
    assert code == 0 and executed(result) == set()

    # a real edit: that node and its downstream, nothing else
    featurize.write_text(FEATURIZE.replace("FACTOR = 2", "FACTOR = 3"))
    plan = preview(*args, cwd=tmp_path)
    assert states(plan) == {
        "prepare": "COMPLETE", "featurize": "STALE", "summarize": "STALE", "side": "COMPLETE",
    }  # fmt: skip
    assert plan["featurize"]["reason"] == "code of featurize.module changed"
    assert plan["summarize"]["reason"].startswith("upstream featurize")
    code, result, _ = run_json(*args, cwd=tmp_path)
    assert code == 0 and executed(result) == {"featurize", "summarize"}
    assert (data / "report.txt").read_text() == "A\nA\nA\n"

    # an external input with a new modification time: its readers and their downstream
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    plan = preview(*args, cwd=tmp_path)
    assert states(plan) == {
        "prepare": "STALE", "featurize": "STALE", "summarize": "STALE", "side": "COMPLETE",
    }  # fmt: skip
    assert "raw.csv changed" in plan["prepare"]["reason"]
    code, result, _ = run_json(*args, cwd=tmp_path)
    assert code == 0 and executed(result) == {"prepare", "featurize", "summarize"}

    # --node: that node and its upstream only
    typo = dagmill("run", *args, "--node", "featurise", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'featurize'" in typo.stderr
    raw.write_text("b\n")
    code, result, _ = run_json(*args, "--node", "featurize", cwd=tmp_path)
    assert code == 0 and executed(result) == {"prepare", "featurize"}
    assert {t["id"] for t in result["tasks"]} == {"data:raw", "prepare", "featurize"}
    assert (data / "features.csv").read_text() == "B\nB\nB\n"
    assert (data / "report.txt").read_text() == "A\nA\nA\n"
    assert states(preview(*args, cwd=tmp_path))["summarize"] == "STALE"
    code, result, _ = run_json(*args, "--node", "summarize", cwd=tmp_path)
    assert code == 0 and executed(result) == {"summarize"}

    # --force: everything complete reruns anyway (only the chosen node with --node)
    code, result, _ = run_json(*args, "--force", "--node", "side", cwd=tmp_path)
    assert code == 0 and executed(result) == {"side"}
    code, result, _ = run_json(*args, "--force", cwd=tmp_path)
    assert code == 0 and executed(result) == everything

    # reset --node: that node's outputs go, nothing else's
    out = dagmill("reset", *args, "--node", "featurize", "-y", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "deleted 1 outputs" in out.stdout
    assert not (data / "features.csv").exists()
    for kept in ("raw.csv", "clean.csv", "report.txt", "other.csv", "other_out.csv"):
        assert (data / kept).exists(), kept
    assert states(preview(*args, cwd=tmp_path)) == {
        "prepare": "COMPLETE", "featurize": "PENDING", "summarize": "STALE", "side": "COMPLETE",
    }  # fmt: skip
    code, result, _ = run_json(*args, cwd=tmp_path)
    assert code == 0 and executed(result) == {"featurize", "summarize"}


# -- failures -------------------------------------------------------------------------------
def test_a_failing_module_names_its_line_and_leaves_no_output(tmp_path: Path) -> None:
    write(
        tmp_path / "p.yaml",
        """\
        dataNodes:
          raw:
            source: raw.csv
          mid:
            source: mid.csv
          final:
            source: final.csv
          alone:
            source: alone.csv
        processNodes:
          explode:
            input: [raw]
            output: [mid]
            processor: explode
          after_it:
            input: [mid]
            output: [final]
            processor: copy_rows
          independent:
            input: [raw]
            output: [alone]
            processor: copy_rows
        """,
    )
    source = """\
        from dagmill import processor

        input_data, output_data = processor.fetch_datanodes_information()
        with open(output_data[0], "w") as f:
            f.write("half of it")  # a partial output, at its temporary name
        total = 1 + 1
        raise ValueError(f"the numbers do not add up: {total}")
        """
    module = write(tmp_path / "explode.py", source)
    line = (
        textwrap.dedent(source)
        .splitlines()
        .index('raise ValueError(f"the numbers do not add up: {total}")')
    )
    write(tmp_path / "copy_rows.py", COPY)
    data = tmp_path / "d"
    write(data / "raw.csv", "x\n")
    out = dagmill("run", "p.yaml", "--data", str(data), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the numbers do not add up: 2" in out.stderr
    assert f"{module}:{line + 1}" in out.stderr  # the module's own file and line
    assert not (data / "mid.csv").exists() and not (data / "final.csv").exists()
    assert not stray_temporaries(data)
    assert (data / "alone.csv").read_text() == "x\n"  # an independent branch goes on
    code, result, _ = run_json("p.yaml", "--data", str(data), cwd=tmp_path)
    assert code == 1
    assert statuses(result) == {
        "data:raw": "SKIPPED", "explode": "FAILED", "after_it": "UPSTREAM_FAILED",
        "independent": "SKIPPED",
    }  # fmt: skip
    assert f"{module}:{line + 1}" in result["tasks"][1]["error"]
    assert not stray_temporaries(data)


def test_a_module_that_writes_no_output_fails(tmp_path: Path) -> None:
    write(
        tmp_path / "p.yaml",
        """\
        dataNodes:
          out:
            source: out.csv
        processNodes:
          lazy:
            output: [out]
            processor: lazy
        """,
    )
    write(tmp_path / "lazy.py", "print('forgot to save')\n")
    out = dagmill("run", "p.yaml", "--data", "d", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "lazy finished but did not write out" in out.stderr
    assert "processor.save" in out.stderr
    assert not (tmp_path / "d/out.csv").exists() and not stray_temporaries(tmp_path / "d")


def test_a_module_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    write(
        tmp_path / "p.yaml",
        """\
        dataNodes:
          out:
            source: out.txt
        processNodes:
          slow:
            output: [out]
            processor: slow
            timeout: 1
        """,
    )
    write(
        tmp_path / "slow.py",
        """\
        import os
        import time

        with open("slow.pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    t = time.perf_counter()
    out = dagmill("run", "p.yaml", "--data", "d", cwd=tmp_path, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert time.perf_counter() - t < 20
    assert "timeout" in out.stderr
    pid = int((tmp_path / "slow.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the module outlived its timeout"
    assert not (tmp_path / "d/out.txt").exists()


# -- the node options ------------------------------------------------------------------------
def test_params_env_retries_after_and_command(tmp_path: Path) -> None:
    flow = tmp_path / "flow"  # the pipeline's folder is not the cwd of `dagmill`
    write(
        flow / "p.yaml",
        f"""\
        dataNodes:
          raw:
            source: raw.txt
          p_out:
            source: params.json
          e_out:
            source: env.txt
          f_out:
            source: flaky.txt
          first_out:
            source: first.txt
          second_out:
            source: second.txt
          shell_out:
            source: shell.txt
        processNodes:
          with_params:
            output: [p_out]
            processor: dump_params
            params:
              greeting: hello
              n: 3
              nested: {{a: [1, 2], b: null}}
          with_env:
            output: [e_out]
            processor: dump_env
            env:
              MY_FLAG: "on"
          flaky:
            output: [f_out]
            processor: flaky
            retries: 2
          first:
            output: [first_out]
            processor: first
          second:
            output: [second_out]
            processor: second
            after: [first]
          shell:
            input: [raw]
            output: [shell_out]
            command: >-
              {sys.executable} -c "import json, os, shutil;
              c = json.loads(os.environ['DAGMILL_PROCESSOR_CONTEXT']);
              shutil.copyfile(c['inputs'][0]['source'], c['outputs'][0]['source']);
              open(c['outputs'][0]['source'], 'a').write(os.getcwd())"
        """,
    )
    write(
        flow / "dump_params.py",
        """\
        import json

        from dagmill import processor

        _, (out,) = processor.fetch_datanodes_information()
        with open(out, "w") as f:
            json.dump(processor.params(), f)
        """,
    )
    write(
        flow / "dump_env.py",
        """\
        import os

        from dagmill import processor

        processor.save("e_out", os.environ["MY_FLAG"])
        """,
    )
    write(
        flow / "flaky.py",
        """\
        import os

        from dagmill import processor

        tries = int(open("tries").read()) + 1 if os.path.exists("tries") else 1
        open("tries", "w").write(str(tries))
        if tries < 2:
            raise RuntimeError("not yet")
        processor.save("f_out", f"succeeded on try {tries}")
        """,
    )
    write(
        flow / "first.py",
        """\
        import time

        from dagmill import processor

        time.sleep(0.5)
        with open("order.log", "a") as f:
            f.write("first\\n")
        processor.save("first_out", "1")
        """,
    )
    write(
        flow / "second.py",
        """\
        from dagmill import processor

        with open("order.log", "a") as f:
            f.write("second\\n")
        processor.save("second_out", open("order.log").read())
        """,
    )
    data = tmp_path / "d"
    write(data / "raw.txt", "raw text\n")
    args = ("flow/p.yaml", "--data", str(data))
    plan = preview(*args, cwd=tmp_path)
    assert "first" in plan["second"]["upstream"]
    code, result, err = run_json(*args, "--workers", "2", cwd=tmp_path)
    assert code == 0, err
    assert set(statuses(result).values()) == {"SUCCESS", "SKIPPED"}
    attempts = {t["id"]: t["attempts"] for t in result["tasks"]}
    assert attempts["flaky"] == 2 and attempts["with_params"] == 1

    assert json.loads((data / "params.json").read_text()) == {
        "greeting": "hello", "n": 3, "nested": {"a": [1, 2], "b": None},
    }  # fmt: skip
    assert (data / "env.txt").read_text() == "on"
    assert (data / "flaky.txt").read_text() == "succeeded on try 2"
    # after: second started only when first had finished, though no data joins them
    assert (data / "second.txt").read_text() == "first\nsecond\n"
    # a command runs in the pipeline's folder
    assert (data / "shell.txt").read_text() == f"raw text\n{flow}"
    assert not stray_temporaries(data)

    # a param change reruns that node only
    p = flow / "p.yaml"
    p.write_text(p.read_text().replace("greeting: hello", "greeting: bonjour"))
    plan = preview(*args, cwd=tmp_path)
    assert {t for t, s in states(plan).items() if s != "COMPLETE"} == {"with_params"}
    assert "param greeting changed" in plan["with_params"]["reason"]


def test_formats_and_options_with_load_and_save(tmp_path: Path) -> None:
    write(
        tmp_path / "p.yaml",
        """\
        dataNodes:
          table:
            source: table.csv
            options: {sep: ";"}
          config:
            source: config.json
          note:
            source: note.dat
            format: text
          scaled:
            source: scaled.csv
            options: {sep: "|"}
          stats:
            source: stats.json
            options: {indent: 2, sort_keys: true}
          line:
            source: line.txt
        processNodes:
          transform:
            input: [table, config, note]
            output: [scaled, stats, line]
            processor: transform
        """,
    )
    write(
        tmp_path / "transform.py",
        """\
        from dagmill import processor

        df = processor.load("table")
        config = processor.load("config")
        note = processor.load("note")
        df["value"] = df["value"] * config["factor"]
        processor.save("scaled", df)
        processor.save("stats", {"total": int(df["value"].sum()), "rows": len(df)})
        processor.save("line", note.strip().upper())
        """,
    )
    data = tmp_path / "d"
    write(data / "table.csv", "name;value\na;1\nb;2\n")
    write(data / "config.json", '{"factor": 10}')
    write(data / "note.dat", "  hello  \n")
    out = dagmill("run", "p.yaml", "--data", str(data), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (data / "scaled.csv").read_text() == "name|value\na|10\nb|20\n"
    assert (data / "stats.json").read_text() == '{\n  "rows": 2,\n  "total": 30\n}'
    assert (data / "line.txt").read_text() == "HELLO"


# -- validate, schema, graph -------------------------------------------------------------------
def _schema_errors(schema: dict[str, Any], node: dict[str, Any], value: Any, at: str) -> list[str]:
    """A small JSON Schema check (the keywords pydantic emits), if jsonschema is absent."""
    if "$ref" in node:
        return _schema_errors(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]], value, at)
    if "anyOf" in node:
        options = [_schema_errors(schema, n, value, at) for n in node["anyOf"]]
        return [] if any(not o for o in options) else [f"{at}: matches no anyOf"]
    kinds = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}
    kind = node.get("type")
    if kind in kinds and not isinstance(value, kinds[kind]):
        return [f"{at}: not {kind}"]
    if kind in ("integer", "number") and (
        isinstance(value, bool) or not isinstance(value, int if kind == "integer" else int | float)
    ):
        return [f"{at}: not {kind}"]
    errors = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{at}: not one of {node['enum']}")
    if isinstance(value, str) and len(value) < node.get("minLength", 0):
        errors.append(f"{at}: too short")
    if isinstance(value, dict):
        props = node.get("properties", {})
        errors += [f"{at}.{k}: required" for k in node.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += _schema_errors(schema, props[k], v, f"{at}.{k}")
            elif node.get("additionalProperties") is False:
                errors.append(f"{at}.{k}: not allowed")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += _schema_errors(schema, node["additionalProperties"], v, f"{at}.{k}")
        if len(value) < node.get("minProperties", 0):
            errors.append(f"{at}: too few properties")
    if isinstance(value, list) and "items" in node:
        for i, v in enumerate(value):
            errors += _schema_errors(schema, node["items"], v, f"{at}.{i}")
    return errors


def test_validate_schema_and_graph(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.yaml", SEED)
    write(tmp_path / "my_first_task.py", UPPER)
    write(tmp_path / "my_second_task.py", UPPER)
    valid = dagmill("validate", "pipeline.yaml", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert "pipeline.yaml: valid" in valid.stdout and "1 requirements" in valid.stdout
    assert not (tmp_path / "data").exists() and not (tmp_path / ".dagmill").exists()

    out = dagmill("schema", "pipeline", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == {"dataNodes", "processNodes", "schedule", "requirement"}
    assert "processNodes" in schema["required"] and schema["additionalProperties"] is False
    seed = yaml.safe_load(SEED)
    broken = {**seed, "dataNodes": {"x": {"sorce": "x.csv"}}}
    try:
        import jsonschema
    except ImportError:
        assert _schema_errors(schema, schema, seed, "$") == []
        assert _schema_errors(schema, schema, broken, "$") == [
            "$.dataNodes.x.source: required", "$.dataNodes.x.sorce: not allowed",
        ]  # fmt: skip
    else:
        jsonschema.validate(seed, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)

    nodes = ["data_node_1", "data_node_2", "data_node_3", "process_node_1", "process_node_2"]
    for fmt in ("mermaid", "dot", "text"):
        drawn = dagmill("graph", "pipeline.yaml", "--format", fmt, cwd=tmp_path)
        assert drawn.returncode == 0, drawn.stderr
        for name in nodes:
            assert name in drawn.stdout, (fmt, name)
    mermaid = dagmill("graph", "pipeline.yaml", "--format", "mermaid", cwd=tmp_path).stdout
    assert mermaid.startswith("flowchart") and "data_node_1 --> process_node_1" in mermaid
    dot = dagmill("graph", "pipeline.yaml", "--format", "dot", cwd=tmp_path).stdout
    assert dot.startswith("digraph") and '"process_node_1" -> "data_node_2"' in dot


# -- jobs ---------------------------------------------------------------------------------------
def test_a_pipeline_file_becomes_a_job(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.yaml", SEED_WITHOUT_REQUIREMENT)
    write(tmp_path / "my_first_task.py", UPPER)
    second = write(tmp_path / "my_second_task.py", COPY)
    write(tmp_path / "d/my_input.csv", "a\n")
    built = dagmill("jobs", "build", "pipeline.yaml", "--data", "d", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    job_id = built.stdout.split()[-1]
    shown = dagmill("jobs", "show", job_id, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)["job"]
    assert job["kind"] == "yaml" and job["version"].startswith("sha256:")
    assert "(pipeline.yaml=" in job["version"] and ", my_second_task.py=" in job["version"]
    assert job["ref"] == str(tmp_path / "pipeline.yaml")
    assert job["schedule"] == {
        "schedule_interval": "5 10 * * *", "start_date": "2022-01-01 00:00",
        "end_date": "2022-12-31 00:00", "timezone": "Europe/Paris",
    }  # fmt: skip
    ran = dagmill("jobs", "run", job_id, "--wait", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "d/my_output.csv").read_text() == "A\n"
    runs = json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)
    assert [(r["status"], r["job_id"]) for r in runs] == [("SUCCESS", job_id)]

    # in the background, as `dagmill jobs run ID` does by default
    (tmp_path / "d/my_output.csv").unlink()
    started = dagmill("jobs", "run", job_id, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[-1]
    # the run record read here, not by a `dagmill runs show` process every 0.3 s
    ended = ("SUCCESS", "FAILED", "CANCELLED")
    wait_for(lambda: get_run(run_id).status in ended, 60, f"the background run {run_id}")
    shown = dagmill("runs", "show", run_id, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["status"] == "SUCCESS"
    assert (tmp_path / "d/my_output.csv").read_text() == "A\n"

    second.write_text(COPY + "print('changed')\n")
    for wait in (["--wait"], []):
        changed = dagmill("jobs", "run", job_id, *wait, cwd=tmp_path)
        assert changed.returncode == 2, changed.stdout + changed.stderr
        assert "build a new job" in changed.stderr
        # the module that changed is named, the unchanged pipeline file is not blamed
        assert "but my_second_task.py changed: build a new job" in changed.stderr
        assert "pipeline.yaml changed" not in changed.stderr
    assert len(json.loads(dagmill("runs", "list", "--json", cwd=tmp_path).stdout)) == 2


# -- bad input: every problem at once, exit 2, nothing run -------------------------------
SIX_PROBLEMS = """\
dataNodes:
  raw: {source: raw.csv}
  clean: {source: clean.csv, format: xlsx}
  report: {source: report.json}
processNodes:
  cleaning:
    input: [raw_data]
    output: [clean]
    processor: nowhere
    resources: {cpu: two}
  reporting:
    input: [clean]
    output: [report]
    processor: make_report
    retries: -1
    colour: red
schedule: {schedule_interval: "5 10 * *", timezone: Europe/Pariss}
"""


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    """Problems of structure (pydantic) do not hide the checks across nodes: a node with a
    bad key still has its inputs and its module checked."""
    write(tmp_path / "six.yaml", SIX_PROBLEMS)
    write(tmp_path / "make_report.py", "from dagmill import processor\n\nprint('x'\n")
    out = dagmill("validate", "six.yaml", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    where = str(tmp_path / "six.yaml")
    expected = [
        (3, "dataNodes.clean.format: unknown format 'xlsx'"),
        (7, "processNodes.cleaning.input.0: unknown data node 'raw_data'"),
        (9, "processNodes.cleaning.processor: processor module 'nowhere' not found"),
        (10, "processNodes.cleaning.resources: cpu: expected a number"),
        (14, "processNodes.reporting.processor: processor module 'make_report' does not "
             f"compile: {tmp_path / 'make_report.py'}:3: '(' was never closed"),
        (15, "processNodes.reporting.retries: Input should be greater than or equal to 0"),
        (16, "processNodes.reporting.colour: unknown key 'colour'"),
        (17, "schedule.timezone: unknown timezone 'Europe/Pariss'"),
        (17, "schedule.schedule_interval: not a cron expression: '5 10 * *'"),
    ]  # fmt: skip
    lines = [x.removeprefix("error: ") for x in out.stderr.splitlines()]
    for line, text in expected:
        assert any(x.startswith(f"{where}:{line}: {text}") for x in lines), (text, out.stderr)
    assert len(lines) == len(expected), out.stderr  # in the file's order, one per line
    assert [int(x.split(":")[1]) for x in lines] == [n for n, _ in expected]


def test_a_module_that_does_not_compile_is_refused_before_anything_runs(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.yaml", SEED_WITHOUT_REQUIREMENT)
    write(tmp_path / "my_first_task.py", UPPER)
    write(tmp_path / "my_second_task.py", "from dagmill import processor\n\ndef f(:\n    pass\n")
    write(tmp_path / "data/my_input.csv", "a\n")
    message = (
        "pipeline.yaml:16: processNodes.process_node_2.processor: processor module "
        f"'my_second_task' does not compile: {tmp_path / 'my_second_task.py'}:3: invalid syntax"
    )
    for command in ("validate", "run", "preview"):
        out = dagmill(command, "pipeline.yaml", cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data/intermediate.csv").exists()  # not even the first node ran
    assert not (tmp_path / ".dagmill").exists()


def test_data_naming_a_file_is_bad_input_and_records_nothing(tmp_path: Path) -> None:
    from dagmill.services.pipelines import validate

    write(tmp_path / "pipeline.yaml", SEED_WITHOUT_REQUIREMENT)
    write(tmp_path / "my_first_task.py", UPPER)
    write(tmp_path / "my_second_task.py", COPY)
    write(tmp_path / "afile", "not a folder\n")
    for command in ("run", "preview", "validate", "reset"):
        out = dagmill(command, "pipeline.yaml", "--data", "afile", cwd=tmp_path)
        assert out.returncode == 2, (command, out.stdout + out.stderr)
        assert "Invalid value for '--data'" in out.stderr and "'afile' is a file" in out.stderr
    out = dagmill("run", "pipeline.yaml", cwd=tmp_path, env_data="afile")
    assert out.returncode == 2 and "'afile' is a file" in out.stderr
    assert not (tmp_path / ".dagmill").exists()
    with pytest.raises(PipelineError, match=r"the data folder .*afile is a file: give a folder"):
        validate(str(tmp_path / "pipeline.yaml"), str(tmp_path / "afile"))


def test_rerun_of_a_yaml_run_everything_or_from_failed(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.yaml", SEED_WITHOUT_REQUIREMENT)
    write(tmp_path / "my_first_task.py", UPPER)
    second = write(tmp_path / "my_second_task.py", "raise SystemExit('not yet')\n")
    write(tmp_path / "data/my_input.csv", "a\n")
    code, first, _ = run_json("pipeline.yaml", cwd=tmp_path)
    assert code == 1 and statuses(first)["process_node_2"] == "FAILED"

    second.write_text(COPY)
    out = dagmill("runs", "rerun", first["id"], "--from-failed", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert executed(json.loads(out.stdout)) == {"process_node_2"}  # the first was complete

    out = dagmill("runs", "rerun", first["id"], "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    again = json.loads(out.stdout)
    assert executed(again) == {"process_node_1", "process_node_2"}  # everything again
    assert again["id"] != first["id"]
    assert (tmp_path / "data/my_output.csv").read_text() == "A\n"


def test_reset_lists_what_goes_and_follows_upstream(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.yaml", SEED_WITHOUT_REQUIREMENT)
    write(tmp_path / "my_first_task.py", UPPER)
    write(tmp_path / "my_second_task.py", COPY)
    data = tmp_path / "data"
    write(data / "my_input.csv", "a\n")
    assert run_json("pipeline.yaml", cwd=tmp_path)[0] == 0

    # without a terminal to confirm on and without -y: refused, nothing deleted
    asked = dagmill("reset", "pipeline.yaml", "--node", "process_node_2", cwd=tmp_path)
    assert asked.returncode == 2, asked.stdout + asked.stderr
    assert "pass -y/--yes to delete without a terminal" in asked.stderr
    assert f"  {data / 'my_output.csv'}" in asked.stdout  # listed before the question
    assert (data / "my_output.csv").exists()

    one = dagmill("reset", "pipeline.yaml", "--node", "process_node_2", "-y", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == [f"  {data / 'my_output.csv'}", "deleted 1 outputs"]
    assert (data / "intermediate.csv").exists()

    assert run_json("pipeline.yaml", cwd=tmp_path)[0] == 0
    both = dagmill(
        "reset", "pipeline.yaml", "--node", "process_node_2", "--upstream", "-y", cwd=tmp_path
    )
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [
        f"  {data / 'intermediate.csv'}", f"  {data / 'my_output.csv'}", "deleted 2 outputs",
    ]  # fmt: skip
    assert (data / "my_input.csv").exists()  # an external input is never reset
    nothing = dagmill("reset", "pipeline.yaml", "--upstream", "-y", cwd=tmp_path)
    assert nothing.stdout == "nothing to reset: no outputs exist\n"


# -- the broken corpus ------------------------------------------------------------------------
def _expectations(path: Path) -> tuple[str, list[str], list[int]]:
    """(message substring, key paths that may be named, lines that may be named) from
    the file: line 1 ``# expect: ...``, optionally ``# where: A | B``, and ``# <-`` at the
    end of the lines a reader would look at."""
    lines = path.read_text().splitlines()
    assert lines and lines[0].startswith("# expect: "), f"{path.name}: no '# expect:' line"
    expect = lines[0].removeprefix("# expect: ")
    where = next((x.removeprefix("# where: ") for x in lines[1:3] if x.startswith("# where: ")), "")
    keys = [w.strip() for w in where.split("|") if w.strip()]
    marked = [i + 1 for i, x in enumerate(lines) if x.rstrip().endswith("# <-")]
    return expect, keys, marked or [1]


def test_the_broken_corpus_is_broad() -> None:
    assert len(BROKEN_FILES) >= 30
    assert len({p.read_text() for p in BROKEN_FILES}) == len(BROKEN_FILES)
    for p in BROKEN_FILES:
        expect, _, _ = _expectations(p)
        assert expect.strip(), p.name


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda p: p.stem)
def test_a_broken_pipeline_is_refused_with_file_line_and_key(tmp_path: Path, path: Path) -> None:
    expect, where, lines = _expectations(path)
    out = dagmill("validate", str(path), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    # each problem is a line "FILE:LINE: KEY.PATH: message"; what follows FILE:LINE: must
    # name the key and carry the message (the file's own name does not count)
    named = []
    for x in out.stderr.splitlines():
        _, found, rest = x.partition(f"{path}:")
        number, _, message = rest.partition(":")
        at_line = found and number.isdigit() and int(number) in lines
        keyed = not where or any(f"{w}:" in message for w in where)
        if at_line and keyed and expect in message:
            named.append(x)
    assert named, (
        f"expected a line naming {path.name}:{'|'.join(map(str, lines))}:"
        f"{' ' + ' or '.join(where) if where else ''} with {expect!r}; got:\n{out.stderr}"
    )

    data = tmp_path / "d"
    data.mkdir()
    run = dagmill("run", str(path), "--data", str(data), cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert expect in run.stderr.replace(str(path), "") and "Traceback" not in run.stderr
    assert list(data.iterdir()) == []
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / ".dagmill" / "dagmill.db").exists()


def test_memory_urls_with_two_workers_exit_2_before_anything_runs(tmp_path: Path) -> None:
    # memory:// lives in one process (README): with --workers 2 the module ran, then
    # failed with "did not write output clean", with no word of why
    (tmp_path / "make.py").write_text("from dagmill import processor\nprocessor.save('out', 'x')\n")
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n"
        "  out: {source: 'memory://bucket/out.txt', format: text}\n"
        "processNodes:\n"
        "  make: {input: [], output: [out], processor: make}\n"
    )
    out = dagmill("run", "p.yaml", "--workers", "2", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == (
        "error: make: memory://bucket/out.txt lives in one process: run with --workers 1\n"
    )
    assert not (tmp_path / ".dagmill" / "dagmill.db").exists()


def test_fsspec_url_data_nodes_are_staged_and_uploaded_only_on_success(tmp_path: Path) -> None:
    """memory:// stands for any fsspec store: the module gets a local copy of its input,
    its output is uploaded once it has succeeded, and a changed input makes it STALE."""
    import fsspec

    from dagmill.services.pipelines import plan_pipeline, reset_pipeline, run_pipeline

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/in.csv", b"a,b\n1,2\n")
    (tmp_path / "upper.py").write_text(
        "from dagmill import processor\n"
        "src = processor.fetch_datanodes_information()[0][0]\n"
        "assert '://' not in src, src  # a local copy\n"
        "processor.save('out', open(src).read().upper())\n"
    )
    (tmp_path / "fail.py").write_text("from dagmill import processor\nraise SystemExit(3)\n")
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n"
        "  raw: {source: 'memory://bucket/in.csv'}\n"
        "  out: {source: 'memory://bucket/out/up.txt', format: text}\n"
        "  bad: {source: 'memory://bucket/out/bad.txt', format: text}\n"
        "processNodes:\n"
        "  up: {input: [raw], output: [out], processor: upper}\n"
        "  broken: {input: [raw], output: [bad], processor: fail}\n"
    )
    pipeline = str(tmp_path / "p.yaml")
    result = run_pipeline(pipeline, options=RunOptions(abort=False, execution_summary=False))
    assert result is not None and result.statuses["up"].value == "SUCCESS"
    assert result.statuses["broken"].value == "FAILED"
    assert fs.cat("/bucket/out/up.txt") == b"A,B\n1,2\n"
    assert not fs.exists("/bucket/out/bad.txt")  # a failed module uploads nothing

    plan, _ = plan_pipeline(pipeline)
    assert plan.tasks["up"].state.value == "COMPLETE"
    fs.pipe("/bucket/in.csv", b"a,b\n1,3\n")
    plan, _ = plan_pipeline(pipeline)
    assert plan.tasks["up"].state.value == "STALE"
    assert "input in.csv changed" in plan.tasks["up"].reason
    assert reset_pipeline(pipeline, nodes=["up"]) == ["memory://bucket/out/up.txt"]
    assert not fs.exists("/bucket/out/up.txt")
    fs.rm("/bucket", recursive=True)
