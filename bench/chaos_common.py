"""What bench/chaos_kill.py and bench/chaos_concurrent.py share: the three graphs (a chain
of Python tasks, a fan-out of Python tasks, a YAML pipeline of processor modules), the
side log the tasks append to, the /proc scan for processes of ours, and the plain-Python
expected answers.

Every task appends one line per event to a side log (O_APPEND, so lines from any process
never interleave): ``<task> <pid> start|done <unix time> <engine tag>``. The engine tag
(``CHAOS_ENGINE`` in the environment of one `dagmill` invocation and all it starts) says
which engine process the task ran under. Every task starts a child (``sleep 120``; in every
other task one that ignores SIGTERM) for the time it runs and kills it when it ends well,
so a child still alive later was left behind by an engine that stopped the task.
Every output is ``{"task": name, "value": value}``, so the outputs in a data folder say
which tasks had finished, whatever the file layout.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

DAGMILL = Path(sys.executable).parent / "dagmill"
TMP_MARKER = ".dagmill-tmp-"
ERROR_FILE_PREFIX = "dagmill-processor-error-"
MARK_ENV = "CHAOS_MARK"  # in the environment of everything a chaos run starts
ENGINE_ENV = "CHAOS_ENGINE"  # which dagmill invocation a process belongs to

CHAIN = 20
FANOUT = 40
YAML_FAN = 4

# the tasks each do this much work (a sleep): short, so 30 kills fit in two minutes
WORK_S = 0.02

_SIDE_LOG = """
import os
import subprocess
import time


def mark(name, what):
    line = "%s %d %s %.6f %s\\n" % (
        name, os.getpid(), what, time.time(), os.environ.get("CHAOS_ENGINE", "-"))
    fd = os.open(os.environ["CHAOS_SIDE_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def work(stubborn):
    # a child that lives as long as the task, stopped when the task ends well (no
    # try/finally: what happens to it when the task is stopped is the engine's job); a
    # stubborn one ignores SIGTERM, as some tools do
    argv = ["sh", "-c", "trap '' TERM; exec sleep 120"] if stubborn else ["sleep", "120"]
    child = subprocess.Popen(argv)
    time.sleep({work_s})
    child.kill()
    child.wait()
"""

FLOW = textwrap.dedent(_SIDE_LOG).replace("{work_s}", repr(WORK_S)) + textwrap.dedent(
    """

        import dagmill


        class Step(dagmill.tasks.TaskPickle):
            i = dagmill.IntParameter()

            def requires(self):
                return [Step(i=self.i - 1)] if self.i > 0 else []

            def run(self):
                name = f"Step-{self.i}"
                mark(name, "start")
                work(stubborn=self.i % 2 == 1)
                prev = self.inputLoad()[0]["value"] if self.i > 0 else 0
                self.save({"task": name, "value": prev + self.i * self.i})
                mark(name, "done")


        class Leaf(dagmill.tasks.TaskPickle):
            i = dagmill.IntParameter()

            def run(self):
                name = f"Leaf-{self.i}"
                mark(name, "start")
                work(stubborn=self.i % 2 == 1)
                self.save({"task": name, "value": 7 * self.i + 1})
                mark(name, "done")


        class Join(dagmill.tasks.TaskPickle):
            n = dagmill.IntParameter(default=FANOUT_N)

            def requires(self):
                return [Leaf(i=i) for i in range(self.n)]

            def run(self):
                mark("Join", "start")
                work(stubborn=False)
                total = sum(x["value"] for x in self.inputLoad())
                self.save({"task": "Join", "value": total})
                mark("Join", "done")
        """
).replace("FANOUT_N", str(FANOUT))

# one module for every process node: it reads its inputs' values, adds its parameter
MODULE = textwrap.dedent(_SIDE_LOG).replace("{work_s}", repr(WORK_S)) + textwrap.dedent(
    """

    from dagmill import processor

    p = processor.params()
    name = p["task"]
    mark(name, "start")
    work(stubborn=p["stubborn"])
    ins, outs = processor.fetch_datanodes_information()
    total = p["add"]
    for path in ins:
        with open(path) as f:
            total += __import__("json").load(f)["value"]
    with open(outs[0], "w") as f:
        __import__("json").dump({"task": name, "value": total}, f)
    mark(name, "done")
    """
)


def pipeline_yaml() -> str:
    """seed -> fan_0..fan_3 -> total -> report: 7 process nodes, no requirement."""
    nodes = {"seed": ([], 5, False)}
    for i in range(YAML_FAN):
        nodes[f"fan_{i}"] = (["seed"], i * 10, i % 2 == 1)
    nodes["total"] = ([f"fan_{i}" for i in range(YAML_FAN)], 1, True)
    nodes["report"] = (["total"], 1000, True)
    lines = ["dataNodes:"]
    lines += [f"  d_{n}: {{source: {n}.json}}" for n in nodes]
    lines.append("processNodes:")
    for n, (ins, add, stubborn) in nodes.items():
        lines += [f"  {n}:"]
        if ins:
            lines += [f"    input: [{', '.join('d_' + i for i in ins)}]"]
        lines += [
            f"    output: [d_{n}]",
            "    processor: step",
            f"    params: {{task: {n}, add: {add}, stubborn: {str(stubborn).lower()}}}",
        ]
    return "\n".join(lines) + "\n"


def expected_yaml() -> dict[str, int]:
    seed = 5
    fans = {f"fan_{i}": seed + i * 10 for i in range(YAML_FAN)}
    total = sum(fans.values()) + 1
    return {"seed": seed, **fans, "total": total, "report": total + 1000}


def expected_chain() -> dict[str, int]:
    out, acc = {}, 0
    for i in range(CHAIN):
        acc += i * i
        out[f"Step-{i}"] = acc
    return out


def expected_fanout() -> dict[str, int]:
    out = {f"Leaf-{i}": 7 * i + 1 for i in range(FANOUT)}
    out["Join"] = sum(out.values())
    return out


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    expected: dict[str, int]
    gap_guess: float  # time between two task starts, until one is measured

    def target(self, folder: Path) -> list[str]:
        if self.name == "chain":
            return [f"{folder / 'flow.py'}:Step", "-p", f"i={CHAIN - 1}"]
        if self.name == "fanout":
            return [f"{folder / 'flow.py'}:Join"]
        return [os.fspath(folder / "pipeline.yaml")]

    def prepare(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "data").mkdir()
        (folder / "tmp").mkdir()
        if self.name == "yaml":
            (folder / "pipeline.yaml").write_text(pipeline_yaml())
            (folder / "step.py").write_text(MODULE)
        else:
            (folder / "flow.py").write_text(FLOW)


SCENARIOS = {
    "chain": Scenario("chain", 1, expected_chain(), 2 * WORK_S),
    "fanout": Scenario("fanout", 2, expected_fanout(), WORK_S),
    "yaml": Scenario("yaml", 1, expected_yaml(), 8 * WORK_S),  # + a module's start-up
}


# -- running dagmill ---------------------------------------------------------------------
def engine_env(folder: Path, mark: str, engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGMILL_")}
    env.update(
        DAGMILL_HOME=os.fspath(folder / ".dagmill"),
        DAGMILL_DATA=os.fspath(folder / "data"),
        TMPDIR=os.fspath(folder / "tmp"),  # the processor's error files land here
        CHAOS_SIDE_LOG=os.fspath(folder / "side.log"),
        PYTHONUNBUFFERED="1",
    )
    env[MARK_ENV] = mark
    env[ENGINE_ENV] = engine
    return env


def start(argv: list[str], folder: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A dagmill command in its own session (so a kill reaches only it), output to a file
    (a pipe nobody reads could block it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [os.fspath(DAGMILL), *argv],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


# -- what happened -------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    task: str
    pid: int
    what: str
    at: float
    engine: str
    offset: int  # byte offset of the line in the side log


def side_log(folder: Path) -> list[Event]:
    path = folder / "side.log"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    events, offset = [], 0
    for line in raw.splitlines(keepends=True):
        parts = line.decode(errors="replace").split()
        if len(parts) == 5 and line.endswith(b"\n"):
            events.append(
                Event(parts[0], int(parts[1]), parts[2], float(parts[3]), parts[4], offset)
            )
        offset += len(line)
    return events


def outputs(folder: Path) -> dict[str, int]:
    """The finished outputs in the data folder (final names only): task -> value."""
    found: dict[str, int] = {}
    for path in (folder / "data").rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.name.startswith("_"):
            continue
        try:
            if path.suffix == ".json":
                obj = json.loads(path.read_text())
            elif path.suffix in (".pkl", ".pickle"):
                with open(path, "rb") as f:
                    obj = pickle.load(f)
            else:
                continue
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            continue
        if isinstance(obj, dict) and "task" in obj:
            found[obj["task"]] = obj["value"]
    return found


def wrong_outputs(folder: Path, expected: dict[str, int]) -> list[str]:
    got = outputs(folder)
    return [f"{t}: {got.get(t, 'missing')} != {v}" for t, v in expected.items() if got.get(t) != v]


def temp_files(folder: Path) -> list[str]:
    """Temporary files left anywhere in a chaos folder (data, DAGMILL_HOME, its TMPDIR)."""
    left = [
        p for p in folder.rglob("*") if TMP_MARKER in p.name or p.name.startswith(ERROR_FILE_PREFIX)
    ]
    return sorted(os.fspath(p.relative_to(folder)) for p in left)


@dataclass
class Proc:
    pid: int
    cmdline: str
    mark: str  # the chaos mark of the run it belongs to (CHAOS_MARK)
    engine: str  # the dagmill invocation it belongs to (CHAOS_ENGINE)


def our_processes(token: str) -> list[Proc]:
    """Live processes whose environment or command line holds ``token``. The environment is
    what catches a task's ``sleep`` child, whose command line says nothing of us; the
    command line catches a process that cleared its environment but runs a file of ours."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        env = dict(e.decode(errors="replace").split("=", 1) for e in environ if b"=" in e)
        mark = env.get(MARK_ENV, "")
        if token in mark:
            found.append(Proc(int(entry.name), cmdline.strip(), mark, env.get(ENGINE_ENV, "?")))
        elif token in cmdline:
            # our folders are named after their mark: .../<mark>/step.py
            words = [w for w in cmdline.replace(os.sep, " ").split() if w.startswith(token)]
            found.append(Proc(int(entry.name), cmdline.strip(), words[0] if words else token, "?"))
    return found


def kill_processes(token: str) -> int:
    """SIGKILL every process of ours still alive (what a chaos run left behind)."""
    procs = our_processes(token)
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
    return len(procs)


def run_statuses(folder: Path) -> dict[str, str] | None:
    """Run id -> status from the folder's SQLite record, read directly (any `dagmill runs`
    command would resume a dead run in the background), oldest first; None if unreadable."""
    import sqlite3

    db = folder / ".dagmill" / "dagmill.db"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT id, status FROM runs ORDER BY created_at").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return {str(i): str(s) for i, s in rows}


def running_run_id(folder: Path) -> str | None:
    """The run the killed engine left RUNNING in its record."""
    running = [i for i, s in (run_statuses(folder) or {}).items() if s == "RUNNING"]
    return running[-1] if running else None


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)
