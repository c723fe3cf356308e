"""emit: refusals that protect the user's files; both outputs staged then committed, or neither."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import random
import shutil
import signal
import stat
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.atomic import discard_unfinished
from poetry_plugin_lambda.emit import _RUN_LIMIT
from poetry_plugin_lambda.emit import MARKER
from poetry_plugin_lambda.emit import ZipResult
from poetry_plugin_lambda.emit import _ZipRuns
from poetry_plugin_lambda.emit import check_outputs
from poetry_plugin_lambda.emit import write_outputs
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import Interrupted
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.spec import source_epoch
from poetry_plugin_lambda.target_dir import StagedTargetDir
from poetry_plugin_lambda.wheels import read_wheel
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter
from tests.fixtures.limits import file_size_limit
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import claims

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


def entries_of(tmp_path: Path, *, big: bool = False, blob: bytes = BLOB) -> list[Entry]:
    wheels = tmp_path / "wheels"
    files: dict[str, bytes | str] = {"app/__init__.py": "", "app/handler.py": "def handler(e, c):\n    return 1\n"}
    if big:
        files["app/blob.bin"] = blob
    a = build_wheel(wheels, "app", "1.0", files=files, executable=["app/handler.py"])
    b = build_wheel(wheels, "lib", "2.0", files={"lib/__init__.py": "L = 1\n"}, data_purelib={"lib_extra.py": "E = 1\n"})
    return assemble([read_wheel(a), read_wheel(b)])


def write(entries: list[Entry], folder: Path, epoch: int = DOS_1980) -> ZipResult:
    """Both outputs side by side in `folder`: fn.zip and target/."""
    return write_outputs(entries, folder / "fn.zip", folder / "target", epoch)


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


def test_symlinked_outputs_are_refused(tmp_path: Path, project: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / MARKER).write_text("looks like ours\n")
    link = tmp_path / "link"
    link.symlink_to(elsewhere, target_is_directory=True)
    _refused(tmp_path, project / "fn.zip", link, project, "is a symlink; give the folder itself")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere", target_is_directory=True)
    _refused(tmp_path, project / "fn.zip", dangling, project, "is a symlink")
    old_zip = tmp_path / "real.zip"
    with zipfile.ZipFile(old_zip, "w") as zf:
        zf.writestr("a.py", "A")
    zip_link = project / "fn.zip"
    zip_link.symlink_to(old_zip)
    _refused(tmp_path, zip_link, project / "build" / "t", project, "not a regular file")


def test_outputs_inside_a_marked_target_dir_are_refused(tmp_path: Path, project: Path) -> None:
    """Another bundle's (or an earlier run's) target dir is replaced whole by its runs: an output
    inside it would vanish with it, or make that bundle's ZIP and target dir disagree."""
    theirs = project / "build" / "lambda" / "api"
    theirs.mkdir(parents=True)
    (theirs / MARKER).write_text("ours\n")
    _refused(tmp_path, theirs / "fn.zip", project / "build" / "t", project, "the target dir of another bundle", str(theirs))
    _refused(tmp_path, project / "fn.zip", theirs / "deep" / "inner", project, "the target dir of another bundle")


def test_poetrys_cache_is_refused_as_the_target_dir(tmp_path: Path, project: Path) -> None:
    cache = tmp_path / "caches" / "pypoetry"  # whether it exists yet or not
    for target in (cache, cache / "artifacts", cache.parent):
        with pytest.raises(OutputError) as caught:
            check_outputs(project / "fn.zip", target, project, cache)
        assert "Poetry's cache" in str(caught.value)
    check_outputs(project / "fn.zip", tmp_path / "caches-not", project, cache)


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
    result = write(entries, tmp_path / "out")
    target, output = tmp_path / "out" / "target", tmp_path / "out" / "fn.zip"
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
    assert {p.stat().st_mode & 0o777 for p in target.rglob("*") if p.is_dir()} == {0o755}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fn.zip", "target"]


def test_the_zip_is_what_the_sequential_writer_writes(tmp_path: Path) -> None:
    """Laid out in advance and written member by member in any order, the ZIP holds the bytes the
    sequential writer gives for the same entries (wheel members copied, others deflated)."""
    entries = entries_of(tmp_path, big=True)
    write(entries, tmp_path / "out", epoch=1_700_000_000)
    expected = io.BytesIO()
    with DeterministicZipWriter(expected, epoch=1_700_000_000) as writer, Archives() as archives:
        for entry in entries:
            if entry.archive is not None and entry.info is not None:
                writer.add_from_zip(entry.path, archives.get(entry.archive), entry.info, executable=entry.executable)
            else:
                writer.add_bytes(entry.path, archives.read(entry), executable=entry.executable)
    assert (tmp_path / "out" / "fn.zip").read_bytes() == expected.getvalue()


@pytest.mark.parametrize("member", ["app/handler.py", "app/blob.bin"], ids=["small", "large"])
@pytest.mark.parametrize("lie", ["crc", "size"])
def test_a_member_that_is_not_what_its_wheel_says_fails_both_outputs(tmp_path: Path, member: str, lie: str) -> None:
    """Its bytes are inflated and checked before anything of it is kept: a wrong CRC, or more
    bytes than the central directory says, fails the bundle; the previous outputs stay."""
    folder = tmp_path / "dist"
    write(entries_of(tmp_path / "small"), folder)
    before = snapshot(folder)
    wheels = tmp_path / "hostile" / "wheels"
    app = build_wheel(wheels, "app", "1.0", files={"app/__init__.py": "", "app/handler.py": "X = 1\n" * 50,
                                                  "app/blob.bin": BLOB})
    with zipfile.ZipFile(app) as zf:
        info = zf.getinfo(member)
    claims(app, member, **({"crc": info.CRC ^ 1} if lie == "crc" else {"size": info.file_size - 1}))
    with pytest.raises(BundleError, match=f"{member} does not match its CRC"):
        write(assemble([read_wheel(app)]), folder)
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["fn.zip", "target"]


@pytest.mark.parametrize("bad", ["twice", "unsafe name"])
def test_a_file_the_zip_cannot_hold_fails_before_anything_is_written(tmp_path: Path, bad: str) -> None:
    """The ZIP is laid out before a byte of it is written: a name it refuses (or one given twice)
    is an error naming the file and its owner, the previous outputs stay, nothing is left beside
    them (not the scratch archive of the generated files either)."""
    folder = tmp_path / "dist"
    entries = entries_of(tmp_path / "w")
    write(entries, folder)
    before = snapshot(folder)
    extra = Entry(path="app/handler.py" if bad == "twice" else "../escape.py", owner="evil 1.0", size=3, data=b"x=1")
    with pytest.raises(OutputError, match=r"Cannot write '(app/handler\.py|\.\./escape\.py)' of evil 1\.0"):
        write([*entries, extra], folder)
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["fn.zip", "target"]


def test_target_dir_folders_that_cannot_be_made_fail_both_outputs(tmp_path: Path) -> None:
    """The target dir's folders are made on a thread of their own while the ZIP is laid out and
    staged: their failure is the bundle's error, and the staged ZIP goes with it."""
    entries = entries_of(tmp_path / "w")
    zips, blocked = tmp_path / "zips", tmp_path / "blocked"
    write_outputs(entries, zips / "fn.zip", tmp_path / "ok" / "target", DOS_1980)
    before = snapshot(zips)
    blocked.write_text("a file where the target dir's parent should be")
    with pytest.raises(OutputError, match="blocked"):
        write_outputs(entries, zips / "fn.zip", blocked / "target", DOS_1980)
    assert snapshot(zips) == before  # the previous ZIP, and no staged one beside it
    assert blocked.read_text() == "a file where the target dir's parent should be"


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write(entries_of(tmp_path), tmp_path / "out")
    finally:
        os.umask(previous)
    target = tmp_path / "out" / "target"
    assert (target / "app" / "handler.py").stat().st_mode & 0o777 == 0o755
    assert (target / "lib" / "__init__.py").stat().st_mode & 0o777 == 0o644
    assert (target / "lib").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "fn.zip").stat().st_mode & 0o777 == 0o644


def test_folders_taken_as_made_by_the_helper_are_real_folders_inside_the_staged_dir(tmp_path: Path) -> None:
    """The parent's fallback (`existing=True`, when the helper died before saying its folders
    were made) takes a folder that is there only if it is a real folder of the staged dir:
    never `..`, never a link."""
    from poetry_plugin_lambda.target_dir import StagedTargetDir

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (tmp_path / "t").mkdir(mode=0o700)
    for path in ("../outside/f.py", "link/f.py"):
        staged = StagedTargetDir(tmp_path / "t" / "target", [], folders=False)
        try:
            os.symlink(outside, staged.staged.path / "link")
            with pytest.raises(FileExistsError):
                staged.make_folders([Entry(path=path, owner="o", size=1, data=b"x")])
        finally:
            staged.discard()
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o700  # `..` was not chmodded
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700 and not any(outside.iterdir())


def test_every_target_file_is_an_inode_of_its_own(tmp_path: Path) -> None:
    """Writing into one target dir can change nothing else: no file is a hard link."""
    entries = entries_of(tmp_path)
    write(entries, tmp_path / "a")
    write(entries, tmp_path / "b")
    for root in (tmp_path / "a" / "target", tmp_path / "b" / "target"):
        assert {p.stat().st_nlink for p in root.rglob("*") if p.is_file()} == {1}
    (tmp_path / "a" / "target" / "app" / "handler.py").open("a").write("# appended\n")
    assert _dir_files(tmp_path / "b" / "target") == _zip_files(tmp_path / "b" / "fn.zip")


def test_outputs_are_reproducible_and_replaced(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    first = write(entries, tmp_path)
    (target / "stale.py").write_text("left from an older bundle\n")
    second = write(entries, tmp_path)
    assert first.sha256 == second.sha256
    assert not (target / "stale.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fn.zip", "target", "wheels"]


def test_files_edited_in_the_target_dir_are_rewritten(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    write(entries, tmp_path)
    expected = _dir_files(target)
    (target / "app" / "handler.py").write_text("edited by hand\n")
    (target / "lib" / "__init__.py").unlink()
    (target / "lib-2.0.dist-info" / "RECORD").write_text("")
    (target / "app" / "__init__.py").chmod(0o600)
    handler = target / "lib-2.0.dist-info" / "METADATA"
    st = handler.stat()
    handler.write_bytes(b"X" * st.st_size)  # a same-size edit with its mtime restored
    os.utime(handler, ns=(st.st_atime_ns, st.st_mtime_ns))
    write(entries, tmp_path)
    assert _dir_files(target) == expected
    assert (target / "app" / "handler.py").stat().st_mode & 0o777 == 0o755
    assert (target / "app" / "__init__.py").stat().st_mode & 0o777 == 0o644


def test_symlinks_in_the_target_dir_are_replaced_never_followed(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    target = tmp_path / "target"
    write(entries, tmp_path)
    outside = tmp_path / "src" / "lib"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("# my working copy\n")
    (outside / "notes.txt").write_text("mine\n")
    shutil.rmtree(target / "lib")
    (target / "lib").symlink_to(outside, target_is_directory=True)
    (target / "app" / "handler.py").unlink()
    (target / "app" / "handler.py").symlink_to(outside / "notes.txt")
    before = snapshot(outside)
    write(entries, tmp_path)
    assert snapshot(outside) == before
    assert not (target / "lib").is_symlink() and not (target / "app" / "handler.py").is_symlink()
    assert _dir_files(target) == _zip_files(tmp_path / "fn.zip")


def test_empty_existing_target_dir_is_used(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    write(entries_of(tmp_path), tmp_path)
    assert (tmp_path / "target" / MARKER).is_file()
    assert (tmp_path / "target" / "app" / "__init__.py").is_file()


def test_outputs_under_a_file_are_an_output_error(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    somefile = tmp_path / "somefile"
    somefile.write_text("a file, not a folder\n")
    with pytest.raises(OutputError) as caught:
        write(entries, somefile)
    assert str(somefile) in str(caught.value)
    assert "Not a directory" in str(caught.value)
    assert somefile.read_text() == "a file, not a folder\n"


def _failed_write_keeps_both(tmp_path: Path, limit: int, blob: bytes = BLOB) -> str:
    """A failing write of a big bundle over a small one: both outputs stay the small one."""
    small = entries_of(tmp_path / "small")
    big = entries_of(tmp_path / "big", big=True, blob=blob)
    folder = tmp_path / "dist"
    write(small, folder)
    before = snapshot(folder)
    with file_size_limit(limit), pytest.raises(OutputError) as caught:
        write(big, folder)
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["fn.zip", "target"]
    return str(caught.value)


def test_failed_zip_write_keeps_both_outputs(tmp_path: Path) -> None:
    """The ZIP (compressed, ~1 MB) fails while the target dir's files (each < 2 MB) fit."""
    message = _failed_write_keeps_both(tmp_path, 1_000_000)
    assert "File too large" in message and "fn.zip" in message and "ulimit -f" in message


def test_failed_target_dir_write_keeps_both_outputs(tmp_path: Path) -> None:
    """A 3 MB file of zeros fails in the target dir; the ZIP (a few KB) fits, and is discarded."""
    message = _failed_write_keeps_both(tmp_path, 1_000_000, blob=bytes(3_000_000))
    assert "File too large" in message and "target" in message


def test_failed_zip_commit_puts_the_previous_target_dir_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = entries_of(tmp_path / "small")
    big = entries_of(tmp_path / "big", big=True)
    folder = tmp_path / "dist"
    write(small, folder)
    before = snapshot(folder)
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:  # the rename of the new ZIP fails, after the swap
        if str(dst).endswith("fn.zip"):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as caught:
        write(big, folder)
    assert "fn.zip" in str(caught.value)
    assert snapshot(folder) == before


def test_something_that_appeared_at_an_outputs_place_during_the_run_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked at the start and again just before the commit: a folder that another program
    (or Poetry, making its cache) filled at the target dir's place meanwhile is kept."""
    entries = entries_of(tmp_path)
    folder = tmp_path / "dist"
    real_finish = StagedTargetDir.finish

    def finish(self: StagedTargetDir) -> Staged:
        (folder / "target" / "artifacts").mkdir(parents=True)
        (folder / "target" / "artifacts" / "cached.whl").write_bytes(b"not ours")
        return real_finish(self)

    monkeypatch.setattr(StagedTargetDir, "finish", finish)
    with pytest.raises(OutputError) as caught:
        write(entries, folder)
    assert "It appeared while the bundle was being built" in str(caught.value)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == ["target", "target/artifacts", "target/artifacts/cached.whl"]


def test_immutable_output_folder_keeps_both_outputs(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    folder = tmp_path / "dist"
    write(entries, folder)
    before = snapshot(folder)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        with pytest.raises(OutputError) as caught:
            write(entries_of(tmp_path / "other"), folder)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert "Operation not permitted" in str(caught.value) and str(folder) in str(caught.value)
    assert snapshot(folder) == before


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


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    folder = tmp_path / "dist"
    folder.mkdir()
    dead = folder / ".fn.zip.tmp-dead1234"
    dead.write_bytes(b"PK\x03\x04 half a zip")
    dead_dir = folder / ".target.tmp-deaddir"
    (dead_dir / "pkg").mkdir(parents=True)
    (dead_dir / "pkg" / "mod.py").write_text("half\n")
    live = folder / ".fn.zip.tmp-live5678"
    live.write_bytes(b"PK\x03\x04 being written")
    live_dir = folder / ".target.tmp-live"
    live_dir.mkdir()
    other = folder / ".other.zip.tmp-dead"
    other.write_bytes(b"not ours to judge")
    unrelated = folder / "fn.zip.tmp-notours"
    unrelated.write_bytes(b"no leading dot")
    with held(live), held(live_dir):
        write(entries, folder)
        assert live.read_bytes() == b"PK\x03\x04 being written"
    assert not dead.exists() and not dead_dir.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["fn.zip", "target", live.name, live_dir.name, other.name, unrelated.name]
    )
    # once the live run is gone (lock released), the next write cleans it too
    write(entries, folder)
    assert not live.exists() and not live_dir.exists()


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
    write(entries, folder)
    assert snapshot(precious) == before


def test_legacy_manifest_beside_the_target_dir_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".target.manifest.json").write_text("{}")
    write(entries_of(tmp_path), tmp_path)
    assert not (tmp_path / ".target.manifest.json").exists()


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
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH must be a whole number") as caught:
        source_epoch({"SOURCE_DATE_EPOCH": value})
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, BundleError)


@pytest.mark.parametrize("value", ["4354819200", "99999999999"])  # 2108-01-01, year 5138
def test_source_epoch_after_2107_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="after 2107-12-31"):
        source_epoch({"SOURCE_DATE_EPOCH": value})


def test_source_epoch_sets_every_timestamp(tmp_path: Path) -> None:
    entries = entries_of(tmp_path)
    write(entries, tmp_path / "new", source_epoch({"SOURCE_DATE_EPOCH": "1700000000"}))
    with zipfile.ZipFile(tmp_path / "new" / "fn.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    write(entries, tmp_path / "old", source_epoch({"SOURCE_DATE_EPOCH": "5"}))
    with zipfile.ZipFile(tmp_path / "old" / "fn.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# -- Ctrl-C at any moment ------------------------------------------------------------------------


class _CtrlCAfter:
    """`os.<name>`'s `nth` call does its work, then a Ctrl-C arrives (from whichever thread made
    the call: the main thread then raises KeyboardInterrupt at its next step)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
        self.real, self.nth, self.calls, self.fired = getattr(os, name), nth, 0, False
        self._lock = threading.Lock()
        monkeypatch.setattr(os, name, self)

    def __call__(self, *args: object, **kwargs: object) -> object:
        result = self.real(*args, **kwargs)
        with self._lock:
            self.calls += 1
            fire = self.calls == self.nth
        if fire:
            self.fired = True
            signal.raise_signal(signal.SIGINT)
        return result


def _steps() -> None:
    """A few Python steps: a Ctrl-C still pending is raised here."""
    for _ in range(3):
        time.sleep(0)


@pytest.mark.parametrize("call", ["open", "mkdir", "rename", "replace", "fsync", "unlink", "rmdir"])
def test_a_ctrl_c_after_any_system_call_leaves_both_outputs_old_or_both_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """Every `call` of a write is followed, one run each, by a Ctrl-C. The run either stops with
    both outputs as they were (KeyboardInterrupt), or says it was interrupted after writing
    them (both new), or finishes; never a target dir without its ZIP, never a temporary left."""
    small = entries_of(tmp_path / "small")
    big = entries_of(tmp_path / "big", big=True)
    folder = tmp_path / "dist"
    outcomes: set[str] = set()
    for nth in range(1, 500):
        write(small, folder)
        before = snapshot(folder)
        ctrl_c = _CtrlCAfter(monkeypatch, call, nth)
        written = False
        try:
            try:
                write(big, folder)
                written = True
                _steps()
            finally:
                monkeypatch.undo()
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "finished" if written else "kept"
        except Interrupted as error:
            assert "after the outputs were written" in str(error)
            outcome = "written"
        discard_unfinished()  # what the command does when a run ends
        outcomes.add(outcome)
        assert sorted(p.name for p in folder.iterdir()) == ["fn.zip", "target"], (nth, outcome)
        if outcome == "kept":
            assert snapshot(folder) == before, nth
        else:
            assert _zip_files(folder / "fn.zip") == _dir_files(folder / "target")
            assert "app/blob.bin" in _dir_files(folder / "target")
        if not ctrl_c.fired:
            break
    else:
        pytest.fail("the write never ran out of calls")
    assert outcomes - {"finished"}, "no Ctrl-C was ever seen"


# -- members gathered into runs of the ZIP -------------------------------------------------------


class _Recorder:
    """What `_ZipRuns` needs of a job: whether it is live, and its ZIP's positioned writes."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.live, self.writes, self.fail_at = True, [], fail_at

    def write_zip(self, offset: int, data: bytes) -> bool:
        if offset == self.fail_at:
            self.live = False
            return False
        self.writes.append((offset, data))
        return True


def test_members_that_follow_each_other_in_the_zip_are_written_at_once() -> None:
    job = _Recorder()
    runs = _ZipRuns()
    assert runs.write(job, 0, b"h1", b"aa")  # type: ignore[arg-type]
    assert runs.write(job, 4, b"h2", b"bbb")  # type: ignore[arg-type]
    assert runs.write(job, 20, b"h3", b"c")  # type: ignore[arg-type] # a gap: the run so far is written
    assert job.writes == [(0, b"h1aah2bbb")]
    runs.flush()
    assert job.writes == [(0, b"h1aah2bbb"), (20, b"h3c")]
    runs.flush()  # nothing left
    assert len(job.writes) == 2


def test_a_run_is_written_when_it_reaches_its_limit() -> None:
    job = _Recorder()
    runs = _ZipRuns()
    big = bytes(_RUN_LIMIT)
    assert runs.write(job, 0, b"h", big)  # type: ignore[arg-type]
    assert job.writes == [(0, b"h" + big)]
    assert runs.write(job, len(big) + 1, b"h", b"x")  # type: ignore[arg-type]
    runs.flush()
    assert job.writes[-1] == (len(big) + 1, b"hx")


def test_a_failed_run_stops_the_job() -> None:
    job = _Recorder(fail_at=0)
    runs = _ZipRuns()
    assert runs.write(job, 0, b"h1", b"aa")  # type: ignore[arg-type]
    assert not runs.write(job, 9, b"h2", b"b")  # type: ignore[arg-type] # the first run fails when written
    assert not runs.write(job, 12, b"h3", b"c")  # type: ignore[arg-type] # the job is no longer live
    runs.flush()
    assert job.writes == []
