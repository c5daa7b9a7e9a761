"""Running one process node: its module (or command) as a subprocess in its own process
group; outputs are written to temporary names and renamed into place only if it succeeds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dagmill.io.atomic import TMP_MARKER, ensure_dir
from dagmill.io.remote import download, is_url, upload

__all__ = ["CONTEXT_ENV", "ProcessorAction", "ProcessorFailed"]

CONTEXT_ENV = "DAGMILL_PROCESSOR_CONTEXT"
_GRACE_SECONDS = 3.0


class ProcessorFailed(Exception):
    """A processor exited with an error; the message says where, if the module told us."""


@dataclass(frozen=True)
class ProcessorAction:
    node: str
    module: str | None
    command: str | None
    cwd: str
    inputs: tuple[tuple[str, str, str | None, dict[str, Any]], ...]
    outputs: tuple[tuple[str, str, str | None, dict[str, Any]], ...]
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    python: str = "python3"

    def __call__(self) -> None:
        staging = tempfile.mkdtemp(prefix="dagmill-stage-") if self._remote() else None
        temps = []
        for name, loc, fmt, options in self.outputs:
            if is_url(loc):  # written locally, uploaded once the module has succeeded
                assert staging is not None
                tmp = os.path.join(staging, f"out-{name}{_suffix(loc)}")
            else:
                folder, base = os.path.split(loc)
                ensure_dir(folder or ".")
                tmp = os.path.join(folder, f".{base}{TMP_MARKER}{os.getpid()}")
            temps.append((name, loc, tmp, fmt, options))
        inputs = []
        for name, loc, fmt, options in self.inputs:
            if is_url(loc):  # the module runs in another process: give it a local copy
                assert staging is not None
                local = os.path.join(staging, f"in-{name}{_suffix(loc)}")
                download(loc, local)
                loc = local
            inputs.append((name, loc, fmt, options))
        fd, error_file = tempfile.mkstemp(prefix="dagmill-processor-error-")
        os.close(fd)
        context: dict[str, Any] = {
            "node": self.node,
            "inputs": [
                {"name": n, "source": s, "format": f, "options": o} for n, s, f, o in inputs
            ],
            "outputs": [
                {"name": n, "source": t, "final": s, "format": f, "options": o}
                for n, s, t, f, o in temps
            ],
            "params": self.params,
            "error_file": error_file,
        }
        env = {**os.environ, **self.env, CONTEXT_ENV: json.dumps(context, default=str)}
        # for command nodes: DAGMILL_INPUT_0 / DAGMILL_INPUT_<NAME>, DAGMILL_OUTPUT_0 ...
        for kind, items in (("INPUT", context["inputs"]), ("OUTPUT", context["outputs"])):
            for i, item in enumerate(items):
                env[f"DAGMILL_{kind}_{i}"] = item["source"]
                env[f"DAGMILL_{kind}_{_env_name(item['name'])}"] = item["source"]
        if self.module is not None:
            argv: list[str] | str = [self.python, self.module]
        else:
            argv = self.command or ""
        try:
            proc = subprocess.Popen(
                argv, cwd=self.cwd, env=env, shell=self.module is None, start_new_session=True
            )
            try:
                code = proc.wait()
            except BaseException:  # cancelled: stop the module and all it started
                _stop_group(proc)
                raise
            if code != 0:
                raise ProcessorFailed(self._failure(code, error_file))
            missing = [n for n, _, tmp, _, _ in temps if not os.path.exists(tmp)]
            if missing:
                raise ProcessorFailed(
                    f"{self.node} finished but did not write {', '.join(missing)}: write each "
                    "output with processor.save(name, obj), or to the paths that "
                    "processor.fetch_datanodes_information() returns"
                )
            for _, loc, tmp, _, _ in temps:
                if is_url(loc):
                    upload(tmp, loc)
                else:
                    os.replace(tmp, loc)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for _, _, tmp, _, _ in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(error_file)

    def _remote(self) -> bool:
        return any(is_url(loc) for _, loc, _, _ in (*self.inputs, *self.outputs))

    def _failure(self, code: int, error_file: str) -> str:
        what = f"processor {os.path.basename(self.module)}" if self.module else "command"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        try:
            with open(error_file, encoding="utf-8") as f:
                detail = f.read().strip()
        except OSError:
            detail = ""
        return f"{self.node}: {what} failed ({how})" + (f": {detail}" if detail else "")


def _env_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def _suffix(loc: str) -> str:
    return os.path.splitext(loc.rsplit("/", 1)[-1])[1]


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
