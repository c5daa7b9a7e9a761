"""Running one process node: its module (or command) as a subprocess in its own process
group; outputs are written to temporary names and renamed into place only if it succeeds.

A module that exited 0 has done its work: its outputs are renamed into place even if a
Ctrl-C (or a cancel) arrives meanwhile, and the exception that stops the run carries
``dagmill_outputs_saved`` so that the executor reports the attempt as a success."""

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

from dagmill.io.atomic import ensure_dir, temp_path
from dagmill.io.remote import download, is_url, upload
from dagmill.model.secrets import mask, secret_values

__all__ = ["CONTEXT_ENV", "SLOT_ENV", "ProcessorAction", "ProcessorFailed"]

CONTEXT_ENV = "DAGMILL_PROCESSOR_CONTEXT"
SLOT_ENV = "DAGMILL_SLOT"  # the run's slot, ISO 8601 with offset: modules and commands
# (name, final location, temporary path, format, options) of one output
_Temp = tuple[str, str, str, str | None, dict[str, Any]]
_GRACE_SECONDS = 3.0
_STAGE = "dagmill-stage-"  # + the pid of the process staging, + a random part


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
    # ISO 8601 with offset: the scheduled run's slot, or the manual run's compile time
    slot: str = ""

    def __call__(self) -> None:
        staging = None
        if self._remote():
            _remove_stale_stages()
            staging = tempfile.mkdtemp(prefix=f"{_STAGE}{os.getpid()}-")
        temps = []
        for name, loc, fmt, options in self.outputs:
            if is_url(loc):  # written locally, uploaded once the module has succeeded
                assert staging is not None
                tmp = os.path.join(staging, f"out-{name}{_suffix(loc)}")
            else:
                ensure_dir(os.path.dirname(loc) or ".")
                tmp = temp_path(loc)
            temps.append((name, loc, tmp, fmt, options))
        published: list[bool] = []  # [True] once every output is in place
        # the module reports where it failed on this pipe: no file to leave behind
        error_read, error_write = os.pipe()
        try:
            inputs = []
            for name, loc, fmt, options in self.inputs:
                if is_url(loc):  # the module runs in another process: give it a local copy
                    assert staging is not None
                    local = os.path.join(staging, f"in-{name}{_suffix(loc)}")
                    download(loc, local)
                    loc = local
                inputs.append((name, loc, fmt, options))
            env = self._environment(inputs, temps, error_write)
            if self.module is not None:
                argv: list[str] | str = [self.python, self.module]
            else:
                argv = self.command or ""
            # its own session: a cancel or a timeout stops it with all it started; if the
            # engine is killed, the run's reaper stops it (it carries the run's token)
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                shell=self.module is None,
                start_new_session=True,
                pass_fds=(error_write,),
            )
            os.close(error_write)
            error_write = -1
            try:
                code = proc.wait()
                # what it left running in its group ends with it: a task's children do
                # not outlive it (one started in a session of its own is its own affair)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if code != 0:
                    raise ProcessorFailed(self._failure(code, _drain(error_read)))
                self._check_written(temps)
                _publish(temps, published)
            except ProcessorFailed:
                raise
            except BaseException as e:  # cancelled or timed out: stop it and all it started
                _stop_group(proc)
                # the rule: a module that exited 0 (before the interrupt, or in the grace it
                # was given) finished its work; its outputs go into place, and the
                # executor reports its attempt as a success
                if not published and proc.returncode == 0 and _all_written(temps):
                    _publish(temps, published)
                if published:
                    e.dagmill_outputs_saved = True  # type: ignore[attr-defined]
                raise
        finally:
            for fd in (error_read, error_write):
                if fd >= 0:
                    os.close(fd)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for _, _, tmp, _, _ in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _environment(
        self,
        inputs: list[tuple[str, str, str | None, dict[str, Any]]],
        temps: list[_Temp],
        error_fd: int,
    ) -> dict[str, str]:
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
            "slot": self.slot,
            # and which pipe it is: a process the module starts may have another file at
            # that number
            "error_fd": error_fd,
            "error_pipe": os.fstat(error_fd).st_ino,
        }
        env = {**os.environ, **self.env, CONTEXT_ENV: json.dumps(context, default=str)}
        # after the node's env: the slot is the run's, not a value a file can fix
        env[SLOT_ENV] = self.slot
        # for command nodes: DAGMILL_INPUT_0 / DAGMILL_INPUT_<NAME>, DAGMILL_OUTPUT_0 ...
        for kind, items in (("INPUT", context["inputs"]), ("OUTPUT", context["outputs"])):
            for i, item in enumerate(items):
                env[f"DAGMILL_{kind}_{i}"] = item["source"]
                env[f"DAGMILL_{kind}_{_env_name(item['name'])}"] = item["source"]
        return env

    def _check_written(self, temps: list[_Temp]) -> None:
        missing = [n for n, _, tmp, _, _ in temps if not os.path.exists(tmp)]
        if missing:
            raise ProcessorFailed(
                f"{self.node} finished but did not write {', '.join(missing)}: write each "
                "output with processor.save(name, obj), or to the paths that "
                "processor.fetch_datanodes_information() returns"
            )

    def _remote(self) -> bool:
        return any(is_url(loc) for _, loc, _, _ in (*self.inputs, *self.outputs))

    def _failure(self, code: int, detail: str) -> str:
        what = f"processor {os.path.basename(self.module)}" if self.module else "command"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        message = f"{self.node}: {what} failed ({how})" + (f": {detail}" if detail else "")
        # the node's env: may hold secrets that the engine's own environment does not
        return mask(message, secret_values({**os.environ, **self.env}))


def _remove_stale_stages() -> None:
    """Remove the staging folders that attempts killed with their engine left in the temp
    folder (the pid in the name is gone)."""
    folder = tempfile.gettempdir()
    try:
        entries = [e for e in os.listdir(folder) if e.startswith(_STAGE)]
    except OSError:
        return
    for entry in entries:
        pid = entry[len(_STAGE) :].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drain(fd: int) -> str:
    """What the module wrote on the error pipe (it has exited; a child it left running
    may hold the pipe open, so read only what is there)."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace").strip()


def _all_written(temps: list[_Temp]) -> bool:
    return all(os.path.exists(tmp) for _, _, tmp, _, _ in temps)


def _publish(temps: list[_Temp], done: list[bool]) -> None:
    """Rename (or upload) every output into place; a Ctrl-C waits until all are (and
    ``done`` says so before the interrupt can be raised)."""
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for _, loc, tmp, _, _ in temps:
            if is_url(loc):
                upload(tmp, loc)
            else:
                os.replace(tmp, loc)
        done.append(True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


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
