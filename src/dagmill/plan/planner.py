"""The planner: graph + recorded fingerprints → what must run, and why.

Every task is COMPLETE (outputs exist and the recorded fingerprint matches), PENDING
(never ran) or STALE (ran, but its params, code or inputs changed, or an upstream task
will run), with a reason a person can read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dagmill.io.records import Record, RecordBook, changed_since, output_version
from dagmill.model.graph import Graph
from dagmill.model.states import PlanState
from dagmill.model.task import TaskSpec
from dagmill.plan.fingerprint import fingerprint

__all__ = ["Plan", "PlanOptions", "TaskPlan", "make_record", "plan"]


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """``check_dependencies``: a task whose upstream must run must run too (d6tflow's
    default). ``detect_changes``: compare fingerprints; False gives d6tflow's
    parameter-only identity (outputs exist → complete)."""

    check_dependencies: bool = True
    detect_changes: bool = True


@dataclass(frozen=True, slots=True)
class TaskPlan:
    state: PlanState
    reason: str = ""
    missing_input: bool = False  # an external input that is not there
    fingerprint: str = ""  # of a COMPLETE task, as recorded

    @property
    def runs(self) -> bool:
        return self.state is not PlanState.COMPLETE


_COMPLETE = TaskPlan(PlanState.COMPLETE)


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision for every task of a graph, and the data versions of complete ones."""

    graph: Graph
    tasks: Mapping[str, TaskPlan]
    versions: Mapping[str, str]
    made_at: float = 0.0  # when the planner looked (what others made since, it did not see)

    @property
    def to_run(self) -> list[str]:
        # asked several times per run, one look per task: TaskPlan.runs inlined
        tasks, complete = self.tasks, PlanState.COMPLETE
        return [t for t in self.graph.order if tasks[t].state is not complete]

    def counts(self) -> dict[PlanState, int]:
        out = dict.fromkeys(PlanState, 0)
        for tp in self.tasks.values():
            out[tp.state] += 1
        return out


def plan(
    graph: Graph,
    records: RecordBook,
    options: PlanOptions = PlanOptions(),
    forced: Iterable[str] = (),
) -> Plan:
    """Decide the state of every task of ``graph``, upstream first."""
    made_at = time.time()
    forced = set(forced)
    decided: dict[str, TaskPlan] = {}
    versions: dict[str, str] = {}
    for tid in graph.order:
        spec = graph.tasks[tid]
        tp = _decide(spec, graph, records, options, decided, versions, tid in forced)
        decided[tid] = tp
    return Plan(graph, decided, versions, made_at)


def _decide(
    spec: TaskSpec,
    graph: Graph,
    records: RecordBook,
    options: PlanOptions,
    decided: Mapping[str, TaskPlan],
    versions: dict[str, str],
    forced: bool,
) -> TaskPlan:
    outs = output_version(spec.outputs)
    if spec.external:
        if outs is None:
            missing = next(o.location for o in spec.outputs if output_version((o,)) is None)
            return TaskPlan(PlanState.PENDING, f"external input {missing} is missing", True)
        versions[spec.id] = outs
        return _COMPLETE
    running_up = [u for u in spec.upstream if decided[u].runs]
    if spec.complete_check is not None and not forced:
        if not spec.complete_check():
            return TaskPlan(PlanState.PENDING, "complete() is False")
        if options.check_dependencies and running_up:
            return TaskPlan(PlanState.STALE, f"upstream {_name(graph, running_up[0])} will run")
        versions[spec.id] = outs or "complete"
        return _COMPLETE
    if not spec.outputs:
        return TaskPlan(PlanState.PENDING, "has no outputs, so it always runs")
    if outs is None:
        # with one output, "missing" is all there is to know: spare the second stat
        present = []
        if len(spec.outputs) > 1:
            present = [o for o in spec.outputs if output_version((o,)) is not None]
        if present:
            gone = next(o for o in spec.outputs if o not in present)
            return TaskPlan(PlanState.STALE, f"output {gone.key} is missing")
        return TaskPlan(PlanState.PENDING, _never_ran(spec, records))
    if forced:
        return TaskPlan(PlanState.STALE, "forced")
    if options.check_dependencies and running_up:
        return TaskPlan(PlanState.STALE, f"upstream {_name(graph, running_up[0])} will run")
    if options.detect_changes:
        recorded = records.fingerprint(spec.outputs[0].location)
        if recorded is None:
            return TaskPlan(
                PlanState.STALE, "outputs exist but no fingerprint was recorded for them"
            )
        before = records.before(spec.outputs[0].location)
        if before is not None and not changed_since(outs, before):
            return TaskPlan(PlanState.STALE, "its last attempt stopped before it finished")
        inputs = {u: versions[u] for u in spec.upstream if u in versions}
        if len(inputs) < len(spec.upstream) or (
            fingerprint(spec.params, spec.code, inputs) != recorded
        ):
            # the slow path: the whole record, for upstream tasks about to run (without
            # check_dependencies) and for the reasons of a STALE task
            rec = records.get(spec.outputs[0].location)
            assert rec is not None
            inputs = _current_inputs(spec, versions, rec)
            if fingerprint(spec.params, spec.code, inputs) != recorded:
                return TaskPlan(PlanState.STALE, _why(spec, graph, rec, inputs))
        versions[spec.id] = outs
        return TaskPlan(PlanState.COMPLETE, fingerprint=recorded)
    versions[spec.id] = outs
    return _COMPLETE


def _current_inputs(spec: TaskSpec, versions: Mapping[str, str], rec: Record) -> dict[str, str]:
    """Input versions now; an upstream task that is about to run (only reachable here
    without check_dependencies) counts as it was recorded, as d6tflow ignores it."""
    out = {}
    for u in spec.upstream:
        v = versions.get(u, rec.inputs.get(u))
        if v is not None:
            out[u] = v
    return out


def make_record(spec: TaskSpec, inputs: Mapping[str, str]) -> Record:
    """The record of a task that completes with these input versions."""
    return Record(
        fingerprint(spec.params, spec.code, inputs),
        dict(spec.params),
        dict(spec.code),
        dict(inputs),
        time.time(),
        spec.family,
    )


def _never_ran(spec: TaskSpec, records: RecordBook) -> str:
    """ "never ran", or which params differ from the family's last run in the same folder."""
    loc = spec.outputs[0].location
    if loc.startswith("memory://"):
        return "never ran"
    prior = records.latest(os.path.dirname(loc), spec.family)
    if prior is None:
        return "never ran"
    params = dict(spec.params)
    changed = [
        f"{k} {prior.params.get(k, '-')}→{params.get(k, '-')}"
        for k in sorted(params.keys() | prior.params.keys())
        if prior.params.get(k) != params.get(k)
    ]
    return "new params: " + ", ".join(changed) if changed else "never ran"


def _name(graph: Graph, tid: str) -> str:
    spec = graph.tasks[tid]
    if spec.external and spec.outputs:
        return spec.outputs[0].location.rsplit("/", 1)[-1]
    return spec.label


def _why(spec: TaskSpec, graph: Graph, rec: Record, inputs: Mapping[str, str]) -> str:
    if rec.before is not None and not rec.code:
        # only the mark of an attempt killed before its full record: no parts to compare
        return "fingerprint changed since its last attempt, which was stopped"
    reasons: list[str] = []
    params = dict(spec.params)
    for name in sorted(params.keys() | rec.params.keys()):
        old, new = rec.params.get(name), params.get(name)
        if old is None:
            reasons.append(f"param {name} added ({new})")
        elif new is None:
            reasons.append(f"param {name} removed (was {old})")
        elif old != new:
            reasons.append(f"param {name} changed {old}→{new}")
    code = dict(spec.code)
    if "version" in code or "version" in rec.code:
        if code.get("version") != rec.code.get("version"):
            reasons.append(
                f"version changed {rec.code.get('version', '-')}→{code.get('version', '-')}"
            )
    else:
        for part in sorted(code.keys() | rec.code.keys()):
            if code.get(part) != rec.code.get(part):
                reasons.append(f"code of {spec.family}.{part} changed")
    for up in sorted(inputs.keys() | rec.inputs.keys()):
        if up not in rec.inputs:
            reasons.append(f"input {_name(graph, up) if up in graph else up} added")
        elif up not in inputs:
            reasons.append(f"input {up.split('_', 1)[0]} removed")
        elif inputs[up] != rec.inputs[up]:
            reasons.append(f"input {_name(graph, up)} changed")
    if not reasons:
        reasons.append("fingerprint changed")
    if len(reasons) > 3:
        reasons = [*reasons[:3], f"and {len(reasons) - 3} more changes"]
    return ", ".join(reasons)
