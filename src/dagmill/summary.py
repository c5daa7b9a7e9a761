"""The execution summary and the preview tree, in d6tflow's (luigi's) words.

Both work on task specs (family + canonical params), so every front door gets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagmill.engine import RunResult
from dagmill.model.graph import Graph
from dagmill.model.states import PlanState, RunStatus, TaskRunStatus
from dagmill.model.task import TaskSpec
from dagmill.plan.planner import Plan

__all__ = ["reached", "summary_text", "tree_text"]

S = TaskRunStatus
_MAX_FAMILIES = 5
_BAR = "===== Execution Summary ====="


def reached(plan: Plan) -> list[str]:
    """The tasks a run looks at: its targets, and the upstream of tasks that must run."""
    seen: dict[str, None] = {}
    stack = list(reversed(plan.graph.targets))
    while stack:
        tid = stack.pop()
        if tid in seen:
            continue
        seen[tid] = None
        if plan.tasks[tid].runs:
            stack.extend(reversed(plan.graph.tasks[tid].upstream))
    return list(seen)


def _repr(spec: TaskSpec) -> str:
    return f"{spec.family}({', '.join(f'{k}={v}' for k, v in spec.params)})"


def _as_int(v: str) -> int | None:
    try:
        return int(v)
    except ValueError:
        return None


def _int_range(values: Iterable[str]) -> tuple[str, str] | None:
    ints = [_as_int(v) for v in values]
    if any(i is None for i in ints):
        return None
    s = sorted({i for i in ints if i is not None})
    if len(s) > 1 and s[-1] - s[0] == len(s) - 1:
        return str(s[0]), str(s[-1])
    return None


def _one_param(specs: Sequence[TaskSpec]) -> str:
    row = ""
    for count, spec in enumerate(specs):
        if (len(row) >= 30 and count > 2 and count != len(specs) - 1) or len(row) > 200:
            return row + "..."
        row += spec.params[0][1]
        if count < len(specs) - 1:
            row += ","
    return row


def _family_line(family: str, specs: list[TaskSpec], prefix: str) -> str:
    specs = sorted(specs, key=_repr)
    first = specs[0]
    n = len(specs)
    if not first.params:
        return f"{prefix}- {n} {family}()"
    plen = sum(len(k) + len(v) for k, v in first.params)
    if plen > 60 or len(_repr(first)) > 200:
        return f"{prefix}- {n} {family}(...)"
    if len(first.params) == 1:
        name = first.params[0][0]
        values = [s.params[0][1] for s in specs]
        rng = _int_range(values)
        text = f"{rng[0]}...{rng[1]}" if rng and len(set(values)) > 3 else _one_param(specs)
        return f"{prefix}- {n} {family}({name}={text})"
    if n == 1:
        return f"{prefix}- 1 {_repr(first)}"
    if n == 2:
        return f"{prefix}- 2 {_repr(specs[0])} and {_repr(specs[1])}"
    return f"{prefix}- {n} {_repr(first)} ..."


def _group(graph: Graph, ids: Sequence[str], indent: int) -> str:
    families: dict[str, list[TaskSpec]] = {}
    for tid in ids:
        spec = graph.tasks[tid]
        families.setdefault(spec.family, []).append(spec)
    prefix = " " * indent
    lines: list[str] = []
    for family in sorted(families):
        if len(lines) >= _MAX_FAMILIES:
            lines.append(prefix + "...")
            break
        lines.append(_family_line(family, families[family], prefix))
    return "\n".join(lines)


def summary_text(result: RunResult) -> str:
    """luigi's execution summary: what was complete, what ran, what failed and why."""
    plan, graph = result.plan, result.plan.graph
    seen = reached(plan)
    by: dict[TaskRunStatus, list[str]] = {}
    for tid in seen:
        by.setdefault(result.statuses[tid], []).append(tid)
    done, ok, failed = by.get(S.SKIPPED, []), by.get(S.SUCCESS, []), by.get(S.FAILED, [])
    up_failed, cancelled = by.get(S.UPSTREAM_FAILED, []), by.get(S.CANCELLED, [])
    open_ = by.get(S.WAITING, []) + by.get(S.PENDING, []) + by.get(S.RUNNING, [])
    total = len(seen)
    if total == 0:
        return f"\n{_BAR}\n\nDid not schedule any tasks\n\n{_BAR}\n"
    out = f"Scheduled {total} tasks of which:\n"
    for ids, what in (
        (done, "complete ones were encountered"),
        (ok, "ran successfully"),
        (failed, "failed"),
    ):
        if ids:
            out += f"* {len(ids)} {what}:\n{_group(graph, ids, 4)}\n"
    pending = up_failed + cancelled + open_
    if pending:
        out += f"* {len(pending)} were left pending, among these:\n"
        for ids, what in (
            (up_failed, "had failed dependencies"),
            (cancelled, "were cancelled"),
            (open_, "were not run"),
        ):
            if ids:
                out += f"    * {len(ids)} {what}:\n{_group(graph, ids, 8)}\n"
    if not (ok or failed):
        out += "\nDid not run any tasks"
    retried = any(n > 1 for tid, n in result.attempts.items() if result.statuses[tid] is S.SUCCESS)
    if result.status is RunStatus.CANCELLED:
        face = ":( because the run was cancelled"
    elif failed or up_failed:
        face = ":( because there were failed tasks"
    elif retried:
        face = ":) because there were failed tasks but they all succeeded in a retry"
    else:
        face = ":) because there were no failed tasks or missing dependencies"
    out += f"\nThis progress looks {face}"
    return f"\n{_BAR}\n\n{out}\n\n{_BAR}\n"


def tree_text(
    plan: Plan,
    roots: Sequence[str],
    children: dict[str, list[str]] | None = None,
    *,
    show_params: bool = True,
    clip_params: bool = False,
    color: bool = False,
) -> str:
    """d6tflow's preview tree, with the reason after each task that must run.

    ``children`` gives the order in which a task's dependencies are drawn (the shape of
    ``requires()``); it defaults to the graph's upstream order.
    """
    graph = plan.graph
    kids = children or {t: list(graph.tasks[t].upstream) for t in graph.tasks}
    colors = {
        PlanState.COMPLETE: "\033[92m",
        PlanState.PENDING: "\033[94m",
        PlanState.STALE: "\033[93m",
    }
    lines: list[str] = []
    # iterative, so a chain of thousands of tasks does not hit the recursion limit
    stack: list[tuple[str, str, bool]] = [(r, "", True) for r in reversed(roots)]
    while stack:
        tid, indent, last = stack.pop()
        spec, tp = graph.tasks[tid], plan.tasks[tid]
        params = ""
        if show_params:
            d = dict(spec.params)
            params = (
                str(d)
                if not (clip_params and len(d) > 1)
                else str(dict([next(iter(d.items()))])) + "[more]"
            )
        state = tp.state.value
        if color:
            state = f"{colors[tp.state]}{state}\033[0m"
        branch = "└─--" if last else "|--"
        line = f"{indent}{branch}[{spec.family}-{params} ({state})]"
        if tp.state is not PlanState.COMPLETE and tp.reason and tp.reason != "never ran":
            line += f" => {tp.reason}"
        lines.append(line)
        sub = indent + ("   " if last else "|  ")
        ch = kids.get(tid, [])
        for i in range(len(ch) - 1, -1, -1):
            stack.append((ch[i], sub, i == len(ch) - 1))
    return "\n".join(lines)
