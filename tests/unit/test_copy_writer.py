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


# The helper alone --------------------------------------------------------------------------


def test_it_writes_each_file_from_its_copy_with_its_mode(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"hello" + b"#!/bin/sh\n" + b"")
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    writer = CopyWriter()
    writer.give([(str(root), True)], [str(copy)], [
        (0, "pkg/a.txt", 0o644, 0, 0, 5, zlib.crc32(b"hello")),
        (0, "pkg/run", 0o755, 0, 5, 10, zlib.crc32(b"#!/bin/sh\n")),
        (0, "pkg/empty", 0o644, 0, 15, 0, 0),
    ])
    outcome = writer.wait()
    writer.stop()
    assert (outcome.missed, outcome.errors, outcome.stopped) == ([], {}, None)
    assert (root / "pkg" / "a.txt").read_bytes() == b"hello"
    assert (root / "pkg" / "run").read_bytes() == b"#!/bin/sh\n"
    assert (root / "pkg" / "empty").read_bytes() == b""
    assert stat.S_IMODE((root / "pkg" / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "pkg" / "a.txt").stat().st_mode) == 0o644


def test_a_file_whose_copy_fails_its_check_is_left_not_written(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"abcdef")
    root = tmp_path / "root"
    root.mkdir()
    writer = CopyWriter()
    writer.give([(str(root), True)], [str(copy), str(tmp_path / "gone")], [
        (0, "wrong-crc", 0o644, 0, 0, 3, zlib.crc32(b"abd")),
        (0, "short", 0o644, 0, 4, 5, zlib.crc32(b"ef")),
        (0, "right", 0o644, 0, 3, 3, zlib.crc32(b"def")),
        (0, "no-copy", 0o644, 1, 0, 3, zlib.crc32(b"abc")),
    ])
    outcome = writer.wait()
    assert outcome.missed == [0, 1, 3] and outcome.errors == {}
    assert sorted(p.name for p in root.iterdir()) == ["right"]


def test_a_refusal_stops_that_root_and_names_its_path(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    good, existing = tmp_path / "good", tmp_path / "existing"
    good.mkdir()
    existing.mkdir()
    (existing / "taken").write_text("someone else's file")
    os.symlink(tmp_path / "elsewhere", existing / "link")
    writer = CopyWriter()
    crc = zlib.crc32(b"abc")
    writer.give([(str(good), True), (str(existing), True), (str(tmp_path / "missing"), True)], [str(copy)], [
        (1, "taken", 0o644, 0, 0, 3, crc),
        (1, "link", 0o644, 0, 0, 3, crc),
        (0, "fine", 0o644, 0, 0, 3, crc),
        (2, "x", 0o644, 0, 0, 3, crc),
    ])
    outcome = writer.wait()
    assert sorted(outcome.errors) == [1, 2]
    assert outcome.errors[1].filename == str(existing / "taken")  # never overwritten, never followed
    assert (existing / "taken").read_text() == "someone else's file" and not (tmp_path / "elsewhere").exists()
    assert (good / "fine").read_bytes() == b"abc"


def test_modes_are_set_whatever_the_umask_when_the_folder_says_so(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    root = tmp_path / "root"
    root.mkdir()
    old = os.umask(0o077)
    try:
        writer = CopyWriter()
    finally:
        os.umask(old)
    writer.give([(str(root), False)], [str(copy)], [(0, "f", 0o644, 0, 0, 3, zlib.crc32(b"abc"))])
    assert writer.wait().missed == []
    assert stat.S_IMODE((root / "f").stat().st_mode) == 0o644


def test_a_helper_that_cannot_start_leaves_every_file_to_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_writer.sys, "executable", str(tmp_path / "no-python"))
    writer = CopyWriter()
    writer.give([(str(tmp_path), True)], [str(tmp_path / "copy")], [(0, "a", 0o644, 0, 0, 1, 0), (0, "b", 0o644, 0, 1, 1, 0)])
    assert writer.wait().missed == [0, 1]
    writer.stop()


# Inside emit -------------------------------------------------------------------------------


@pytest.fixture
def always_helped(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The helper used for any bundle, given every member it can take; the files given, per run."""
    monkeypatch.setattr(emit, "_HELPER_FROM", 1)
    monkeypatch.setattr(emit, "_HELPER_SHARE", 1.0)
    given: list[int] = []
    original = CopyWriter.give

    def give(self: CopyWriter, roots: object, copies: object, files: list[object]) -> None:
        given.append(len(files))
        original(self, roots, copies, files)  # type: ignore[arg-type]

    monkeypatch.setattr(CopyWriter, "give", give)
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
    monkeypatch.setattr(copy_writer, "_HELPER", copy_writer._HELPER.replace("\nmain()\n", "\nimport os\nos._exit(3)\n"))
    with pytest.raises(BundleError, match=r"helper process writing its files stopped \(exit code 3\)\. Run again"):
        emit.write_outputs(assemble(contents), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert not any((tmp_path / "out").iterdir())


def test_a_helper_that_cannot_start_changes_nothing_but_speed(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    entries = assemble(contents)  # type: ignore[arg-type]
    monkeypatch.setattr(copy_writer.sys, "executable", str(tmp_path / "no-python"))
    emit.write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    on_disk = {p: d for p, (d, _) in _files(tmp_path / "out" / "target").items() if p != emit.MARKER}
    assert on_disk == _zip_files(tmp_path / "out" / "fn.zip")


def test_an_interrupted_pass_stops_the_helper_before_anything_is_removed(
    tmp_path: Path, always_helped: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = _wheels(tmp_path)
    contents, copies = _unpacked(tmp_path, wheels)
    # A helper that is still writing when the pass is interrupted: it must be gone before the
    # staged dir is removed, or it would leave files behind in a folder being deleted.
    slow = copy_writer._HELPER.replace("    for number, (root,", "    import time; time.sleep(0.5)\n    for number, (root,")
    monkeypatch.setattr(copy_writer, "_HELPER", slow)
    started: list[subprocess.Popen[bytes]] = []
    original_init = CopyWriter.__init__

    def init(self: CopyWriter) -> None:
        original_init(self)
        started.append(self._process)  # type: ignore[arg-type]

    monkeypatch.setattr(CopyWriter, "__init__", init)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(emit, "_fill_archive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emit.write_outputs(assemble(contents), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", EPOCH, copies)  # type: ignore[arg-type]
    assert started and started[0].poll() is not None  # killed and waited for
    assert not any((tmp_path / "out").iterdir())


def test_the_helper_runs_isolated_from_the_environment(tmp_path: Path) -> None:
    """`-I -S`: no PYTHONPATH, no site, no user's sitecustomize can change what it does."""
    (tmp_path / "os.py").write_text("raise SystemExit('shadowed')\n")
    copy = tmp_path / "copy"
    copy.write_bytes(b"abc")
    root = tmp_path / "root"
    root.mkdir()
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp_path)
    try:
        writer = CopyWriter()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    writer.give([(str(root), True)], [str(copy)], [(0, "f", 0o644, 0, 0, 3, zlib.crc32(b"abc"))])
    assert writer.wait().missed == [] and (root / "f").read_bytes() == b"abc"
    assert sys.executable  # the helper is this interpreter
