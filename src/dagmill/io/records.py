"""Fingerprint records, kept beside the outputs they describe.

Each output folder holds ``.dagmill-records.jsonl``: one JSON line per completed task,
keyed by the name of the task's first output, with the fingerprint and its parts
(params, code, input versions) so that a later plan can say *what* changed. A data
folder therefore carries its own completeness: copy it elsewhere and it is still
complete there.

Lines are appended (one ``write`` per flush, ``O_APPEND``), the last line for a key
wins, and the file is compacted when it is mostly superseded lines. A damaged line (not
UTF-8, not a record, or a torn last line left by a crash) is skipped with a warning
naming the file and line: the task it described runs again, and the first write after
it rewrites the file without it (so the warning is given once, and no record is ever
appended onto a torn line). Records of in-memory outputs live in memory.

A task whose outputs are local files gets its record *before* it runs, marked with the
versions its outputs had then (``"w"``): killed after renaming its outputs into place but
before the engine heard of it, the task is still complete, since every output changed
since the mark; killed earlier, some output did not change, and it runs again. The
engine then writes the plain record with the next batch. This needs no clock: a version
is size + mtime, compared for change only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagmill.io import memory
from dagmill.io.atomic import atomic_path, ensure_dir
from dagmill.io.jsonenc import encoder
from dagmill.model.task import OutputRef

__all__ = [
    "RECORDS_FILE",
    "Record",
    "RecordBook",
    "changed_since",
    "output_version",
    "versions_before",
]

RECORDS_FILE = ".dagmill-records.jsonl"
_MEMORY = "memory://"
_memory_records: dict[str, dict[str, Any]] = {}


_encode = encoder(",", ":")  # one record line per task: made once
# what _encode does with a str (ensure_ascii), without its type dispatch: for the mark
_encode_str = json.encoder.encode_basestring_ascii
_log = logging.getLogger("dagmill.records")


@dataclass(frozen=True, slots=True)
class Record:
    """What a task was when it last completed."""

    fingerprint: str
    params: Mapping[str, str]
    code: Mapping[str, str]
    inputs: Mapping[str, str]
    at: float
    family: str = ""
    # read from a mark (a task that started): its outputs' versions then (see the module)
    before: str | None = None

    def done(self, at: float) -> Record:
        """The record of the finished task this mark was written for."""
        return Record(self.fingerprint, self.params, self.code, self.inputs, at, self.family)

    def to_json(self, key: str) -> dict[str, Any]:
        return {
            "o": key,
            "f": self.family,
            "fp": self.fingerprint,
            "p": dict(self.params),
            "c": dict(self.code),
            "i": dict(self.inputs),
            "t": round(self.at, 3),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Record:
        before = d.get("w")
        at = d.get("t", 0.0)
        # a line edited by hand may be JSON with the wrong shapes: parts that are not
        # mappings are left out (the plan then says less about what changed), never a crash
        return cls(
            d["fp"],
            _mapping(d.get("p")),
            _mapping(d.get("c")),
            _mapping(d.get("i")),
            at if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            str(d.get("f", "")),
            before if isinstance(before, str) else None,
        )


def _mapping(value: Any) -> Mapping[str, str]:
    return value if isinstance(value, dict) else {}


def _split(location: str) -> tuple[str, str]:
    """``os.path.split`` for the common case (``/a/b/name``) with two string operations;
    anything else (no folder, root, repeated slashes) goes to ``os.path.split``."""
    i = location.rfind("/")
    if i > 0 and location[i - 1] != "/":
        return location[:i], location[i + 1 :]
    return os.path.split(location)


def _records_file(folder: str) -> str:
    """Beside the outputs; for an object store (which cannot append), under DAGMILL_HOME."""
    if "://" in folder:
        from dagmill import settings
        from dagmill.model.ids import digest

        return os.path.join(settings.home(), "records", digest(folder) + ".jsonl")
    return os.path.join(folder, RECORDS_FILE)


def output_version(outputs: Iterable[OutputRef]) -> str | None:
    """The combined data version of outputs (size + mtime), or None if any is missing."""
    parts = []
    for out in outputs:
        if out.kind == "memory":
            v = memory.version(out.location)
            if v is None:
                return None
            parts.append(v)
        elif "://" in out.location:
            from dagmill.io.remote import url_version

            v = url_version(out.location)
            if v is None:
                return None
            parts.append(v)
        else:
            try:
                st = os.stat(out.location)
            except (FileNotFoundError, NotADirectoryError):
                return None
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def versions_before(outputs: Iterable[OutputRef]) -> str | None:
    """The mark of a task about to run: its outputs' versions now ("|"-joined, "" for a
    missing one), or None if they are not all local files (recorded only at the end)."""
    parts = []
    for out in outputs:
        if out.kind != "file" or "://" in out.location:
            return None
        # a task about to run mostly has no output yet: access() says so without the
        # exception a failed stat() raises (stat may still fail: removed in between)
        if not os.access(out.location, os.F_OK):
            parts.append("")
            continue
        try:
            st = os.stat(out.location)
        except (FileNotFoundError, NotADirectoryError):
            parts.append("")
            continue
        parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts) if parts else None


def changed_since(version: str, before: str) -> bool:
    """True if every output of ``version`` (from output_version) differs from its mark."""
    now, was = version.split("|"), before.split("|")
    return len(now) == len(was) and all(a != b for a, b in zip(now, was))


# Lines are written as {"o": key, "f": family, "fp": fingerprint, ...}: the planner needs
# only those three, so reading takes them with a regex and decodes a line when asked.
_HEAD = re.compile(
    r'\{"o":("(?:[^"\\]|\\.)*"),"f":("(?:[^"\\]|\\.)*"),"fp":(?:"([0-9a-f]+)"|null)'
    r'(?:,"w":"([0-9:|]*)")?'
)


def _unquote(s: str) -> str:
    return s[1:-1] if "\\" not in s else str(json.loads(s))


class _Entry:
    __slots__ = ("_d", "before", "family", "fp", "raw")

    def __init__(
        self,
        fp: str,
        family: str,
        raw: str | None,
        d: dict[str, Any] | None,
        before: str | None = None,
    ) -> None:
        self.fp, self.family, self.raw, self._d, self.before = fp, family, raw, d, before

    def data(self) -> dict[str, Any]:
        if self._d is None:
            self._d = json.loads(self.raw or "{}")
        return self._d

    def line(self) -> str:
        return self.raw if self.raw is not None else _encode(self.data())


class RecordBook:
    """Reads records lazily per folder and buffers new ones until ``flush()``."""

    def __init__(self) -> None:
        self._folders: dict[str, dict[str, _Entry]] = {}
        self._lines: dict[str, int] = {}
        self._pending: dict[str, list[str]] = {}
        self._latest: dict[tuple[str, str], Record | None] = {}
        self._damaged: set[str] = set()  # folders whose file has damaged lines
        self._warned: set[str] = set()
        # records files kept open for appending (one write per finished task)
        self._fds: dict[str, int] = {}

    def _entry(self, location: str) -> _Entry | None:
        if location.startswith(_MEMORY):
            d = _memory_records.get(location)
            return _Entry(d["fp"], d.get("f", ""), None, d) if d else None
        folder, key = _split(location)
        return self._folder(folder).get(key)

    def fingerprint(self, location: str) -> str | None:
        """Just the recorded fingerprint (the planner's fast path)."""
        e = self._entry(location)
        return e.fp if e else None

    def before(self, location: str) -> str | None:
        """The mark of a record written as its task started (None for a finished one)."""
        e = self._entry(location)
        return e.before if e else None

    def get(self, location: str) -> Record | None:
        e = self._entry(location)
        return Record.from_json(e.data()) if e else None

    @staticmethod
    def by_folder(located: Iterable[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
        """(name, location) pairs grouped by the folder of the location."""
        out: dict[str, list[tuple[str, str]]] = {}
        for item in located:
            folder = _split(item[1])[0]
            group = out.get(folder)
            if group is None:
                out[folder] = [item]
            else:
                group.append(item)
        return out

    def has_records(self, folder: str) -> bool:
        """True if any record is known in ``folder`` (read once)."""
        return bool(self._folder(folder))

    def latest(self, folder: str, family: str) -> Record | None:
        """The most recent record of ``family`` in ``folder`` (for "what changed" reasons)."""
        key = (folder, family)
        if key not in self._latest:
            recs = [e.data() for e in self._folder(folder).values() if e.family == family]
            best = max(recs, key=lambda d: d.get("t", 0.0)) if recs else None
            self._latest[key] = Record.from_json(best) if best else None
        return self._latest[key]

    def put(self, location: str, record: Record, at: float | None = None) -> None:
        """Buffer ``record`` (with ``at``: as done then, e.g. a mark's record as its task
        finishes) until the next flush."""
        if location.startswith(_MEMORY):
            _memory_records[location] = (record if at is None else record.done(at)).to_json(
                location
            )
            return
        folder, key = _split(location)
        d = record.to_json(key)
        before = record.before
        if at is not None:
            d["t"], before = round(at, 3), None
        line = _encode(d)
        self._folder(folder)[key] = _Entry(record.fingerprint, record.family, line, d, before)
        self._pending.setdefault(folder, []).append(line)
        self._latest.pop((folder, record.family), None)

    def mark(self, location: str, record: Record, before: str) -> None:
        """Write at once the mark of a task that starts (see the module): a short line,
        its key, family, fingerprint and its outputs' versions now (``before``)."""
        folder, key = _split(location)
        line = (
            f'{{"o":{_encode_str(key)},"f":{_encode_str(record.family)},'
            f'"fp":"{record.fingerprint}","w":"{before}"}}'
        )
        self._folder(folder)[key] = _Entry(record.fingerprint, record.family, line, None, before)
        self._latest.pop((folder, record.family), None)
        pending = self._pending
        if not pending or (len(pending) == 1 and folder in pending):
            # the usual case: the lines waiting (if any) go to the same file, in one write
            lines = pending.pop(folder, None)
            if lines is None:
                lines = [line]
            else:
                lines.append(line)
            self._append(folder, lines)
            return
        pending.setdefault(folder, []).append(line)
        self.flush()

    def forget(self, location: str) -> None:
        """Drop the record of an output (used by reset); written as a tombstone line."""
        if location.startswith(_MEMORY):
            _memory_records.pop(location, None)
            return
        folder, key = os.path.split(location)
        if self._folder(folder).pop(key, None) is not None:
            self._pending.setdefault(folder, []).append(_encode({"o": key, "fp": None}))

    def flush(self) -> None:
        """Write the buffered lines: one unbuffered ``write`` per folder (a process killed
        right after keeps them; the engine calls this as each task finishes)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for folder, lines in pending.items():
            self._append(folder, lines)

    def _append(self, folder: str, lines: list[str]) -> None:
        """Write ``lines`` to the records file of ``folder`` (see flush)."""
        if folder in self._damaged:
            self._repair(folder, lines)
        else:
            data = ("\n".join(lines) + "\n").encode("utf-8")
            fd = self._fds.get(folder)
            if fd is not None and os.fstat(fd).st_nlink == 0:  # compacted or deleted since
                os.close(fd)
                fd = None
            if fd is None:
                path = _records_file(folder)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                except FileNotFoundError:  # the first record of a new folder
                    ensure_dir(os.path.dirname(path))
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[folder] = fd
            os.write(fd, data)
            self._lines[folder] = self._lines.get(folder, 0) + len(lines)

    def close(self) -> None:
        """Write what is buffered and close the files kept open for appending."""
        self.flush()
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def refresh(self, folders: Iterable[str]) -> None:
        """Forget what was read from these folders (after writing what is buffered), so
        the next question reads the records other processes appended since."""
        self.flush()
        for folder in folders:
            self._folders.pop(folder, None)
            for key in [k for k in self._latest if k[0] == folder]:
                del self._latest[key]

    def _repair(self, folder: str, lines: list[str]) -> None:
        """Rewrite a damaged file with its good records and ``lines``: read again first,
        so that records other processes appended meanwhile are kept."""
        recs = self._read(folder, warn=False)
        for line in lines:
            self._apply(recs, line, _HEAD.match(line))
        self._compact(folder, recs)
        self._folders[folder] = recs
        self._damaged.discard(folder)

    def _folder(self, folder: str) -> dict[str, _Entry]:
        recs = self._folders.get(folder)
        if recs is None:
            recs = self._folders[folder] = self._read(folder)
        return recs

    def _read(self, folder: str, warn: bool = True) -> dict[str, _Entry]:
        path = _records_file(folder)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return {}
        recs: dict[str, _Entry] = {}
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = []
            for n, raw in enumerate(data.split(b"\n"), 1):
                try:
                    lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    lines.append("")
                    self._damage(folder, f"{path}:{n}: skipped a damaged line (not UTF-8)", warn)
        head = _HEAD.match
        for n, line in enumerate(lines[:-1], 1):
            if line and not self._apply(recs, line, head(line)):
                self._damage(folder, f"{path}:{n}: skipped a damaged line (not a record)", warn)
        if lines[-1]:  # no newline after it: a write cut short, or a file edited by hand
            try:
                whole = isinstance(json.loads(lines[-1]), dict)
            except ValueError:
                whole = False
            if not (whole and self._apply(recs, lines[-1], None)):
                self._damage(folder, f"{path}:{len(lines)}: skipped a torn last line", warn)
            self._damaged.add(folder)  # either way, the next write must not append onto it
        n = len(lines) - 1
        self._lines[folder] = n
        if n > 1000 and n > 3 * len(recs) and folder not in self._damaged:
            self._compact(folder, recs)
        return recs

    def _damage(self, folder: str, message: str, warn: bool) -> None:
        self._damaged.add(folder)
        if warn and message not in self._warned:  # once, though a folder is read again
            self._warned.add(message)
            _log.warning(
                "%s; the task it recorded will run again, and the next record written "
                "there rewrites the file without it",
                message,
            )

    @staticmethod
    def _apply(recs: dict[str, _Entry], line: str, m: re.Match[str] | None) -> bool:
        """Take one line into ``recs``; False if it is not a record."""
        if m is not None and line.endswith("}"):
            key, fp = _unquote(m.group(1)), m.group(3)
            if fp is None:
                recs.pop(key, None)
            else:
                recs[key] = _Entry(fp, _unquote(m.group(2)), line, None, m.group(4))
            return True
        try:  # written some other way (by hand, an older dagmill): decode it all
            d = json.loads(line)
        except ValueError:
            return False
        if not isinstance(d, dict) or not isinstance(d.get("o"), str):
            return False
        fp = d.get("fp")
        if fp is None:
            recs.pop(d["o"], None)
        elif isinstance(fp, str):
            before = d.get("w")
            recs[d["o"]] = _Entry(
                fp, str(d.get("f", "")), line, d, before if isinstance(before, str) else None
            )
        else:
            return False
        return True

    def _compact(self, folder: str, recs: Mapping[str, _Entry]) -> None:
        with (
            atomic_path(_records_file(folder)) as tmp,
            open(tmp, "w", encoding="utf-8") as f,
        ):
            f.write("".join(e.line() + "\n" for e in recs.values()))
        self._lines[folder] = len(recs)
