"""YAML with positions (the value of a document and the line of every key path in it),
and the slot placeholders of data node sources.

A source may name the run's slot: ``{slot:%Y-%m-%d}`` (a strftime format applied to the
slot in the job's timezone) or ``{slot}`` (its ISO 8601 string); ``{{`` and ``}}`` are
literal braces:

    >>> import datetime as dt
    >>> when = dt.datetime.fromisoformat("2022-03-01T00:30:00+01:00")
    >>> fill_slot("raw/{slot:%Y-%m-%d}.csv", when)
    'raw/2022-03-01.csv'

A manual run (no slot) fills them with the time the pipeline is compiled for the run,
in its ``schedule.timezone`` (UTC without one), as Airflow gives a manually triggered run
its trigger time as logical date.
"""

from __future__ import annotations

import datetime as _dt
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Located", "PipelineSyntaxError", "fill_slot", "load_located", "placeholder_problem"]

_HOW = "use {slot:FORMAT} (strftime, e.g. {slot:%Y-%m-%d}) or {slot}; {{ and }} are literal braces"

Path = tuple[str | int, ...]


class PipelineSyntaxError(ValueError):
    """YAML that cannot be read; ``line`` is 1-based."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Located:
    """A loaded document and, for every key path, the line (1-based) where it stands."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:n]))
            if found is not None:
                return found
        return None


def load_located(text: str) -> Located:
    """Parse YAML, recording where each key is; duplicate keys are errors."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml, when present: 5x faster
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise PipelineSyntaxError(
            f"{e.problem or e}" + (f" ({e.context})" if e.context else ""),
            mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise PipelineSyntaxError(str(e), None) from None
    if node is None:
        return Located(None, {})
    lines: dict[Path, int] = {(): node.start_mark.line + 1}
    for path, key_node in _walk(node, ()):
        lines[path] = key_node.start_mark.line + 1
    constructor = yaml.SafeLoader("")
    try:
        value = constructor.construct_document(node)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise PipelineSyntaxError(str(e.problem), mark.line + 1 if mark else None) from None
    return Located(value, lines)


def _walk(node: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise PipelineSyntaxError(
                    f"{'.'.join(map(str, (*path, key)))}: the key {key!r} is given twice "
                    f"(first on line {seen[key]})",
                    key_node.start_mark.line + 1,
                )
            seen[key] = key_node.start_mark.line + 1
            yield (*path, key), key_node
            yield from _walk(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield (*path, i), item
            yield from _walk(item, (*path, i))


def placeholder_problem(source: str) -> str | None:
    """What is wrong with the placeholders of a data node source, or None."""
    try:
        parts = list(string.Formatter().parse(source))
    except ValueError as e:  # "Single '}' encountered", "expected '}' before end of string"
        return f"unbalanced braces in {source!r} ({e}): {_HOW}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name != "slot":
            import difflib

            field_ = f"{{{name}{':...' if spec else ''}}}"
            hint = ""
            if name and difflib.get_close_matches(name, ["slot"], n=1):
                hint = f" (did you mean {{slot{':...' if spec else ''}}}?)"
            return f"unknown placeholder {field_}{hint} in {source!r}: {_HOW}"
        if conversion is not None or (spec and ("{" in spec or "}" in spec)):
            return f"malformed placeholder in {source!r}: {_HOW}"
    return None


def fill_slot(source: str, when: _dt.datetime) -> str:
    """``source`` with its placeholders filled from the slot ``when`` (timezone-aware, in
    the job's timezone); check it with :func:`placeholder_problem` first."""
    out = []
    for literal, name, spec, _ in string.Formatter().parse(source):
        out.append(literal)
        if name is not None:
            out.append(when.strftime(spec) if spec else when.isoformat())
    return "".join(out)
