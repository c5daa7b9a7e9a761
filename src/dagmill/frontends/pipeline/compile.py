"""A pipeline file → validated spec → model graph.

Every problem is collected with its line and key path and raised once:

    pipeline.yaml:14: processNodes.clean.input.0: unknown data node 'raw_dta'
        (did you mean 'raw_data'?)

The graph follows from the data: a process node depends on the producers of its inputs
(and on the nodes in its ``after``); a data node that no node produces is an external
input, a task with no action that is complete when its file exists.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagmill.errors import CycleError, DefinitionError
from dagmill.frontends.code import module_hash
from dagmill.frontends.pipeline.source import (
    Located,
    PipelineSyntaxError,
    fill_slot,
    load_located,
    placeholder_problem,
)
from dagmill.model.graph import Graph
from dagmill.model.ids import digest
from dagmill.model.resources import Resources
from dagmill.model.task import OutputRef, TaskSpec

__all__ = ["CompiledPipeline", "PipelineError", "Problem", "compile_pipeline", "load_pipeline"]

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".txt": "text",
    ".bin": "bytes",
}


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None
    path: str
    message: str


class PipelineError(DefinitionError):
    """A pipeline file is wrong; ``problems`` lists every problem found, with its line."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(
            "\n".join(
                f"{file}:{p.line or 1}: {p.path + ': ' if p.path else ''}{p.message}"
                for p in self.problems
            )
        )


@dataclass(frozen=True)
class CompiledPipeline:
    """What a pipeline file becomes: its spec, its graph, and what running it needs."""

    file: str
    spec: Any  # PipelineSpec (pydantic, imported lazily)
    graph: Graph
    data_root: str
    requirements: tuple[str, ...]
    version: str  # hash of the file and of the modules it runs
    node_ids: Mapping[str, str] = field(default_factory=dict)  # process node -> task id
    # (path, hash) of the file and of each module it runs: a job names what changed
    files: tuple[tuple[str, str], ...] = ()
    # the slot its sources were filled with and its modules get (DAGMILL_SLOT): the run's,
    # or, for a manual run, the time it was compiled in the schedule's timezone
    slot: str = ""


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_pipeline(file: str) -> tuple[Any, Located]:
    """Read and validate a pipeline file's structure (pydantic); raise PipelineError."""
    spec, located, problems = _load(file)
    if problems:
        raise PipelineError(file, problems)
    return spec, located


def _load(file: str) -> tuple[Any, Located, list[Problem]]:
    """(spec, positions, structural problems). With problems, the spec holds the parts that
    are valid on their own (each data node, process node, the schedule, each requirement),
    so that the checks across parts still run and every problem is reported at once."""
    from pydantic import ValidationError

    from dagmill.frontends.pipeline.spec import PipelineSpec

    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PipelineError(
            file, [Problem(None, "", f"cannot read the file: {e.strerror}")]
        ) from None
    except UnicodeDecodeError as e:
        raise PipelineError(
            file, [Problem(None, "", f"not UTF-8 text (byte {e.start}): is it a pipeline file?")]
        ) from None
    try:
        located = load_located(text)
    except PipelineSyntaxError as e:
        raise PipelineError(file, [Problem(e.line, "", f"not valid YAML: {e}")]) from None
    if not isinstance(located.value, dict):
        raise PipelineError(
            file,
            [
                Problem(
                    located.line(()) or 1, "", "expected a mapping with dataNodes and processNodes"
                )
            ],
        )
    try:
        return PipelineSpec.model_validate(located.value), located, []
    except ValidationError as e:
        problems = [_problem(err, located) for err in e.errors()]
    return _valid_parts(located.value), located, problems


def _valid_parts(raw: Mapping[str, Any]) -> Any:
    """A PipelineSpec of the parts of ``raw`` that are valid by themselves (not validated
    as a whole: only the checks across parts read it)."""
    from pydantic import ValidationError

    from dagmill.frontends.pipeline import spec as S

    def one(item: Any, model: Any) -> Any:
        try:
            return model.model_validate(item)
        except ValidationError as e:
            if not isinstance(item, dict):
                return None
            bad = {err["loc"][0] for err in e.errors() if err["loc"]} & set(item)
            if not bad:  # a missing key, or a problem of the whole: nothing to leave out
                return None
            # the rest of the node, without its bad keys, still gets the checks across parts
            return one({k: v for k, v in item.items() if k not in bad}, model)

    def each(value: Any, model: Any) -> dict[str, Any]:
        found = {str(n): one(v, model) for n, v in value.items()} if isinstance(value, dict) else {}
        return {n: v for n, v in found.items() if v is not None}

    schedule = None
    if raw.get("schedule") is not None:
        schedule = one(raw["schedule"], S.Schedule)
    reqs = raw.get("requirement")
    found = [one(r, S.Requirement) for r in reqs] if isinstance(reqs, list) else []
    requirement = [r for r in found if r is not None]
    return S.PipelineSpec.model_construct(
        dataNodes=each(raw.get("dataNodes"), S.DataNode),
        processNodes=each(raw.get("processNodes"), S.ProcessNode),
        schedule=schedule,
        requirement=requirement,
    )


def _names(raw: Any, key: str) -> list[str]:
    """The names under ``key`` as written, valid or not: a reference to a node that has
    problems of its own is not also an unknown name."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return [str(k) for k in value] if isinstance(value, dict) else []


_compiled_modules: dict[tuple[str, int, int], str | None] = {}


def _syntax_error(path: str) -> str | None:
    """``path:line: message`` if the module does not compile, else None (cached by size
    and modification time: a job checks its pipeline before every run)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _compiled_modules:
        found = None
        try:
            with open(path, "rb") as f:
                compile(f.read(), path, "exec", dont_inherit=True)
        except SyntaxError as e:
            found = f"{path}:{e.lineno or 1}: {e.msg}"
        except (OSError, ValueError) as e:
            found = f"{path}: {e}"
        _compiled_modules[key] = found
    return _compiled_modules[key]


def _problem(err: Mapping[str, Any], located: Located) -> Problem:
    from dagmill.frontends.pipeline import spec as S

    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        fields = list(parent.model_fields) if parent is not None else []
        msg = f"unknown key {loc[-1]!r}{_did_you_mean(str(loc[-1]), fields)}"
        if fields:
            msg += f"; allowed: {', '.join(fields)}"
        return Problem(located.line(loc), path, msg)
    if kind == "missing":
        return Problem(
            located.line(loc[:-1]), ".".join(map(str, loc[:-1])), f"missing key {loc[-1]!r}"
        )
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error",) and loc and loc[-1] == "format":
        msg = f"unknown format {err.get('input')!r}: use one of {', '.join(S.FORMATS)}"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        msg = f"{msg}, got {err.get('input')!r}"
    return Problem(located.line(loc), path, msg)


def _model_at(loc: tuple[Any, ...]) -> Any:
    from dagmill.frontends.pipeline import spec as S

    model: Any = S.PipelineSpec
    i = 0
    while i < len(loc):
        key = loc[i]
        ann = model.model_fields.get(key) if hasattr(model, "model_fields") else None
        if ann is None:
            return None
        sub = {
            "dataNodes": S.DataNode,
            "processNodes": S.ProcessNode,
            "schedule": S.Schedule,
            "requirement": S.Requirement,
        }.get(str(key))
        if sub is None:
            return None
        model = sub
        i += 2 if key in ("dataNodes", "processNodes", "requirement") else 1
    return model


def _location(source: str, data_root: str) -> str:
    if source.startswith("file://"):
        return source[len("file://") :]
    if "://" in source or os.path.isabs(source):
        return source
    return os.path.normpath(os.path.join(data_root, source))


def _resolve_module(name: str, folder: str) -> str | None:
    """``name``(.py) beside the pipeline file, or an importable module: its file."""
    base = name[:-3] if name.endswith(".py") else name
    beside = os.path.join(folder, base.replace(".", os.sep) + ".py")
    if os.path.isfile(beside):
        return beside
    try:
        spec = importlib.util.find_spec(base)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin not in (None, "built-in") else None


def compile_pipeline(
    file: str, data_root: str | None = None, slot: str | None = None
) -> CompiledPipeline:
    """Validate a pipeline file completely and compile it to a graph (nothing is written).

    ``slot`` (ISO 8601 with its offset, "2022-03-01T10:05:00+01:00") is the slot of a
    scheduled run: ``{slot:FORMAT}`` and ``{slot}`` in data node sources are filled from
    it, so each slot reads and writes its own partition (and is complete on its own: a
    task's record is kept per output). Without one (a manual run) they are filled with
    the current time in the schedule's timezone (UTC without a schedule), to the second,
    as Airflow gives a manual run its trigger time as logical date."""
    file = os.path.abspath(file)
    spec, located, problems = _load(file)
    folder = os.path.dirname(file)
    root = os.path.abspath(data_root or "data")

    def problem(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(located.line(path), ".".join(map(str, path)), message))

    when = _slot_time(slot, spec.schedule, problem)
    sources: dict[str, str] = {}  # data node -> its source, placeholders filled
    for name, dn in spec.dataNodes.items():
        bad = placeholder_problem(dn.source)
        if bad:
            problem(("dataNodes", name, "source"), bad)
        sources[name] = dn.source if bad else fill_slot(dn.source, when)

    if os.path.exists(root) and not os.path.isdir(root):
        problems.append(
            Problem(None, "", f"the data folder {root} is a file: give a folder (--data DIR)")
        )
    data_names = _names(located.value, "dataNodes")
    process_names = _names(located.value, "processNodes")
    where: dict[str, str] = {}
    for name in spec.dataNodes:
        other = where.setdefault(_location(sources[name], root), name)
        if other != name:
            problem(
                ("dataNodes", name, "source"),
                f"{sources[name]!r} is also the source of data node {other!r}: each data node "
                "needs its own file",
            )
    producers: dict[str, str] = {}
    modules: dict[str, str] = {}
    for name, node in spec.processNodes.items():
        for kind in ("input", "output"):
            for i, ref in enumerate(getattr(node, kind)):
                if ref not in data_names:
                    problem(
                        ("processNodes", name, kind, i),
                        f"unknown data node {ref!r}{_did_you_mean(ref, data_names)}",
                    )
        for i, ref in enumerate(node.output):
            other = producers.setdefault(ref, name)
            if other != name:
                problem(
                    ("processNodes", name, "output", i),
                    f"data node {ref!r} is already written by {other!r}: each data node "
                    "has one producer",
                )
            if ref in node.input:
                problem(
                    ("processNodes", name, "output", i),
                    f"{name!r} reads and writes {ref!r}: that is a cycle",
                )
        for i, ref in enumerate(node.after):
            if ref == name:
                problem(("processNodes", name, "after", i), f"{name!r} cannot run after itself")
            elif ref not in process_names:
                problem(
                    ("processNodes", name, "after", i),
                    f"unknown process node {ref!r}"
                    f"{_did_you_mean(ref, [n for n in process_names if n != name])}",
                )
        if node.processor is not None:
            found = _resolve_module(node.processor, folder)
            if found is None:
                problem(
                    ("processNodes", name, "processor"),
                    f"processor module {node.processor!r} not found: expected "
                    f"{node.processor.removesuffix('.py')}.py beside "
                    f"{os.path.basename(file)}, or an importable module",
                )
            else:
                modules[name] = found
                broken = _syntax_error(found) if found.endswith(".py") else None
                if broken:
                    problem(
                        ("processNodes", name, "processor"),
                        f"processor module {node.processor!r} does not compile: {broken}",
                    )
        try:
            Resources.parse(node.resources)
        except ValueError as e:
            problem(("processNodes", name, "resources"), str(e))
    if spec.schedule is not None:
        _check_schedule(spec.schedule, problem)
    if problems:
        raise PipelineError(file, sorted(problems, key=lambda p: p.line or 0))

    requirements = tuple(sorted(r.spec() for r in spec.requirement))
    req_hash = digest("\n".join(requirements)) if requirements else ""
    specs: list[TaskSpec] = []
    for name in spec.dataNodes:
        if name not in producers:  # an external input: complete when it exists
            loc = _location(sources[name], root)
            specs.append(
                TaskSpec(
                    f"data:{name}",
                    name,
                    outputs=(OutputRef(name, loc),),
                    extra={"label": sources[name]},
                )
            )
    node_ids = {name: name for name in spec.processNodes}
    from dagmill.frontends.pipeline.action import ProcessorAction

    for name, node in spec.processNodes.items():
        upstream = [producers.get(d, f"data:{d}") for d in node.input]
        upstream += list(node.after)
        code: list[tuple[str, str]] = []
        if node.processor is not None:
            code.append(("module", module_hash(modules[name])))
        else:
            code.append(("command", digest(node.command or "")))
        if req_hash:
            code.append(("requirements", req_hash))
        params = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in node.params.items()))

        def ref(d: str) -> tuple[str, str, str | None, dict[str, Any]]:
            dn = spec.dataNodes[d]
            loc = _location(sources[d], root)
            fmt = dn.format or _SUFFIX_FORMATS.get(os.path.splitext(loc)[1].lower())
            return (d, loc, fmt, dict(dn.options))

        action = ProcessorAction(
            node=name,
            module=modules.get(name),
            command=node.command,
            cwd=folder,
            inputs=tuple(ref(d) for d in node.input),
            outputs=tuple(ref(d) for d in node.output),
            params=dict(node.params),
            env=dict(node.env),
            python=sys.executable,
            slot=when.isoformat(),
        )
        specs.append(
            TaskSpec(
                id=name,
                family=name,
                params=params,
                upstream=tuple(dict.fromkeys(upstream)),
                outputs=tuple(OutputRef(d, _location(sources[d], root)) for d in node.output),
                code=tuple(code),
                action=action,
                resources=Resources.parse(node.resources),
                retries=node.retries,
                timeout=node.timeout,
                source=f"{file}:{located.line(('processNodes', name))}",
                extra={"label": name},
            )
        )
    try:
        graph = Graph.build(specs)
    except CycleError as e:
        first = next((c for c in e.cycle if c in spec.processNodes), None)
        path = ("processNodes", first) if first else ()
        raise PipelineError(
            file,
            [
                Problem(
                    located.line(path),
                    ".".join(map(str, path)),
                    "the pipeline has a cycle: " + " -> ".join(e.cycle),
                )
            ],
        ) from None
    except DefinitionError as e:
        raise PipelineError(file, [Problem(None, "", str(e))]) from None
    h = hashlib.sha256()
    files = []
    for name in [file, *sorted(set(modules.values()))]:
        with open(name, "rb") as f:
            data = f.read()
        h.update(data)
        files.append((name, hashlib.sha256(data).hexdigest()[:8]))
    return CompiledPipeline(
        file,
        spec,
        graph,
        root,
        requirements,
        "sha256:" + h.hexdigest()[:16],
        node_ids,
        tuple(files),
        when.isoformat(),
    )


def _slot_time(slot: str | None, schedule: Any, problem: Any) -> _dt.datetime:
    """The slot as an aware datetime: the run's, or now in the schedule's timezone."""
    import zoneinfo

    tz: _dt.tzinfo = _dt.UTC
    if schedule is not None:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = zoneinfo.ZoneInfo(schedule.timezone)  # else _check_schedule reports it
    if slot is None:
        return _dt.datetime.now(tz).replace(microsecond=0)
    try:
        when = _dt.datetime.fromisoformat(slot.strip())
    except ValueError:
        problem((), f"the run's slot {slot!r} is not ISO 8601 (2022-03-01T10:05:00+01:00)")
        return _dt.datetime.now(tz).replace(microsecond=0)
    # a slot without an offset is wall-clock time in the schedule's timezone
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def _check_schedule(schedule: Any, problem: Any) -> None:
    import datetime as dt
    import zoneinfo

    base = ("schedule",)
    tz = None
    try:
        tz = zoneinfo.ZoneInfo(schedule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(
            schedule.timezone, sorted(zoneinfo.available_timezones()), n=1
        )
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problem((*base, "timezone"), f"unknown timezone {schedule.timezone!r}{hint}")
    if schedule.schedule_interval is not None:
        from croniter import croniter

        if not croniter.is_valid(schedule.schedule_interval):
            problem(
                (*base, "schedule_interval"),
                f"not a cron expression: {schedule.schedule_interval!r} "
                "(five fields: minute hour day-of-month month day-of-week)",
            )
    dates: dict[str, dt.datetime] = {}
    for key in ("start_date", "end_date"):
        text = getattr(schedule, key)
        if text is None:
            continue
        for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                dates[key] = dt.datetime.strptime(str(text).strip(), fmt).replace(tzinfo=tz)
                break
            except ValueError:
                continue
        else:
            problem((*base, key), f"not a date: {text!r} (expected YYYY-MM-DD HH:MM)")
    if "start_date" in dates and "end_date" in dates and dates["end_date"] <= dates["start_date"]:
        problem((*base, "end_date"), "end_date is not after start_date")
