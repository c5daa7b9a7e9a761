"""Code versions: a hash per method of the normalised source.

Each source file is parsed once (``ast``) and its functions indexed by line; a method's
hash is the dump of its syntax tree without positions, docstring or decorators, so
comments, blank lines and formatting do not change it. When there is no source
(``python -c``, a REPL) the compiled bytecode is hashed instead.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import types
from typing import Any

from dagmill.model.ids import digest

__all__ = ["class_code", "class_location", "function_hash", "module_hash"]

_Func = ast.FunctionDef | ast.AsyncFunctionDef
_cache: dict[Any, tuple[tuple[str, str], ...]] = {}
# file name -> ({first line of a function (or of its first decorator): node}, {class: line})
_files: dict[str, tuple[dict[int, _Func], dict[str, int]]] = {}


def _index(filename: str) -> tuple[dict[int, _Func], dict[str, int]]:
    try:
        st = os.stat(filename)
        key = f"{filename}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        key = filename  # <stdin>, a notebook cell: linecache may still know its lines
    found = _files.get(key)
    if found is not None:
        return found
    linecache.checkcache(filename)  # the file may have been rewritten (a module reload)
    funcs: dict[int, _Func] = {}
    classes: dict[str, int] = {}
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in _definitions(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            funcs[node.lineno] = node
            if node.decorator_list:
                funcs[node.decorator_list[0].lineno] = node
        elif isinstance(node, ast.ClassDef):
            classes.setdefault(node.name, node.lineno)
    _files[key] = (funcs, classes)
    return funcs, classes


def _definitions(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement nested in statement lists (not expressions): ast.walk visits ten
    times more nodes to find the same functions and classes."""
    out: list[ast.stmt] = []
    stack = list(body)
    while stack:
        node = stack.pop()
        out.append(node)
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            sub = getattr(node, name, None)
            if isinstance(sub, list):
                for item in sub:
                    stack.extend(item.body if isinstance(item, ast.match_case) else [item])
    return out


def _normalised(node: _Func) -> str:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:] or [ast.Pass()]
    for inner in body:  # docstrings of nested functions and classes go too
        for sub in ast.walk(inner):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                b = sub.body
                if (
                    b
                    and isinstance(b[0], ast.Expr)
                    and isinstance(b[0].value, ast.Constant)
                    and isinstance(b[0].value.value, str)
                ):
                    sub.body = b[1:] or [ast.Pass()]
    # decorators belong to the front door (e.g. @requires), not to what the code does
    dumped = [ast.dump(n, annotate_fields=False, include_attributes=False) for n in body]
    args = ast.dump(node.args, annotate_fields=False, include_attributes=False)
    return f"{node.name}({args}):{'|'.join(dumped)}"


def _code_repr(code: types.CodeType) -> str:
    consts = [
        _code_repr(c) if isinstance(c, types.CodeType) else repr(c)
        for i, c in enumerate(code.co_consts)
        if not (i == 0 and isinstance(c, str))  # the docstring
    ]
    return repr((code.co_code, consts, code.co_names))


def function_hash(func: Any) -> str:
    """Hash of a function's normalised source (or bytecode if there is no source)."""
    while hasattr(func, "__wrapped__"):
        func = func.__wrapped__
    code = getattr(func, "__code__", None)
    if code is None:
        return digest(repr(func))
    node = _index(code.co_filename)[0].get(code.co_firstlineno)
    if node is not None and node.name == func.__name__:
        return digest(_normalised(node))
    return digest(_code_repr(code))


_module_hashes: dict[tuple[str, int, int], str] = {}


def module_hash(path: str) -> str:
    """Hash of a whole module's normalised source: comments, blank lines, formatting and
    docstrings do not change it (a module that does not parse is hashed as bytes)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    found = _module_hashes.get(key)
    if found is None:
        found = _module_hashes[key] = _module_hash(path)
    return found


def _module_hash(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        with open(path, "rb") as fb:
            return digest(fb.read().decode("utf-8", "replace"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            b = node.body
            if (
                b
                and isinstance(b[0], ast.Expr)
                and isinstance(b[0].value, ast.Constant)
                and isinstance(b[0].value.value, str)
            ):
                node.body = b[1:] or [ast.Pass()]
    return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))


def class_location(cls: type) -> str | None:
    """``file:line`` where a class is defined, from the same parsed index."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    line = _index(filename)[1].get(cls.__name__)
    return f"{filename}:{line}" if line else filename


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
