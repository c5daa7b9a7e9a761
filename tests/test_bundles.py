"""Bundles: what ``pack`` takes of a job's folder (and leaves), that the same files give the
same bytes, that a server takes only safe archives, and unpacks each once per home."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
from pathlib import Path

import pytest

from dagmill.errors import DefinitionError
from dagmill.model.runs import RunTarget
from dagmill.services.bundles import (
    BundleError,
    BundleTooLarge,
    bundle_dir,
    check_bundle,
    loadable,
    pack,
    store_bundle,
)

FLOWS = textwrap.dedent("""\
    import dagmill
    from helpers_mod import double


    class Twice(dagmill.tasks.TaskJson):
        n = dagmill.IntParameter(default=2)

        def run(self):
            self.save({"value": double(self.n)})
    """)

PIPELINE = textwrap.dedent("""\
    dataNodes:
      out:
        source: out.txt
    processNodes:
      write:
        output: [out]
        processor: steps.write
    """)

WRITE = textwrap.dedent("""\
    from dagmill import processor

    _, outputs = processor.fetch_datanodes_information()
    with open(outputs[0], "w") as f:
        f.write("written\\n")
    """)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _project(root: Path) -> Path:
    """A task's folder with its module, a package, and things a bundle must leave out."""
    _write(root / "flows.py", FLOWS)
    _write(root / "helpers_mod.py", "def double(n):\n    return 2 * n\n")
    _write(root / "lib/__init__.py", "")
    _write(root / "lib/conf.yaml", "a: 1\n")
    _write(root / "settings.toml", "x = 1\n")
    _write(root / "model.bin", "weights")
    _write(root / "notes.md", "# notes")
    _write(root / ".git/config.py", "hidden")
    _write(root / ".hidden.py", "hidden")
    _write(root / "__pycache__/flows.cpython.py", "cache")
    _write(root / ".venv/lib/x.py", "venv")
    _write(root / "myenv/pyvenv.cfg", "home = /usr")
    _write(root / "myenv/lib/y.py", "venv")
    _write(root / "data/table.json", "{}")
    _write(root / "out/result.json", "{}")
    return root


def test_pack_takes_the_code_and_leaves_data_caches_and_virtualenvs(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    bundle = pack(f"{root}/flows.py:Twice", data=str(root / "out"))
    assert bundle.ref == "flows.py:Twice"
    assert bundle.files == (
        "flows.py",
        "helpers_mod.py",
        "lib/__init__.py",
        "lib/conf.yaml",
        "settings.toml",
    )
    with tarfile.open(fileobj=io.BytesIO(bundle.content), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == list(bundle.files)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}


def test_the_same_files_give_the_same_bundle(tmp_path: Path) -> None:
    first = pack(f"{_project(tmp_path / 'a')}/flows.py:Twice")
    again = pack(f"{tmp_path / 'a'}/flows.py:Twice")
    elsewhere = _project(tmp_path / "somewhere" / "else")
    os.utime(elsewhere / "flows.py", (1_000_000, 1_000_000))
    os.chmod(elsewhere / "helpers_mod.py", 0o755)
    moved = pack(f"{elsewhere}/flows.py:Twice")
    assert first.content == again.content == moved.content
    assert first.sha256 == moved.sha256
    (elsewhere / "helpers_mod.py").write_text("def double(n):\n    return n + n\n")
    assert pack(f"{elsewhere}/flows.py:Twice").sha256 != first.sha256


def test_a_pipeline_takes_its_file_its_processors_and_requirements(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _write(root / "pipeline.yaml", PIPELINE)
    _write(root / "steps/__init__.py", "")
    _write(root / "steps/write.py", WRITE)
    _write(root / "requirements.txt", "six==1.16.0\n")
    _write(root / "unrelated.py", "print('not a processor')\n")
    bundle = pack(str(root / "pipeline.yaml"))
    assert bundle.ref == "pipeline.yaml"
    assert bundle.files == (
        "pipeline.yaml",
        "requirements.txt",
        "steps/__init__.py",
        "steps/write.py",
    )


def test_a_pipeline_with_a_command_takes_the_scripts_of_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _write(root / "pipeline.yaml", "processNodes:\n  prep:\n    command: python prep.py\n")
    _write(root / "prep.py", "print('prepared')\n")
    _write(root / "data/big.csv", "a,b\n")
    _write(root / "weights.bin", "...")
    assert pack(str(root / "pipeline.yaml")).files == ("pipeline.yaml", "prep.py")


def test_a_broken_pipeline_is_not_packed(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    _write(root / "pipeline.yaml", PIPELINE.replace("steps.write", "missing"))
    with pytest.raises(DefinitionError, match="processor module 'missing' not found"):
        pack(str(root / "pipeline.yaml"))


def test_a_dotted_module_packs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "ws/mypkg_bundled/__init__.py", "")
    _write(tmp_path / "ws/mypkg_bundled/flows.py", FLOWS.replace("helpers_mod", ".helpers"))
    _write(tmp_path / "ws/mypkg_bundled/helpers.py", "def double(n):\n    return 2 * n\n")
    _write(tmp_path / "ws/other.py", "not in the package\n")
    monkeypatch.chdir(tmp_path / "ws")
    bundle = pack("mypkg_bundled.flows:Twice")
    assert bundle.ref == "mypkg_bundled.flows:Twice"
    assert bundle.files == (
        "mypkg_bundled/__init__.py",
        "mypkg_bundled/flows.py",
        "mypkg_bundled/helpers.py",
    )
    with pytest.raises(BundleError, match="installed"):
        pack("pydantic.main:BaseModel")
    with pytest.raises(BundleError, match="no such module"):
        pack("no_such_module_here.flows:Task")


def test_too_many_bytes_are_refused_naming_the_biggest_files(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    _write(root / "big_table.json", "x" * 50_000)
    with pytest.raises(BundleTooLarge, match=r"the biggest: big_table\.json \(0\.0 MiB\)"):
        pack(f"{root}/flows.py:Twice", max_bytes=40_000)


# -- the server's side ---------------------------------------------------------------------
def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return out.getvalue()


def _file(name: str, body: bytes = b"x = 1\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), body


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("../evil.py")], "may not contain '..'"),
        ([_file("ok/../../evil.py")], "may not contain '..'"),
        ([_file("/etc/evil.py")], "absolute path"),
        ([_link("link.py", "/etc/passwd", tarfile.SYMTYPE)], "link or special file"),
        ([_file("a.py"), _link("b.py", "a.py", tarfile.LNKTYPE)], "link or special file"),
        ([_link("dev", "", tarfile.CHRTYPE)], "link or special file"),
        ([_file("a.py"), _file("a.py/b.py")], "as a file and a folder"),
        ([_file("a.py"), _file("a.py")], "twice"),
    ],
)
def test_unsafe_archives_are_refused(
    members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        check_bundle(_tar(*members))


def test_what_is_not_a_tar_gz_or_unpacks_too_big_is_refused() -> None:
    with pytest.raises(BundleError, match=r"not a tar\.gz"):
        check_bundle(b"PK\x03\x04 a zip file")
    bomb = _tar(_file("big.txt", b"\0" * 2_000_000))
    assert len(bomb) < 10_000
    with pytest.raises(BundleTooLarge, match="unpacks to more than"):
        check_bundle(bomb, max_unpacked=1_000_000)


def test_a_bundle_is_stored_once_and_unpacked_once_per_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagmill.store import database_url

    bundle = pack(f"{_project(tmp_path / 'proj')}/flows.py:Twice")
    bundle_id = store_bundle(bundle.content)
    assert bundle_id == bundle.sha256 == store_bundle(bundle.content)
    folder = bundle_dir(None, bundle_id)
    assert folder == os.path.join(os.environ["DAGMILL_HOME"], "bundles", bundle_id)

    def files(folder: str) -> list[str]:
        return sorted(
            os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
        )

    assert files(folder) == list(bundle.files)
    assert os.listdir(os.path.dirname(folder)) == [bundle_id]  # no temporary folder left
    (Path(folder) / "flows.py").write_text("# unpacked once: not unpacked again\n")
    assert bundle_dir(None, bundle_id) == folder
    assert (Path(folder) / "flows.py").read_text().startswith("# unpacked once")

    # another server of the same database, with its own home: unpacked from the record
    monkeypatch.setenv("DAGMILL_DATABASE_URL", database_url())
    monkeypatch.setenv("DAGMILL_HOME", str(tmp_path / "other-home"))
    other = bundle_dir(None, bundle_id)
    assert other == str(tmp_path / "other-home" / "bundles" / bundle_id)
    assert files(other) == list(bundle.files)
    with pytest.raises(BundleError, match="no bundle 0123abcd"):
        bundle_dir(None, "0123abcd")


def test_a_target_built_from_a_bundle_loads_from_its_folder(tmp_path: Path) -> None:
    bundle = pack(f"{_project(tmp_path / 'proj')}/flows.py:Twice")
    bundle_id = store_bundle(bundle.content)
    target = RunTarget("python", bundle.ref, {"n": "3"}, str(tmp_path / "d"), bundle=bundle_id)
    assert RunTarget.from_json(target.to_json()) == target
    loaded = loadable(target)
    assert loaded.bundle is None
    assert loaded.ref == f"{bundle_dir(None, bundle_id)}/flows.py:Twice"
    with pytest.raises(BundleError, match="relative to its root"):
        loadable(RunTarget("python", "../flows.py:Twice", bundle=bundle_id))
