"""Bundles: the code a job is built from on a server, uploaded as a tar.gz.

Client side, :func:`pack` gathers what a job needs (``dagmill jobs build`` against a
server uploads it):

- a pipeline file: the file, the processor modules of its process nodes found beside it
  (``clean`` → ``clean.py``, ``pkg.clean`` → ``pkg/clean.py`` with the package's
  ``__init__.py``; a module found only as an installed package is not packed: the
  server must have it installed), and its ``requirements*.txt``; with a ``command``
  node, the files of its folder as for a Python file (the command may run any);
- a Python file (``flows.py:Train``): the ``.py`` files and packages of the file's folder,
  and their small text files (``.yaml .yml .txt .toml .json .cfg``), without hidden
  folders, ``__pycache__``, virtualenvs, ``data`` folders and the job's data folder;
- a dotted module (``pkg.flows:Train``): the folder of the top-level package it is in
  (the folder of the module, for a module outside a package), found as Python finds it
  from here; an installed one is refused (install it on the server instead).

The archive is deterministic (names sorted, times, owners and modes zeroed), so the
same files give the same sha256, which names the bundle: uploading it twice stores it
once.

Server side, :func:`store_bundle` checks an upload (a tar.gz of regular files and
folders only, no absolute path or ``..``, at most :data:`MAX_UNPACKED_BYTES` unpacked)
and keeps it in the run record; :func:`bundle_dir` unpacks it once per
``$DAGMILL_HOME`` into ``$DAGMILL_HOME/bundles/<sha256>/`` (to a temporary folder, then
renamed: a half-unpacked bundle is never seen), so any server of the database can run
the jobs built from it. A job (and each of its runs' targets) records the bundle and a
ref relative to its root; :func:`loadable` turns that into the path to load.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from dagmill import settings
from dagmill.errors import DefinitionError
from dagmill.model.runs import RunTarget
from dagmill.store import Store, open_store

__all__ = [
    "MAX_PACKED_BYTES",
    "MAX_UNPACKED_BYTES",
    "Bundle",
    "BundleError",
    "BundleTooLarge",
    "bundle_dir",
    "bundle_folder",
    "bundle_ref",
    "check_bundle",
    "check_inner_ref",
    "default_data_dir",
    "forget_bundle",
    "importing",
    "loadable",
    "pack",
    "store_bundle",
]

# the files a bundle takes at most (before compression): code, not data
MAX_PACKED_BYTES = 32 * 2**20
# what a server unpacks at most from one upload (and how many entries)
MAX_UNPACKED_BYTES = 256 * 2**20
MAX_ENTRIES = 20_000
_KEEP = {".py", ".yaml", ".yml", ".txt", ".toml", ".json", ".cfg"}
_SKIP_DIRS = {"__pycache__", "venv", "env", "node_modules", "data", "site-packages"}


class BundleError(DefinitionError):
    """A bundle that cannot be made, or an upload that is not a bundle this server takes."""


class BundleTooLarge(BundleError):
    """More than a bundle may hold."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A packed job: the tar.gz, its sha256 (the bundle's id on a server), the ref to
    build inside it (``pipeline.yaml``, ``flows.py:Train``, ``pkg.flows:Train``), and
    the files it holds (relative to its root, sorted)."""

    content: bytes
    sha256: str
    ref: str
    files: tuple[str, ...]


# -- packing (the client) ----------------------------------------------------------------


def pack(ref: str, data: str | None = None, max_bytes: int = MAX_PACKED_BYTES) -> Bundle:
    """The bundle of what the job ``ref`` needs (see the module's docstring); ``data`` is
    the job's data folder, never packed. More than ``max_bytes`` of files is refused,
    naming the biggest."""
    from dagmill.services.pipelines import is_pipeline_file

    data_dir = os.path.abspath(data) if data else None
    if is_pipeline_file(ref):
        root, files, inner = _pipeline_files(ref, data)
    else:
        module, sep, name = ref.rpartition(":")
        if not sep or not module or not name:
            raise BundleError(
                f"{ref!r}: expected MODULE:TASK (flows.py:Train, my_pkg.flows:Train) or a "
                "pipeline file"
            )
        if module.endswith(".py") or os.sep in module:
            path = os.path.abspath(module)
            if not os.path.isfile(path):
                raise BundleError(f"{module}: no such file")
            root = os.path.dirname(path)
            files = _folder_files(root, data_dir)
            inner = f"{os.path.relpath(path, root)}:{name}"
        else:
            root, folder = _module_folder(module)
            files = _folder_files(folder, data_dir)
            inner = ref
    return _archive(root, files, inner, max_bytes)


def _pipeline_files(ref: str, data: str | None) -> tuple[str, list[str], str]:
    """(root, files, ref inside) of a pipeline file: as the pipeline resolves its
    processors (beside the file), so the server finds them where they were found here."""
    from dagmill.services.pipelines import validate

    compiled = validate(ref, data)
    file = compiled.file
    root = os.path.dirname(file)
    files = {file}
    for path, _ in compiled.files:
        if not path.startswith(root + os.sep):
            continue  # an installed module: the server's environment has it (or not)
        files.add(path)
        parent = os.path.dirname(path)
        while parent != root:  # a dotted processor: its packages' __init__.py
            init = os.path.join(parent, "__init__.py")
            if os.path.isfile(init):
                files.add(init)
            parent = os.path.dirname(parent)
    for entry in os.listdir(root):
        if entry.startswith("requirements") and entry.endswith(".txt"):
            files.add(os.path.join(root, entry))
    if any(node.command is not None for node in compiled.spec.processNodes.values()):
        # a command runs in the file's folder and may run any script of it
        files.update(_folder_files(root, os.path.abspath(data) if data else None))
    return root, sorted(files), os.path.basename(file)


def _module_folder(module: str) -> tuple[str, str]:
    """(root, folder to pack) of the dotted module ``module``, found as ``load_task`` finds
    it (the current folder first)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as e:
        raise BundleError(f"{module}: cannot find it ({e})") from None
    if spec is not None and spec.submodule_search_locations:  # a package
        folder = next(iter(spec.submodule_search_locations))
        root = os.path.dirname(folder)
    elif spec is not None and spec.origin and spec.origin.endswith(".py"):
        folder = root = os.path.dirname(spec.origin)
    else:
        raise BundleError(
            f"{module}: no such module here (run from the folder it is in, or give its "
            "file: path/to/flows.py:Task)"
        )
    if _installed(folder):
        raise BundleError(
            f"{top} is installed ({folder}), not code of yours to upload: install it on the "
            "server, or give the file of your task (path/to/flows.py:Task)"
        )
    return root, folder


def _installed(folder: str) -> bool:
    parts = set(os.path.abspath(folder).split(os.sep))
    if parts & {"site-packages", "dist-packages"}:
        return True
    stdlib = os.path.dirname(os.__file__)
    return os.path.abspath(folder).startswith(stdlib + os.sep) or folder == stdlib


def _folder_files(folder: str, data_dir: str | None) -> list[str]:
    """The code and small text files under ``folder`` (see the module's docstring)."""
    out: list[str] = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not d.endswith(".egg-info")
            and os.path.join(here, d) != data_dir
            and not os.path.isfile(os.path.join(here, d, "pyvenv.cfg"))  # a virtualenv
        )
        for name in names:
            path = os.path.join(here, name)
            if (
                not name.startswith(".")
                and os.path.splitext(name)[1] in _KEEP
                and os.path.isfile(path)
                and not os.path.islink(path)
            ):
                out.append(path)
    return sorted(out)


def _archive(root: str, files: list[str], ref: str, max_bytes: int) -> Bundle:
    sizes = {f: os.path.getsize(f) for f in files}
    total = sum(sizes.values())
    if total > max_bytes:
        biggest = sorted(sizes, key=lambda f: -sizes[f])[:5]
        named = ", ".join(f"{os.path.relpath(f, root)} ({_mib(sizes[f])})" for f in biggest)
        raise BundleTooLarge(
            f"the files of {ref} in {root} take {_mib(total)}, over the {_mib(max_bytes)} a "
            f"bundle takes; the biggest: {named}. Move data out of the folder (or into a "
            "data/ folder, never packed) and keep the code there"
        )
    names = sorted(PurePosixPath(*os.path.relpath(f, root).split(os.sep)).as_posix() for f in files)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            with open(os.path.join(root, *name.split("/")), "rb") as f:
                body = f.read()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(body))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    content = out.getvalue()
    return Bundle(content, hashlib.sha256(content).hexdigest(), ref, tuple(names))


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- the server ----------------------------------------------------------------------------


def _safe_name(name: str) -> str:
    """A member's name as a relative POSIX path, or BundleError."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or (path.parts and ":" in path.parts[0]):
        raise BundleError(f"the bundle holds {name!r}, an absolute path: paths must be relative")
    if ".." in path.parts or "\\" in name:
        raise BundleError(f"the bundle holds {name!r}: a path may not contain '..' or '\\'")
    return path.as_posix()


def _checked(tar: tarfile.TarFile, max_unpacked: int) -> list[tuple[str, tarfile.TarInfo]]:
    """The members of ``tar`` (safe names), if it is a bundle this server takes."""
    entries: list[tuple[str, tarfile.TarInfo]] = []
    files: set[str] = set()
    folders: set[str] = set()
    total = 0
    for member in tar:
        name = _safe_name(member.name)
        if not (member.isfile() or member.isdir()):
            raise BundleError(
                f"the bundle holds {member.name!r}, a link or special file: a bundle holds "
                "regular files and folders only"
            )
        total += member.size
        if total > max_unpacked or len(entries) >= MAX_ENTRIES:
            raise BundleTooLarge(
                f"the bundle unpacks to more than {_mib(max_unpacked)} or {MAX_ENTRIES} "
                "files: bundles hold code, not data"
            )
        if name in (".", ""):
            continue
        parents = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
        if parents & files or (member.isfile() and name in folders | files):
            raise BundleError(f"the bundle holds {name!r} twice, or as a file and a folder")
        folders |= parents | ({name} if member.isdir() else set())
        if member.isfile():
            files.add(name)
        entries.append((name, member))
    return entries


_NOT_TAR = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def check_bundle(content: bytes, max_unpacked: int = MAX_UNPACKED_BYTES) -> str:
    """Check that ``content`` is a bundle this server takes (see the module's docstring);
    its sha256. Raises BundleError (BundleTooLarge) saying what is wrong."""
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            _checked(tar, max_unpacked)
    except _NOT_TAR as e:
        raise BundleError(f"the bundle is not a tar.gz file ({e})") from None
    return hashlib.sha256(content).hexdigest()


def store_bundle(content: bytes, max_unpacked: int = MAX_UNPACKED_BYTES) -> str:
    """Check and keep an uploaded bundle (once: the same bytes are the same bundle); its
    id, the sha256 of ``content``."""
    bundle_id = check_bundle(content, max_unpacked)
    with open_store() as store:
        store.save_bundle(bundle_id, content, time.time())
    return bundle_id


def _bundles_home() -> str:
    return os.path.join(os.path.abspath(settings.home()), "bundles")


def bundle_folder(bundle_id: str) -> str:
    """Where this ``$DAGMILL_HOME`` has (or will have) the bundle unpacked."""
    if not bundle_id.isalnum():  # a sha256 in hex: nothing else goes into a path
        raise BundleError(f"{bundle_id!r} is not a bundle id")
    return os.path.join(_bundles_home(), bundle_id)


def bundle_dir(store: Store | None, bundle_id: str) -> str:
    """The folder the bundle is unpacked in (unpacked now, from the run record, if this
    ``$DAGMILL_HOME`` has not unpacked it yet)."""
    folder = bundle_folder(bundle_id)
    if os.path.isdir(folder):
        return folder
    if store is None:
        with open_store() as own:
            content = own.bundle_content(bundle_id)
    else:
        content = store.bundle_content(bundle_id)
    if content is None:
        raise BundleError(f"no bundle {bundle_id} in the run record (deleted with its jobs?)")
    if hashlib.sha256(content).hexdigest() != bundle_id:
        raise BundleError(f"bundle {bundle_id}: its stored content does not match its sha256")
    os.makedirs(_bundles_home(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{bundle_id[:16]}-", dir=_bundles_home())
    try:
        _unpack(content, tmp, bundle_id)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.isdir(folder):  # not another process unpacking it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _unpack(content: bytes, into: str, bundle_id: str) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            for name, member in _checked(tar, MAX_UNPACKED_BYTES):
                path = os.path.join(into, *name.split("/"))
                if member.isdir():
                    os.makedirs(path, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with open(path, "wb") as out:
                    shutil.copyfileobj(source, out)
    except OSError as e:  # a file and a folder of one name, say
        raise BundleError(f"bundle {bundle_id} cannot be unpacked: {e}") from None


def forget_bundle(bundle_id: str) -> None:
    """Delete a bundle no job is built from any more, and its unpacked folder here."""
    with open_store() as store:
        if not store.delete_unused_bundle(bundle_id):
            return
    shutil.rmtree(os.path.join(_bundles_home(), bundle_id), ignore_errors=True)


def check_inner_ref(ref: str) -> None:
    """A ref inside a bundle must be relative and stay inside it."""
    module = ref.rpartition(":")[0] or ref
    if os.path.isabs(module) or ".." in PurePosixPath(module).parts:
        raise BundleError(
            f"{ref!r}: a target inside a bundle is relative to its root (pipeline.yaml, "
            "flows.py:Train, pkg.flows:Train), without '..'"
        )


def bundle_ref(folder: str, ref: str) -> str:
    """``ref`` (relative to a bundle's root) as loaded from ``folder``, where the bundle is
    unpacked: a path made absolute; for a dotted module, ``folder`` goes first on
    ``sys.path`` (and the package's modules loaded from elsewhere are forgotten)."""
    from dagmill.services.pipelines import is_pipeline_file

    check_inner_ref(ref)
    with _IMPORTS:
        _forget_other_bundles(folder)
        if is_pipeline_file(ref):
            return os.path.join(folder, ref)
        module, _, name = ref.rpartition(":")
        if module.endswith(".py") or "/" in module:
            return f"{os.path.join(folder, module)}:{name}"
        top = module.split(".")[0]
        for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            origin = getattr(sys.modules[loaded], "__file__", None) or ""
            if not origin.startswith(folder + os.sep):
                del sys.modules[loaded]
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
        return ref


# held while this process changes sys.path / sys.modules for a bundle and imports its
# modules: an API server validates bundles in several threads at once
_IMPORTS = threading.RLock()


def importing() -> threading.RLock:
    """The lock to hold around loading a bundle's target and importing its modules."""
    return _IMPORTS


def _forget_other_bundles(folder: str) -> None:
    """Forget the modules this process loaded from other bundles, and their folders on
    ``sys.path``: a server validates many bundles, whose modules share names
    (``flows``, ``helpers``) but not code; a second bundle must not import the first's."""
    home = _bundles_home() + os.sep
    inside = folder + os.sep
    sys.path[:] = [p for p in sys.path if not p.startswith(home) or (p + os.sep).startswith(inside)]
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(home) and not origin.startswith(inside):
            del sys.modules[name]


def loadable(target: RunTarget, store: Store | None = None) -> RunTarget:
    """``target`` with its ref as this process loads it: inside the unpacked bundle, for a
    target built from one (unpacked now if need be); any other target as it is."""
    if target.bundle is None:
        return target
    folder = bundle_dir(store, target.bundle)
    return dataclasses.replace(target, ref=bundle_ref(folder, target.ref), bundle=None)


def default_data_dir(project: str, name: str) -> str:
    """Where an uploaded job writes when its build gives no data folder:
    ``$DAGMILL_HOME/data/<project>/<job name>`` on the server."""
    folder = name.replace("/", "_").replace(os.sep, "_").strip() or "_"
    return os.path.join(
        os.path.abspath(settings.home()), "data", project, "_" if folder == ".." else folder
    )
