"""YAML pipelines: validate, plan, run, reset and draw them (the front door of pipeline
files); and :func:`run_target`, which runs a recorded run target of either front door.

    compiled = validate("pipeline.yaml")                 # raises PipelineError (exit 2)
    result = run_pipeline("pipeline.yaml", nodes=["clean"], options=RunOptions(workers=2))
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from dagmill import settings
from dagmill.engine import RunResult
from dagmill.frontends.loader import target_task
from dagmill.frontends.pipeline import is_pipeline_file
from dagmill.frontends.pipeline.compile import (
    CompiledPipeline,
    PipelineError,
    Problem,
    compile_pipeline,
)
from dagmill.frontends.pipeline.envs import environment_python
from dagmill.io.records import RecordBook
from dagmill.io.remote import is_url, remove, url_version
from dagmill.model.graph import Graph
from dagmill.model.runs import RunTarget
from dagmill.plan.planner import Plan, PlanOptions, plan
from dagmill.services.execution import RunOptions, execute_plan
from dagmill.services.tasks import run_task_list

__all__ = [
    "graph_text",
    "is_pipeline_file",
    "pipeline_schema",
    "plan_pipeline",
    "reset_pipeline",
    "reset_targets",
    "run_pipeline",
    "run_target",
    "validate",
]


def validate(file: str, data: str | None = None) -> CompiledPipeline:
    """Check a pipeline file completely; raise PipelineError listing every problem."""
    return compile_pipeline(file, data)


def _select(compiled: CompiledPipeline, nodes: Sequence[str] | None) -> Graph:
    graph = compiled.graph
    if not nodes:
        return graph
    unknown = [n for n in nodes if n not in compiled.node_ids]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(compiled.node_ids), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PipelineError(
            compiled.file, [Problem(None, "", f"--node {unknown[0]!r}: no such process node{hint}")]
        )
    keep = graph.upstream_closure(nodes)
    return Graph.build((graph.tasks[t] for t in graph.order if t in keep), targets=list(nodes))


def plan_pipeline(
    file: str,
    data: str | None = None,
    nodes: Sequence[str] | None = None,
    force: bool = False,
    compiled: CompiledPipeline | None = None,
) -> tuple[Plan, CompiledPipeline]:
    """Compile and decide what must run (``nodes``: those and their upstream only;
    ``force``: the selected nodes, or all process nodes, run again)."""
    compiled = compiled or compile_pipeline(file, data)
    graph = _select(compiled, nodes)
    forced: set[str] = set()
    if force:
        chosen = list(nodes) if nodes else [t for t in graph.order if not graph.tasks[t].external]
        forced = graph.downstream_closure(chosen)
    opts = PlanOptions(settings.check_dependencies, settings.detect_changes)
    return plan(graph, RecordBook(), opts, forced), compiled


def run_pipeline(
    file: str,
    data: str | None = None,
    nodes: Sequence[str] | None = None,
    force: bool = False,
    slot: str | None = None,
    options: RunOptions | None = None,
) -> RunResult | None:
    """Run a pipeline file: its environment is built first (once per requirement set),
    then whatever is not complete runs, as ``options`` say (``force``, or either of its
    forced_all flags: every process node runs again). ``slot``: a scheduled run's (see
    :func:`compile_pipeline`); None for a manual run, "now"."""
    options = options or RunOptions()
    force = force or options.forced_all or options.forced_all_upstream
    compiled = compile_pipeline(file, data, slot)
    python = environment_python(compiled.requirements)  # fails before any task runs
    if python != sys.executable:
        compiled = _with_python(compiled, python)
    the_plan, _ = plan_pipeline(file, data, nodes, force, compiled=compiled)
    target = options.target or RunTarget("yaml", compiled.file, {}, compiled.data_root)
    # the run keeps the slot it filled its sources with (a manual run's "now" too): resumed
    # or run again, it reads and writes the same partitions
    options = dataclasses.replace(options, target=dataclasses.replace(target, slot=compiled.slot))
    return execute_plan(the_plan, options.name or os.path.basename(compiled.file), options)


def _with_python(compiled: CompiledPipeline, python: str) -> CompiledPipeline:
    from dagmill.frontends.pipeline.action import ProcessorAction

    specs = [
        dataclasses.replace(s, action=dataclasses.replace(s.action, python=python))
        if isinstance(s.action, ProcessorAction)
        else s
        for s in compiled.graph.tasks.values()
    ]
    return dataclasses.replace(compiled, graph=Graph.build(specs, compiled.graph.targets))


def reset_targets(
    file: str,
    data: str | None = None,
    nodes: Sequence[str] | None = None,
    upstream: bool = False,
) -> list[str]:
    """The outputs ``reset_pipeline`` would delete: those that exist, of the process nodes
    chosen (all of them unless ``nodes``; with ``upstream``, the nodes they depend on too).
    External inputs (data nodes no node produces) are never among them."""
    compiled = compile_pipeline(file, data)
    graph = _select(compiled, nodes)  # unknown names are errors
    chosen = [
        t
        for t in graph.order
        if not graph.tasks[t].external and (upstream or not nodes or t in nodes)
    ]
    found = []
    for tid in chosen:
        for out in graph.tasks[tid].outputs:
            if is_url(out.location):
                if url_version(out.location) is not None:
                    found.append(out.location)
            elif os.path.exists(out.location):
                found.append(out.location)
    return found


def reset_pipeline(
    file: str,
    data: str | None = None,
    nodes: Sequence[str] | None = None,
    upstream: bool = False,
) -> list[str]:
    """Delete the outputs of process nodes (all of them unless ``nodes``; with
    ``upstream``, of what they depend on too); returns what was deleted."""
    gone = reset_targets(file, data, nodes, upstream)
    for location in gone:
        if is_url(location):
            remove(location)
        else:
            os.unlink(location)
    return gone


def graph_text(file: str, fmt: str = "text", data: str | None = None) -> str:
    """The pipeline as text (a tree per output), Mermaid or Graphviz dot."""
    compiled = compile_pipeline(file, data)
    graph, spec = compiled.graph, compiled.spec
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for name in spec.dataNodes:
            lines.append(f"    {name}[({name})]")
        for name, node in spec.processNodes.items():
            lines.append(f"    {name}[{name}]")
            lines += [f"    {d} --> {name}" for d in node.input]
            lines += [f"    {name} --> {d}" for d in node.output]
            lines += [f"    {a} -.-> {name}" for a in node.after]
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph pipeline {", "  rankdir=LR;"]
        for name in spec.dataNodes:
            lines.append(f'  "{name}" [shape=cylinder];')
        for name, node in spec.processNodes.items():
            lines.append(f'  "{name}" [shape=box];')
            lines += [f'  "{d}" -> "{name}";' for d in node.input]
            lines += [f'  "{name}" -> "{d}";' for d in node.output]
            lines += [f'  "{a}" -> "{name}" [style=dashed];' for a in node.after]
        return "\n".join([*lines, "}"])
    out = []
    for name, node in spec.processNodes.items():
        ins = ", ".join(node.input) or "-"
        outs = ", ".join(node.output) or "-"
        after = f"  (after {', '.join(node.after)})" if node.after else ""
        out.append(f"{ins} --[{name}]--> {outs}{after}")
    del graph
    return "\n".join(out)


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema of pipeline files."""
    from dagmill.frontends.pipeline.spec import PipelineSpec

    schema: dict[str, Any] = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dagmill pipeline"
    return schema


def run_target(target: RunTarget, options: RunOptions) -> RunResult | None:
    """Run what a run target names, from whichever front door it came. (A pipeline file
    has no "given task" apart from its nodes: forcing the targets or everything upstream
    both mean every process node runs again.)"""
    from dagmill.services.bundles import loadable

    options = dataclasses.replace(options, target=target)  # recorded as given: portable
    target = loadable(target)  # built from a bundle: its files, unpacked here
    if target.kind == "yaml":
        return run_pipeline(target.ref, target.data, slot=target.slot, options=options)
    return run_task_list([target_task(target)], options)
