"""emit: refusals that protect the user's files, atomic outputs, stale temporaries, SOURCE_DATE_EPOCH."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import resource
import signal
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.emit import MARKER
from poetry_plugin_lambda.emit import check_outputs
from poetry_plugin_lambda.emit import source_epoch
from poetry_plugin_lambda.emit import write_target_dir
from poetry_plugin_lambda.emit import write_zip
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.wheels import read_wheel
from tests.fixtures.wheelfactory import build_wheel

DOS_1980 = 315532800
BLOB = random.Random(7).randbytes(2_000_000)


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under `root` with its mode and (for files) its bytes."""
    result: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        result[path.relative_to(root).as_posix()] = (st.st_mode, data)
    return result


def entries_of(tmp_path: Path, *, big: bool = False) -> list[Entry]:
    wheels = tmp_path / "wheels"
    files: dict[str, bytes | str] = {"app/__init__.py": "", "app/handler.py": "def handler(e, c):\n    return 1\n"}
    if big:
        files["app/blob.bin"] = BLOB
    a = build_wheel(wheels, "app", "1.0", files=files, executable=["app/handler.py"])
    b = build_wheel(wheels, "lib", "2.0", files={"lib/__init__.py": "L = 1\n"}, data_purelib={"lib_extra.py": "E = 1\n"})
    return assemble([read_wheel(a), read_wheel(b)])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a file in it; HOME and cwd moved to folders of their own."""
    root = (tmp_path / "work" / "project").resolve()
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.poetry]\n")
    home = (tmp_path / "home").resolve()
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n")
    monkeypatch.setenv("HOME", str(home))
    cwd = (tmp_path / "cwd").resolve()
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(cwd)
    return root


# -- check_outputs -----------------------------------------------------------------------------


def _refused(tmp_path: Path, output: Path, target_dir: Path, project: Path, *needles: str) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(OutputError) as caught:
        check_outputs(output, target_dir, project)
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)
    assert snapshot(tmp_path) == before


def test_target_dir_that_is_the_project_root(tmp_path: Path, project: Path) -> None:
    _refused(tmp_path, project / "dist" / "fn.zip", project, project, "Refusing to use", str(project))


def test_target_dir_that_is_home(tmp_path: Path, project: Path) -> None:
    home = Path.home().resolve()
    _refused(tmp_path, project / "fn.zip", home, project, "Refusing to use")


def test_target_dir_that_is_the_cwd(tmp_path: Path, project: Path) -> None:
    _refused(tmp_path, project / "fn.zip", Path.cwd().resolve(), project, "Refusing to use")


@pytest.mark.parametrize("levels", [1, 2])
def test_target_dir_that_is_a_parent_of_the_project(tmp_path: Path, project: Path, levels: int) -> None:
    parent = project.parents[levels - 1]
    _refused(tmp_path, project / "fn.zip", parent, project, "Refusing to use")


def test_target_dir_that_is_the_root_folder(tmp_path: Path, project: Path) -> None:
    _refused(tmp_path, project / "fn.zip", Path("/"), project, "Refusing to use")


def test_non_empty_folder_without_marker(tmp_path: Path, project: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    _refused(tmp_path, project / "fn.zip", mine, project, "Refusing to replace", str(mine))
    # a hidden file is content too
    (mine / "precious.txt").unlink()
    (mine / ".hidden").write_text("keep me")
    _refused(tmp_path, project / "fn.zip", mine, project, "Refusing to replace")


def test_marker_that_is_a_folder_does_not_count(tmp_path: Path, project: Path) -> None:
    mine = tmp_path / "mine"
    (mine / MARKER).mkdir(parents=True)
    _refused(tmp_path, project / "fn.zip", mine, project, "Refusing to replace")


def test_target_dir_that_is_a_file(tmp_path: Path, project: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    _refused(tmp_path, project / "fn.zip", file, project, "is not a folder")


@pytest.mark.parametrize("where", ["inside", "same", "deep"])
def test_output_inside_the_target_dir(tmp_path: Path, project: Path, where: str) -> None:
    target = project / "build" / "lambda"
    output = {"inside": target / "fn.zip", "same": target, "deep": target / "a" / "b" / "fn.zip"}[where]
    _refused(tmp_path, output, target, project, "must not be inside the target dir")


@pytest.mark.parametrize("content", [b"not a zip", b"", b"PK", b"\x7fELF" + bytes(100)])
def test_output_that_exists_and_is_not_a_zip(tmp_path: Path, project: Path, content: bytes) -> None:
    output = project / "fn.zip"
    output.write_bytes(content)
    _refused(tmp_path, output, project / "build" / "t", project, "Refusing to overwrite", "not a ZIP")


def test_output_that_is_a_folder(tmp_path: Path, project: Path) -> None:
    output = project / "fn.zip"
    (output / "x").mkdir(parents=True)
    _refused(tmp_path, output, project / "build" / "t", project, "is a folder")


def test_accepted_outputs_touch_nothing(tmp_path: Path, project: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARKER).write_text("ours\n")
    (ours / "old.py").write_text("old\n")
    old_zip = project / "old.zip"
    with zipfile.ZipFile(old_zip, "w") as zf:
        zf.writestr("a.py", "A")
    empty_zip = project / "empty.zip"
    zipfile.ZipFile(empty_zip, "w").close()
    assert empty_zip.read_bytes()[:4] == b"PK\x05\x06"
    before = snapshot(tmp_path)
    check_outputs(project / "dist" / "fn.zip", empty, project)  # an empty existing folder
    check_outputs(old_zip, ours, project)  # a folder with our marker, an existing ZIP
    check_outputs(empty_zip, project / "build" / "new", project)  # an empty ZIP, a new folder
    check_outputs(project / "fn.zip", project / "build" / "lambda", project)  # inside the project
    assert snapshot(tmp_path) == before


# -- writing both outputs ----------------------------------------------------------------------


def _zip_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


def _dir_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != MARKER
    }


def test_zip_and_target_dir_hold_the_same_files(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "out" / "target"
    output = tmp_path / "out" / "fn.zip"
    write_target_dir(entries, target)
    result = write_zip(entries, output, DOS_1980)
    files = _zip_files(output)
    assert files == _dir_files(target)
    assert list(files) == sorted(files) == [e.path for e in entries]
    assert (target / MARKER).is_file()
    assert result.path == output
    assert result.size == output.stat().st_size
    assert result.sha256 == hashlib.sha256(output.read_bytes()).digest()
    assert output.stat().st_mode & 0o777 == 0o644
    assert (target / "app" / "handler.py").stat().st_mode & 0o777 == 0o755
    assert (target / "lib" / "__init__.py").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".target.manifest.json", "fn.zip", "target"]


def test_outputs_are_reproducible_and_replaced(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    output = tmp_path / "fn.zip"
    write_target_dir(entries, target)
    first = write_zip(entries, output, DOS_1980)
    (target / "stale.py").write_text("left from an older bundle\n")
    write_target_dir(entries, target)
    second = write_zip(entries, output, DOS_1980)
    assert first.sha256 == second.sha256
    assert not (target / "stale.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".target.manifest.json", "fn.zip", "target", "wheels"]


def test_files_edited_in_the_target_dir_are_rewritten(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    write_target_dir(entries, target)
    expected = _dir_files(target)
    (target / "app" / "handler.py").write_text("edited by hand\n")
    (target / "lib" / "__init__.py").unlink()
    (target / "lib-2.0.dist-info" / "RECORD").write_text("")
    write_target_dir(entries, target)
    assert _dir_files(target) == expected
    assert (target / "app" / "handler.py").stat().st_mode & 0o777 == 0o755


def test_mode_changed_in_the_target_dir_is_normalised(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    write_target_dir(entries, target)
    (target / "app" / "__init__.py").chmod(0o600)
    (target / "app" / "handler.py").chmod(0o644)
    write_target_dir(entries, target)
    assert (target / "app" / "__init__.py").stat().st_mode & 0o777 == 0o644
    assert (target / "app" / "handler.py").stat().st_mode & 0o777 == 0o755


def test_same_size_edit_with_restored_mtime_is_rewritten(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    write_target_dir(entries, target)
    expected = _dir_files(target)
    handler = target / "app" / "handler.py"
    st = handler.stat()
    handler.write_bytes(b"X" * st.st_size)
    os.utime(handler, ns=(st.st_atime_ns, st.st_mtime_ns))
    write_target_dir(entries, target)
    assert _dir_files(target) == expected


def test_empty_existing_target_dir_is_used(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    write_target_dir(entries_of(tmp_path), target)
    assert (target / MARKER).is_file() and (target / "app" / "__init__.py").is_file()


def _chmod_blocks_writes(folder: Path) -> bool:
    folder.chmod(0o555)
    return not os.access(folder, os.W_OK)


def test_zip_into_a_read_only_folder(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    folder = tmp_path / "ro"
    folder.mkdir()
    output = folder / "fn.zip"
    write_zip(entries, output, DOS_1980)
    before = output.read_bytes()
    try:
        if not _chmod_blocks_writes(folder):
            pytest.skip("running as root: chmod does not stop writes (see the ENOTDIR test)")
        with pytest.raises(OutputError) as caught:
            write_zip(entries, output, DOS_1980 + 2)
        assert str(output) in str(caught.value)
        assert "Traceback" not in str(caught.value)
    finally:
        folder.chmod(0o755)
    assert output.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["fn.zip"]


def test_zip_under_a_file_is_an_output_error(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    somefile = tmp_path / "somefile"
    somefile.write_text("a file, not a folder\n")
    output = somefile / "out.zip"
    with pytest.raises(OutputError) as caught:
        write_zip(entries, output, DOS_1980)
    assert str(output) in str(caught.value)
    with pytest.raises(OutputError):
        write_target_dir(entries, somefile / "target")
    assert somefile.read_text() == "a file, not a folder\n"


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past `limit` bytes fail with EFBIG (works for root, unlike chmod)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_failed_zip_write_keeps_the_previous_zip_and_leaves_no_temporary(tmp_path: Path) -> None:
    small = entries_of(tmp_path / "small")
    big = entries_of(tmp_path / "big", big=True)
    folder = tmp_path / "dist"
    output = folder / "fn.zip"
    write_zip(small, output, DOS_1980)
    before = output.read_bytes()
    with file_size_limit(1_000_000), pytest.raises(OutputError) as caught:
        write_zip(big, output, DOS_1980)
    assert "File too large" in str(caught.value)
    assert output.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["fn.zip"]


def test_failed_target_dir_write_keeps_the_previous_one(tmp_path: Path) -> None:
    small = entries_of(tmp_path / "small")
    big = entries_of(tmp_path / "big", big=True)
    parent = tmp_path / "build"
    target = parent / "target"
    write_target_dir(small, target)
    before = snapshot(target)
    with file_size_limit(1_000_000), pytest.raises(OutputError):
        write_target_dir(big, target)
    assert snapshot(target) == before
    assert sorted(p.name for p in parent.iterdir()) == ["target"]


# -- temporaries left by dead runs ---------------------------------------------------------------


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """What a live run does: an exclusive flock on its temporary for as long as it runs."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_stale_zip_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    folder = tmp_path / "dist"
    folder.mkdir()
    dead = folder / ".fn.zip.tmp-dead1234"
    dead.write_bytes(b"PK\x03\x04 half a zip")
    dead_dir = folder / ".fn.zip.tmp-deaddir"
    (dead_dir / "sub").mkdir(parents=True)
    live = folder / ".fn.zip.tmp-live5678"
    live.write_bytes(b"PK\x03\x04 being written")
    other = folder / ".other.zip.tmp-dead"
    other.write_bytes(b"not ours to judge")
    unrelated = folder / "fn.zip.tmp-notours"
    unrelated.write_bytes(b"no leading dot")
    with held(live):
        write_zip(entries, folder / "fn.zip", DOS_1980)
        assert live.read_bytes() == b"PK\x03\x04 being written"
    assert not dead.exists()
    assert not dead_dir.exists()
    assert other.exists() and unrelated.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["fn.zip", live.name, other.name, unrelated.name]
    )
    # once the live run is gone (lock released), the next write cleans it too
    write_zip(entries, folder / "fn.zip", DOS_1980)
    assert not live.exists()


def test_stale_target_dir_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    parent = tmp_path / "build"
    dead = parent / ".target.tmp-dead"
    (dead / "pkg").mkdir(parents=True)
    (dead / "pkg" / "mod.py").write_text("half\n")
    (dead / MARKER).write_text("x")
    live = parent / ".target.tmp-live"
    live.mkdir()
    (live / "mod.py").write_text("being written\n")
    with held(live):
        write_target_dir(entries, parent / "target")
        assert (live / "mod.py").read_text() == "being written\n"
    assert not dead.exists()
    assert sorted(p.name for p in parent.iterdir()) == sorted([".target.manifest.json", "target", live.name])
    write_target_dir(entries, parent / "target")
    assert sorted(p.name for p in parent.iterdir()) == [".target.manifest.json", "target"]


def test_symlinks_named_like_temporaries_never_lead_to_deleting_their_targets(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "sub" / "data.txt").write_text("keep\n")
    (precious / "file.txt").write_text("keep too\n")
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / ".fn.zip.tmp-dirlink").symlink_to(precious, target_is_directory=True)
    (folder / ".fn.zip.tmp-filelink").symlink_to(precious / "file.txt")
    (folder / ".target.tmp-dirlink").symlink_to(precious, target_is_directory=True)
    before = snapshot(precious)
    write_zip(entries, folder / "fn.zip", DOS_1980)
    write_target_dir(entries, folder / "target")
    assert snapshot(precious) == before


# -- SOURCE_DATE_EPOCH ---------------------------------------------------------------------------


def test_source_epoch_unset_or_empty_is_1980() -> None:
    assert source_epoch({}) == DOS_1980
    assert source_epoch({"SOURCE_DATE_EPOCH": ""}) == DOS_1980


@pytest.mark.parametrize("value", ["0", "1", "-86400", str(DOS_1980 - 1)])
def test_source_epoch_before_1980_is_clamped(value: str) -> None:
    assert source_epoch({"SOURCE_DATE_EPOCH": value}) == DOS_1980


@pytest.mark.parametrize("value", [str(DOS_1980), "1700000000", "4102444800"])
def test_source_epoch_is_used(value: str) -> None:
    assert source_epoch({"SOURCE_DATE_EPOCH": value}) == int(value)


@pytest.mark.parametrize("value", ["yesterday", "1.5", "0x10", "1e9", "17OO"])
def test_source_epoch_bad_value(value: str) -> None:
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH must be an integer") as caught:
        source_epoch({"SOURCE_DATE_EPOCH": value})
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, BundleError)


def test_source_epoch_sets_every_timestamp(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    epoch = source_epoch({"SOURCE_DATE_EPOCH": "1700000000"})  # 2023-11-14 22:13:20 UTC
    write_zip(entries, tmp_path / "fn.zip", epoch)
    with zipfile.ZipFile(tmp_path / "fn.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    write_zip(entries, tmp_path / "old.zip", source_epoch({"SOURCE_DATE_EPOCH": "5"}))
    with zipfile.ZipFile(tmp_path / "old.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
