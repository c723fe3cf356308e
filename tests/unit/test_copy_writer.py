"""The helper process that writes a share of the target dirs' files from the unpacked copies
(`copy_writer`), alone and inside `emit`: the outputs are the same with it or without it, a
damaged copy never ships, and a helper that dies or cannot start never leaves a wrong output."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest

from poetry_plugin_lambda import copy_writer
from poetry_plugin_lambda import emit
from poetry_plugin_lambda.archive_index import ArchiveIndex
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.copy_writer import CopyWriter
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.unpacked import unpack
from poetry_plugin_lambda.wheels import contents_of
from poetry_plugin_lambda.wheels import parse_wheel
from tests.fixtures.wheelfactory import build_wheel

EPOCH = 315532800
ROOT = Path(__file__).resolve().parents[2]


# The helper alone --------------------------------------------------------------------------


def _run(
    roots: list[Path], copies: list[Path], files: list[tuple[int, str, int, int, int, int, int]], folders: list[list[str]] | None = None
) -> copy_writer.Outcome:
    """The helper's outcome for `files` (paths as text here) in `roots`, each held open as its
    lock is in a run; `folders`: each root's folders for the helper to make first."""
    fds = [os.open(root, os.O_RDONLY) if root.is_dir() else os.open(os.devnull, os.O_RDONLY) for root in roots]
    try:
        writer = CopyWriter(
            [(os.fsencode(root), fd) for root, fd in zip(roots, fds)],
            [[os.fsencode(folder) for folder in wanted] for wanted in folders or [[] for _ in roots]],
            [os.fsencode(copy) for copy in copies],
            [(root, os.fsencode(path), *rest) for root, path, *rest in files],  # type: ignore[misc]
        )
        try:
            return writer.wait()
        finally:
            writer.stop()
    finally:
        for fd in fds:
            os.close(fd)


def test_it_writes_each_file_from_its_copy_with_its_mode(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"hello" + b"#!/bin/sh\n")
    root = tmp_path / "root"
    root.mkdir()
    outcome = _run([root], [copy], [
        (0, "pkg/a.txt", 0o644, 0, 0, 5, zlib.crc32(b"hello")),
        (0, "pkg/run", 0o755, 0, 5, 10, zlib.crc32(b"#!/bin/sh\n")),
        (0, "pkg/empty", 0o644, 0, 15, 0, 0),
        (0, "pkg/caf\u00e9 \u65e5\u672c.txt", 0o644, 0, 0, 5, zlib.crc32(b"hello")),
    ], folders=[["pkg"]])
    assert (outcome.missed, outcome.errors, outcome.stopped) == ([], {}, None)
    assert (root / "pkg" / "a.txt").read_bytes() == b"hello"
    assert (root / "pkg" / "run").read_bytes() == b"#!/bin/sh\n"
    assert (root / "pkg" / "empty").read_bytes() == b""
    assert (root / "pkg" / "caf\u00e9 \u65e5\u672c.txt").read_bytes() == b"hello"  # named as this process names it
    assert stat.S_IMODE((root / "pkg" / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "pkg" / "a.txt").stat().st_mode) == 0o644


def test_a_file_whose_copy_fails_its_check_is_left_not_written(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"abcdef")
    root = tmp_path / "root"
    root.mkdir()
    outcome = _run([root], [copy, tmp_path / "gone"], [
        (0, "wrong-crc", 0o644, 0, 0, 3, zlib.crc32(b"abd")),
        (0, "short", 0o644, 0, 4, 5, zlib.crc32(b"ef")),
        (0, "right", 0o644, 0, 3, 3, zlib.crc32(b"def")),
        (0, "no-copy", 0o644, 1, 0, 3, zlib.crc32(b"abc")),
    ])
    assert outcome.missed == [0, 1, 3] and outcome.errors == {}
    assert sorted(p.name for p in root.iterdir()) == ["right"]


def test_a_large_copy_read_piece_by_piece_is_held_to_each_crc(tmp_path: Path) -> None:
    blob = random.Random(2).randbytes((16 << 20) + 100)  # past the size read whole
    copy = tmp_path / "copy"
    copy.write_bytes(blob)
    root = tmp_path / "root"
    root.mkdir()
    end = len(blob)
    outcome = _run([root], [copy], [
        (0, "first", 0o755, 0, 0, 1000, zlib.crc32(blob[:1000])),
        (0, "past-end", 0o644, 0, end - 10, 20, zlib.crc32(blob[-10:])),
        (0, "wrong", 0o644, 0, 5, 10, zlib.crc32(blob[6:16])),
        (0, "last", 0o644, 0, end - 10, 10, zlib.crc32(blob[-10:])),
    ])
    assert outcome.missed == [1, 2] and outcome.errors == {}
    assert (root / "first").read_bytes() == blob[:1000] and (root / "last").read_bytes() == blob[-10:]
    assert stat.S_IMODE((root / "first").stat().st_mode) == 0o755


def _abc_and_roots(tmp_path: Path, *names: str) -> tuple[Path, list[Path]]:
    """A copy holding b"abc", and empty folders `names` for roots."""
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    roots = [tmp_path / name for name in names]
    for root in roots:
        root.mkdir()
    return copy, roots


def test_a_refusal_stops_that_root_and_names_its_path(tmp_path: Path) -> None:
    copy, (good, existing) = _abc_and_roots(tmp_path, "good", "existing")
    (existing / "taken").write_text("someone else's file")
    os.symlink(tmp_path / "elsewhere", existing / "link")
    crc = zlib.crc32(b"abc")
    outcome = _run([good, existing, tmp_path / "missing"], [copy], [
        (1, "taken", 0o644, 0, 0, 3, crc),
        (1, "link", 0o644, 0, 0, 3, crc),
        (0, "fine", 0o644, 0, 0, 3, crc),
        (2, "x", 0o644, 0, 0, 3, crc),
    ])
    assert sorted(outcome.errors) == [1, 2]
    assert outcome.errors[1].filename == str(existing / "taken")  # never overwritten, never followed
    assert (existing / "taken").read_text() == "someone else's file" and not (tmp_path / "elsewhere").exists()
    assert (good / "fine").read_bytes() == b"abc"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_folders_first_then_files_with_their_modes_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    root = tmp_path / "root"
    root.mkdir()
    old = os.umask(umask)
    try:
        outcome = _run([root], [copy], [(0, "a/b/f", 0o644, 0, 0, 3, zlib.crc32(b"abc")), (0, "a/x", 0o755, 0, 0, 3, zlib.crc32(b"abc"))],
                       folders=[["a", "a/b", "c"]])
    finally:
        os.umask(old)
    assert (outcome.missed, outcome.errors) == ([], {})
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}
    assert modes == {"a": 0o755, "a/b": 0o755, "c": 0o755, "a/b/f": 0o644, "a/x": 0o755}


def test_a_folder_that_cannot_be_made_stops_that_root_alone(tmp_path: Path) -> None:
    """A root whose folders fail (here a file squats a folder's name) says why before any file
    is written, and gets no file; the other roots are made whole."""
    copy, (good, squatted) = _abc_and_roots(tmp_path, "good", "squatted")
    (squatted / "a").write_text("a file")
    fds = [os.open(root, os.O_RDONLY) for root in (good, squatted)]
    crc = zlib.crc32(b"abc")
    try:
        writer = CopyWriter([(os.fsencode(r), fd) for r, fd in zip((good, squatted), fds)], [[b"a"], [b"a", b"a/b"]], [os.fsencode(copy)],
                            [(1, b"a/b/f", 0o644, 0, 0, 3, crc), (0, b"a/f", 0o644, 0, 0, 3, crc)])
        made = writer.folders()
        outcome = writer.wait()
        writer.stop()
    finally:
        for fd in fds:
            os.close(fd)
    assert made is not None and list(made.errors) == [1] and made.errors[1].filename == str(squatted / "a")
    assert "exists" in str(made.errors[1]).lower()
    assert outcome.missed == [] and list(outcome.errors) == [1]
    assert (good / "a" / "f").read_bytes() == b"abc" and sorted(p.name for p in squatted.iterdir()) == ["a"]


@pytest.mark.parametrize("executable", ["no file", "not python", None, ""])
def test_a_helper_that_cannot_start_leaves_every_file_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str | None
) -> None:
    """No interpreter, or one that never runs the helper (a frozen or embedded host): nothing
    was written, so every file is this process's to write, and nothing fails."""
    path = {"no file": str(tmp_path / "no-python"), "not python": "/bin/true"}.get(executable or "", executable)
    monkeypatch.setattr(copy_writer.sys, "executable", path)
    outcome = _run([tmp_path], [tmp_path / "copy"], [(0, "a", 0o644, 0, 0, 1, 0), (0, "b", 0o644, 0, 1, 1, 0)])
    assert (outcome.missed, outcome.stopped) == ([0, 1], None)
    assert copy_writer.available() == bool(path)


def test_the_helper_runs_isolated_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-I -S`: no PYTHONPATH, no site, no user's sitecustomize can change what it does."""
    (tmp_path / "os.py").write_text("raise SystemExit('shadowed')\n")
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    outcome = _run([root], [copy], [(0, "f", 0o644, 0, 0, 3, zlib.crc32(b"abc"))])
    assert outcome.missed == [] and (root / "f").read_bytes() == b"abc"


def test_a_ctrl_c_sent_to_the_helper_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C reaches the whole process group: the run decides what it means (it stops the
    helper and waits for it), so the helper itself goes on with its job."""
    import signal
    import time

    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    root = tmp_path / "root"
    root.mkdir()
    slow = copy_writer._HELPER.replace("    bases = ", "    import time; time.sleep(0.5)\n    bases = ", 1)
    monkeypatch.setattr(copy_writer, "_HELPER", slow)
    fd = os.open(root, os.O_RDONLY)
    try:
        writer = CopyWriter([(os.fsencode(root), fd)], [[]], [os.fsencode(copy)], [(0, b"f", 0o644, 0, 0, 3, zlib.crc32(b"abc"))])
        time.sleep(0.3)  # started, its job read, not yet writing
        assert writer._process is not None
        writer._process.send_signal(signal.SIGINT)
        outcome = writer.wait()
        writer.stop()
    finally:
        os.close(fd)
    assert (outcome.missed, outcome.errors, outcome.stopped) == ([], {}, None)
    assert (root / "f").read_bytes() == b"abc"


_ORPHANED = r"""
import os, sys, time
sys.path[:0] = [sys.argv[2]]
from poetry_plugin_lambda import copy_writer
copy_writer._HELPER = copy_writer._HELPER.replace("        if root in errors:", "        time.sleep(0.01)\n        if root in errors:").replace(
    "import marshal, os, signal, sys, zlib", "import marshal, os, signal, sys, time, zlib").replace("number % 32", "number % 128")
root = sys.argv[1]
fd = os.open(root, os.O_RDONLY)
import fcntl
fcntl.flock(fd, fcntl.LOCK_EX)
os.mkdir(root + "/copy-dir")
with open(root + "/copy-dir/copy", "wb") as f:
    f.write(b"x")
import zlib
writer = copy_writer.CopyWriter([(os.fsencode(root), fd)], [[]], [os.fsencode(root + "/copy-dir/copy")],
    [(0, b"f%d" % i, 0o644, 0, 0, 1, zlib.crc32(b"x")) for i in range(5000)])
print(writer._process.pid, flush=True)
time.sleep(0.3)
os._exit(9)  # killed: no clean-up of any kind
"""


def test_a_helper_whose_parent_dies_stops_and_keeps_the_staged_dir_locked_until_then(tmp_path: Path) -> None:
    import fcntl
    import time

    root = tmp_path / "staged"
    root.mkdir()
    parent = subprocess.run(
        [sys.executable, "-c", _ORPHANED, str(root), str(Path(__file__).resolve().parents[2])],
        capture_output=True, text=True, timeout=60, check=False,
    )
    helper = int(parent.stdout.split()[0])

    def alive() -> bool:  # a zombie is not alive: its descriptors, and the lock, are gone
        try:
            return Path(f"/proc/{helper}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
        except OSError:
            return False

    checked = 0
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        fd = os.open(root, os.O_RDONLY)
        try:  # while it lives, the run's lock is held: no other run removes the folder under it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert not alive(), "the staged dir was unlocked while the helper could still write into it"
        except BlockingIOError:
            checked += 1
        finally:
            os.close(fd)
        time.sleep(0.02)
    if alive():
        os.kill(helper, 9)
        pytest.fail("the helper outlived its parent")
    assert checked > 0  # seen locked at least once after the parent died
    written = len([p for p in root.iterdir() if p.name.startswith("f")])
    assert 0 < written < 5000  # it stopped on its own, long before its job was done


# Inside emit -------------------------------------------------------------------------------


@pytest.fixture
def always_helped(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The helper used for any bundle, given every member it can take; the files given, per run."""
    monkeypatch.setattr(emit, "_HELPER_FROM", 1)
    monkeypatch.setattr(emit, "_HELPER_SHARE", 1.0)
    given: list[int] = []
    original = CopyWriter.__init__

    def init(self: CopyWriter, roots: object, folders: object, copies: object, files: list[object]) -> None:
        given.append(len(files))
        original(self, roots, folders, copies, files)  # type: ignore[arg-type]

    monkeypatch.setattr(CopyWriter, "__init__", init)
    return given


def _wheels(tmp_path: Path) -> list[Path]:
    rng = random.Random(11)
    return [
        build_wheel(tmp_path / "cache" / "artifacts", "helped", "1.0", files={
            "helped/__init__.py": "x = 1\n",
            "helped/tool.py": "#!/usr/bin/env python\n",
            "helped/data.bin": rng.randbytes(5000),
            "helped/big.bin": rng.randbytes(3_000_000),  # streamed: never the helper's
            **{f"helped/m{i}.py": f"V = {i}\n" * (i + 1) for i in range(30)},
        }, executable=["helped/tool.py"]),
        build_wheel(tmp_path / "cache" / "artifacts", "other", "2.0", files={f"other/o{i}.py": f"O = {i}\n" for i in range(10)}),
    ]


def _unpacked(tmp_path: Path, wheels: list[Path]) -> tuple[list[object], dict[Path, object]]:
    index = ArchiveIndex(tmp_path / "cache")
    contents, copies = [], {}
    for wheel in wheels:
        parsed, digest = parse_wheel(wheel), hashlib.sha256(wheel.read_bytes()).hexdigest()
        with index.unpacking(digest, parsed) as writer:
            parsed = unpack(parsed, writer)
        copy = index.unpacked(digest, parsed)
        assert copy is not None
        copies[wheel] = copy
        contents.append(contents_of(parsed))
    return contents, copies


def _files(target: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(target).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in target.rglob("*") if p.is_file()
    }


def _zip_files(output: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(output) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


@pytest.mark.parametrize("damage", [None, "flipped byte", "copy gone"])
def test_the_outputs_are_the_same_with_the_helper_and_a_damaged_copy_never_ships(
    tmp_path: Path, always_helped: list[int], damage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    emit.write_outputs(entries, tmp_path / "plain" / "fn.zip", tmp_path / "plain" / "target", EPOCH)
    assert always_helped == []  # without copies, nothing to give
    copy = copies[wheels[0]]
    if damage == "flipped byte":
        with zipfile.ZipFile(wheels[0]) as zf:
            offset = zf.getinfo("helped/data.bin").header_offset
        blob = bytearray(copy.path.read_bytes())  # type: ignore[attr-defined]
        blob[copy.offsets[offset][0] + 100] ^= 0x40  # type: ignore[attr-defined]
        copy.path.write_bytes(bytes(blob))  # type: ignore[attr-defined]
    elif damage == "copy gone":
        copy.path.unlink()  # type: ignore[attr-defined]
    inflated: list[str] = []
    original = emit.inflated
    monkeypatch.setattr(emit, "inflated", lambda archive, info, raw: inflated.append(info.filename) or original(archive, info, raw))
    emit.write_outputs(entries, tmp_path / "helped" / "fn.zip", tmp_path / "helped" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert always_helped and always_helped[0] >= 40
    assert (tmp_path / "helped" / "fn.zip").read_bytes() == (tmp_path / "plain" / "fn.zip").read_bytes()
    assert _files(tmp_path / "helped" / "target") == _files(tmp_path / "plain" / "target")
    on_disk = {path: data for path, (data, _) in _files(tmp_path / "helped" / "target").items() if path != emit.MARKER}
    assert on_disk == _zip_files(tmp_path / "helped" / "fn.zip")
    from_helped = [name for name in inflated if name.startswith("helped/")]
    if damage is None:
        assert from_helped == []
    elif damage == "flipped byte":
        assert from_helped == ["helped/data.bin"]  # the one member whose bytes were damaged, inflated here
    else:
        assert len(from_helped) > 30  # every member of the copy that is gone


def test_several_bundles_share_the_helper(tmp_path: Path, always_helped: list[int]) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    jobs = [emit.OutputJob(entries, tmp_path / n / "fn.zip", tmp_path / n / "target", EPOCH) for n in ("one", "two")]
    results = emit.write_all_outputs(jobs, copies)  # type: ignore[arg-type]
    assert not [r for r in results if isinstance(r, Exception)]
    assert always_helped == [2 * always_helped[0] // 2] and always_helped[0] >= 80  # both dirs' files, in one job
    for name in ("one", "two"):
        on_disk = {p: d for p, (d, _) in _files(tmp_path / name / "target").items() if p != emit.MARKER}
        assert on_disk == _zip_files(tmp_path / name / "fn.zip")


def test_a_wheel_changed_since_its_copy_fails_with_the_helper_too(tmp_path: Path, always_helped: list[int]) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    with zipfile.ZipFile(wheels[0]) as zf:
        info = zf.getinfo("helped/data.bin")
    data = bytearray(wheels[0].read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x01
    wheels[0].write_bytes(bytes(data))
    with pytest.raises(BundleError, match="data.bin does not match its CRC"):
        emit.write_outputs(assemble(contents), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert not any((tmp_path / "out").iterdir())


def test_a_helper_that_dies_fails_the_bundle_and_leaves_nothing(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    died = copy_writer._HELPER.replace("    missed = []\n", "    missed = []\n    os._exit(3)\n", 1)  # its folders made
    assert died != copy_writer._HELPER
    monkeypatch.setattr(copy_writer, "_HELPER", died)
    with pytest.raises(BundleError, match=r"helper process writing its files stopped \(exit code 3\)\. Run again"):
        emit.write_outputs(assemble(contents), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("when", ["started", "half the folders made", "folders made, unsaid"])
def test_a_helper_that_dies_before_its_folders_are_said_made_leaves_the_bundle_to_this_process(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Until it says its folders are made it has written no file: this process makes the
    folders (taking those the helper made, setting every mode) and writes every file, and the
    outputs are the same as without a helper."""
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    emit.write_outputs(entries, tmp_path / "plain" / "fn.zip", tmp_path / "plain" / "target", EPOCH, copies)  # type: ignore[arg-type]
    cut = {
        "started": ("    bases = ", "    os._exit(3)\n    bases = "),
        "half the folders made": ("    for root, base in enumerate(bases):\n", "    wanted = [w[: len(w) // 2] for w in wanted]\n    for root, base in enumerate(bases):\n"),
        "folders made, unsaid": ("    answer = marshal.dumps", "    os._exit(3)\n    answer = marshal.dumps"),
    }[when]
    died = copy_writer._HELPER.replace(*cut, 1)
    if when == "half the folders made":
        died = died.replace("    answer = marshal.dumps", "    os._exit(3)\n    answer = marshal.dumps", 1)
    assert died != copy_writer._HELPER
    monkeypatch.setattr(copy_writer, "_HELPER", died)
    old = os.umask(0o077)  # every mode set whatever the umask: the helper's folders included
    try:
        emit.write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "fn.zip").read_bytes() == (tmp_path / "plain" / "fn.zip").read_bytes()
    assert _files(tmp_path / "out" / "target") == _files(tmp_path / "plain" / "target")
    folders = {p.relative_to(tmp_path / "out" / "target").as_posix(): stat.S_IMODE(p.stat().st_mode)
               for p in (tmp_path / "out" / "target").rglob("*") if p.is_dir()}
    assert folders and set(folders.values()) == {0o755}


@pytest.mark.parametrize("executable", ["no file", "not python", None])
def test_a_helper_that_cannot_start_changes_nothing_but_speed(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch, executable: str | None
) -> None:
    """The files are written here, from the unpacked copies (not inflated): the same outputs."""
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    path = {"no file": str(tmp_path / "no-python"), "not python": "/bin/true"}.get(executable or "", executable)
    monkeypatch.setattr(copy_writer.sys, "executable", path)
    inflated: list[str] = []
    original = emit.inflated
    monkeypatch.setattr(emit, "inflated", lambda archive, info, raw: inflated.append(info.filename) or original(archive, info, raw))
    emit.write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    on_disk = {p: d for p, (d, _) in _files(tmp_path / "out" / "target").items() if p != emit.MARKER}
    assert on_disk == _zip_files(tmp_path / "out" / "fn.zip")
    assert [name for name in inflated if name.startswith(("helped/", "other/"))] == []


@pytest.mark.parametrize("where", ["started", "folders waited for", "the pass", "ZIP completed", "waited for", "left files written"])
def test_an_interrupt_anywhere_stops_the_helper_before_anything_is_removed(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A helper still writing when the run stops must be gone before the staged dir is removed,
    or it would leave files behind in a folder being deleted; nothing staged is left, no
    descriptor is leaked, no process left unwaited for."""
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    if where == "left files written":
        copy = copies[wheels[0]]
        copy.path.write_bytes(b"\0" * copy.path.stat().st_size)  # type: ignore[attr-defined]  # every file left
    slow = copy_writer._HELPER.replace("    bases = ", "    import time; time.sleep(0.3)\n    bases = ", 1)
    monkeypatch.setattr(copy_writer, "_HELPER", slow)
    started: list[CopyWriter] = []
    original_init = CopyWriter.__init__

    def init(self: CopyWriter, *args: object) -> None:
        original_init(self, *args)  # type: ignore[arg-type]
        started.append(self)

    monkeypatch.setattr(CopyWriter, "__init__", init)
    owner, name = {
        "started": (emit._Share, "start"), "folders waited for": (CopyWriter, "_read_folders"), "the pass": (emit, "_fill_archive"), "ZIP completed": (emit._Bundle, "complete_zip"),
        "waited for": (CopyWriter, "wait"), "left files written": (emit, "_write_left"),
    }[where]
    original = getattr(owner, name)

    def interrupted(*args: object, **kwargs: object) -> object:
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, name, staticmethod(interrupted) if owner is emit._Share else interrupted)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        emit.write_outputs(assemble(contents), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert started and started[0]._process is not None and started[0]._process.returncode is not None  # waited for
    assert not any((tmp_path / "out").iterdir())
    assert len(os.listdir("/proc/self/fd")) == fds


def _latin1_locale(tmp_path: Path) -> dict[str, str] | None:
    loc = tmp_path / "loc"
    loc.mkdir()
    try:
        subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / "en_US.ISO-8859-1")],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {**os.environ, "LOCPATH": str(loc), "LC_ALL": "en_US.ISO-8859-1", "PYTHONUTF8": "1", "PYTHONPATH": str(ROOT)}


_CHILD = textwrap.dedent("""
    import sys, json
    from pathlib import Path
    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from tests.unit.test_copy_writer import _unpacked, EPOCH
    from tests.fixtures.wheelfactory import build_wheel
    emit._HELPER_FROM, emit._HELPER_SHARE = 1, 1.0
    tmp = Path(sys.argv[1])
    wheel = build_wheel(tmp / "cache" / "artifacts", "enc", "1.0",
                        files={"enc/__init__.py": "", "enc/" + sys.argv[2]: "x = 1\\n"})
    contents, copies = _unpacked(tmp, [wheel])
    try:
        emit.write_outputs(assemble(contents), tmp / "out" / "fn.zip", tmp / "out" / "target", EPOCH, copies)
    except Exception as error:
        print(json.dumps({"error": str(error)})); sys.exit(0)
    import zipfile, os
    with zipfile.ZipFile(tmp / "out" / "fn.zip") as zf:
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))
    on_disk = sorted(os.path.relpath(os.path.join(d, f), tmp / "out" / "target")
                     for d, _, fs in os.walk(tmp / "out" / "target") for f in fs if f != emit.MARKER)
    print(json.dumps({"zip": names, "dir": on_disk}, ensure_ascii=True))
""")


@pytest.mark.parametrize("name", ["caf\u00e9.py", "\u65e5\u672c.py"])
def test_the_helper_names_files_as_this_process_does_whatever_the_locale(tmp_path: Path, name: str) -> None:
    """`-I` drops PYTHONUTF8: paths cross to the helper as bytes, so a latin-1 locale with UTF-8
    mode names the ZIP's members and the helper's files alike."""
    import json

    env = _latin1_locale(tmp_path)
    if env is None:
        pytest.skip("cannot build a latin-1 locale")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), name], env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result  # the bundle without the helper is written fine
    assert result["dir"] == result["zip"]  # same file names in both outputs


def test_two_bundles_one_failing_mid_pass_and_one_refused_by_the_helper(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    names = ("zipfails", "dirtaken", "fine")
    jobs = [emit.OutputJob(entries, tmp_path / n / "fn.zip", tmp_path / n / "target", EPOCH) for n in names]
    from poetry_plugin_lambda.zip_output import StagedZip

    original_write = StagedZip.write_at
    count = {"n": 0}

    def write_at(self: StagedZip, offset: int, data: bytes) -> None:
        if "zipfails" in str(self.staged.path if hasattr(self, "staged") else "") or "zipfails" in repr(vars(self)):
            count["n"] += 1
            if count["n"] > 3:
                raise OSError(28, "No space left on device")
        original_write(self, offset, data)

    monkeypatch.setattr(StagedZip, "write_at", write_at)
    original_init = CopyWriter.__init__

    def init(self: CopyWriter, roots, folders, copies_, files) -> None:  # type: ignore[no-untyped-def]
        taken = Path(os.fsdecode(roots[1][0]), os.fsdecode(next(f for f in files if f[0] == 1)[1]))
        for folder in folders[1]:  # made first, as the helper would: then the helper's O_EXCL refuses the file
            (Path(os.fsdecode(roots[1][0])) / os.fsdecode(folder)).mkdir()
        folders[1].clear()
        taken.write_bytes(b"squatter")
        original_init(self, roots, folders, copies_, files)

    monkeypatch.setattr(CopyWriter, "__init__", init)
    fds = len(os.listdir("/proc/self/fd"))
    results = emit.write_all_outputs(jobs, copies)  # type: ignore[arg-type]
    assert "No space left" in str(results[0]) and isinstance(results[1], Exception), results
    assert "File exists" in str(results[1]) and "\n" not in str(results[1])
    assert not isinstance(results[2], Exception)
    assert not any((tmp_path / "zipfails").iterdir()) and not any((tmp_path / "dirtaken").iterdir())
    on_disk = {p: d for p, (d, m) in _files(tmp_path / "fine" / "target").items() if p != emit.MARKER}
    assert on_disk == _zip_files(tmp_path / "fine" / "fn.zip")
    modes = {p: m for p, (d, m) in _files(tmp_path / "fine" / "target").items()}
    assert modes["helped/tool.py"] == 0o755 and modes["helped/m1.py"] == 0o644
    assert len(os.listdir("/proc/self/fd")) == fds


def test_no_zombie_and_no_fd_left_after_many_helped_runs(tmp_path: Path, always_helped: list[int]) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(5):
        emit.write_outputs(entries, tmp_path / f"o{i}" / "fn.zip", tmp_path / f"o{i}" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert len(os.listdir("/proc/self/fd")) == fds
    children = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "stat="], check=False, capture_output=True, text=True).stdout.split()
    assert not [s for s in children if s.startswith("Z")]
