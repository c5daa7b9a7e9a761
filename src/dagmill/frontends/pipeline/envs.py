"""Per-pipeline environments: one uv virtualenv per distinct requirement set, built once.

``$DAGMILL_HOME/envs/<hash of the set and the Python version>``; a ``.ready`` marker makes
the next use instant, a file lock makes concurrent builds of one set wait for each
other. The environment gets a copy of ``dagmill.processor`` (stdlib only), and nothing
else of dagmill's environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.model.ids import digest

__all__ = ["environment_python"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise DefinitionError("pipelines with requirement: need uv: pip install uv") from None
        return found


def environment_python(requirements: Sequence[str]) -> str:
    """The Python of the environment for ``requirements`` (built now if it is new)."""
    if not requirements:
        return sys.executable
    key = digest("\n".join(sorted(requirements)) + "|" + sys.version)
    root = os.path.join(settings.home(), "envs", key)
    python = os.path.join(root, "bin", "python")
    ready = os.path.join(root, ".ready")
    if os.path.exists(ready):
        return python
    os.makedirs(os.path.dirname(root), exist_ok=True)
    try:
        with open(root + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same set
            if not os.path.exists(ready):
                _build(root, python, ready, requirements)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(root + ".lock")
    return python


def _build(root: str, python: str, ready: str, requirements: Sequence[str]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    uv = _uv()
    try:
        _call([uv, "venv", "--quiet", "--python", sys.executable, root])
        _call([uv, "pip", "install", "--quiet", "--python", python, *requirements])
    except DefinitionError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # `from dagmill import processor` and nothing else of dagmill's environment
    stub = os.path.join(site, "dagmill")
    os.makedirs(stub, exist_ok=True)
    with open(os.path.join(stub, "__init__.py"), "w") as f:
        f.write('"""dagmill\'s processor API, for modules in a pipeline environment."""\n')
    shutil.copy(os.path.join(_PACKAGE, "processor.py"), os.path.join(stub, "processor.py"))
    with open(ready, "w") as f:
        f.write("\n".join(requirements) + "\n")


def _call(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()
        raise DefinitionError(f"the pipeline's requirement could not be installed:\n{message}")
