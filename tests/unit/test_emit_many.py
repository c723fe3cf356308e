"""emit.write_all_outputs: several bundles written in one pass, each both-or-neither, failing alone."""

from __future__ import annotations

import collections
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.emit import MARKER
from poetry_plugin_lambda.emit import OutputJob
from poetry_plugin_lambda.emit import ZipResult
from poetry_plugin_lambda.emit import write_all_outputs
from poetry_plugin_lambda.emit import write_outputs
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.wheels import read_wheel
from poetry_plugin_lambda.zipread import RawSource
from tests.fixtures.limits import file_size_limit
from tests.fixtures.wheelfactory import build_wheel
from tests.unit.test_emit import snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pytest

DOS_1980 = 315532800


def wheels(tmp_path: Path, blob: bytes = b"") -> list[Path]:
    files: dict[str, bytes | str] = {"app/__init__.py": "", "app/handler.py": "def handler(e, c):\n    return 1\n"}
    if blob:
        files["app/blob.bin"] = blob
    return [
        build_wheel(tmp_path / "wheels", "app", "1.0", files=files, executable=["app/handler.py"]),
        build_wheel(tmp_path / "wheels", "lib", "2.0", files={f"lib/m{i}.py": f"X = {i}\n" for i in range(20)}),
    ]


def entries(paths: list[Path], prefix: str = "") -> list[Entry]:
    return assemble([read_wheel(p) for p in paths], prefix)


def job(entries: list[Entry], folder: Path) -> OutputJob:
    return OutputJob(entries, folder / "fn.zip", folder / "target", DOS_1980)


def files_of(target: Path) -> dict[str, bytes]:
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file() and p.name != MARKER}


def zip_files(output: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(output) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_a_member_several_bundles_hold_is_read_once_and_written_to_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = wheels(tmp_path)
    layer, code = entries(paths, "python/"), entries(paths)
    reads: collections.Counter[tuple[str, int]] = collections.Counter()
    original, original_bytes = RawSource.raw_chunks, RawSource.raw_bytes

    def counted(self: RawSource, info: zipfile.ZipInfo) -> Iterator[bytes]:
        reads[(info.filename, info.header_offset)] += 1
        return original(self, info)

    def counted_bytes(self: RawSource, info: zipfile.ZipInfo) -> bytes:  # small wheels, read whole: no chunks
        reads[(info.filename, info.header_offset)] += 1
        return original_bytes(self, info)

    monkeypatch.setattr(RawSource, "raw_chunks", counted)
    monkeypatch.setattr(RawSource, "raw_bytes", counted_bytes)
    results = write_all_outputs([job(layer, tmp_path / "layer"), job(code, tmp_path / "code")])

    assert all(isinstance(r, ZipResult) for r in results)
    of_wheels = {key: count for key, count in reads.items() if "/" in key[0]}  # not the generated RECORDs
    assert len(of_wheels) == sum(len(zipfile.ZipFile(p).namelist()) - 1 for p in paths)  # all but RECORD
    assert set(of_wheels.values()) == {1}  # once per member, for both outputs of both bundles
    for name in ("layer", "code"):
        assert files_of(tmp_path / name / "target") == zip_files(tmp_path / name / "fn.zip")
    assert set(files_of(tmp_path / "layer" / "target")) == {f"python/{p}" for p in files_of(tmp_path / "code" / "target")}
    inodes = [p.stat().st_ino for p in (tmp_path / "layer" / "target", tmp_path / "code" / "target")
              for p in p.rglob("*") if p.is_file()]  # fmt: skip
    assert len(inodes) == len(set(inodes))  # no file shared between the two bundles


def test_the_same_as_one_bundle_at_a_time(tmp_path: Path) -> None:
    paths = wheels(tmp_path)
    layer, code = entries(paths, "python/"), entries(paths)
    write_all_outputs([job(layer, tmp_path / "together" / "layer"), job(code, tmp_path / "together" / "code")])
    write_outputs(layer, tmp_path / "alone" / "layer" / "fn.zip", tmp_path / "alone" / "layer" / "target", DOS_1980)
    write_outputs(code, tmp_path / "alone" / "code" / "fn.zip", tmp_path / "alone" / "code" / "target", DOS_1980)
    for name in ("layer", "code"):
        together, alone = tmp_path / "together" / name, tmp_path / "alone" / name
        assert (together / "fn.zip").read_bytes() == (alone / "fn.zip").read_bytes()
        assert snapshot(together / "target") == snapshot(alone / "target")


def test_a_bundle_whose_output_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    paths = wheels(tmp_path)
    somefile = tmp_path / "somefile"
    somefile.write_text("a file, not a folder\n")
    results = write_all_outputs([job(entries(paths, "python/"), somefile), job(entries(paths), tmp_path / "ok")])
    assert isinstance(results[0], OutputError) and str(somefile) in str(results[0])
    assert isinstance(results[1], ZipResult)
    assert files_of(tmp_path / "ok" / "target") == zip_files(tmp_path / "ok" / "fn.zip")
    assert somefile.read_text() == "a file, not a folder\n"


def test_a_target_dir_that_fails_keeps_that_bundles_outputs_and_not_the_others(tmp_path: Path) -> None:
    """The big bundle's 3 MB file passes the file size limit; the small one, written beside it, is fine."""
    small, big = entries(wheels(tmp_path / "small")), entries(wheels(tmp_path / "big", blob=bytes(3_000_000)))
    write_all_outputs([job(small, tmp_path / "big-out"), job(small, tmp_path / "small-out")])
    before = snapshot(tmp_path / "big-out")
    with file_size_limit(1_000_000):
        results = write_all_outputs([job(big, tmp_path / "big-out"), job(small, tmp_path / "small-out")])
    assert isinstance(results[0], OutputError) and "File too large" in str(results[0])
    assert isinstance(results[1], ZipResult)
    assert snapshot(tmp_path / "big-out") == before
    assert sorted(p.name for p in (tmp_path / "big-out").iterdir()) == ["fn.zip", "target"]
    assert files_of(tmp_path / "small-out" / "target") == zip_files(tmp_path / "small-out" / "fn.zip")
