"""Code versions: a hash per method of the normalised source.

The source is parsed and dumped without positions, so comments, blank lines and
formatting do not change a hash; a docstring does not either. When source is not
available (``python -c``, a REPL) the compiled bytecode is hashed instead.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from typing import Any

from dagmill.model.ids import digest

__all__ = ["class_code", "function_hash"]

_cache: dict[Any, tuple[tuple[str, str], ...]] = {}


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]


def _code_repr(code: types.CodeType) -> str:
    consts = [
        _code_repr(c) if isinstance(c, types.CodeType) else repr(c)
        for c in code.co_consts
        if not (isinstance(c, str) and c == code.co_consts[0] and c.strip())  # docstring
    ]
    return repr((code.co_code, consts, code.co_names))


def function_hash(func: Any) -> str:
    """Hash of a function's normalised source (or bytecode if there is no source)."""
    func = inspect.unwrap(func)
    try:
        src = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(src)
        _strip_docstrings(tree)
        for node in ast.walk(tree):  # decorators are the front door's business, not the code
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                node.decorator_list = []
                break
        return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))
    except (OSError, TypeError, SyntaxError, IndentationError):
        code = getattr(func, "__code__", None)
        return digest(_code_repr(code)) if code is not None else digest(repr(func))


def class_code(cls: type, stop: tuple[type, ...]) -> tuple[tuple[str, str], ...]:
    """(method name, hash) for every method the class and its user-defined bases define.

    Classes in ``stop`` (the framework's own) and above are not part of the user's code.
    """
    cached = _cache.get(cls)
    if cached is not None:
        return cached
    parts: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass in stop or klass is object:
            break
        for name, obj in vars(klass).items():
            if name in parts or name.startswith("__"):
                continue
            if isinstance(obj, staticmethod | classmethod):
                obj = obj.__func__
            elif isinstance(obj, property):
                obj = obj.fget
            if (
                isinstance(obj, types.FunctionType)
                and obj.__module__ != "dagmill.frontends.classes"
            ):
                parts[name] = function_hash(obj)
    result = tuple(sorted(parts.items()))
    _cache[cls] = result
    return result
