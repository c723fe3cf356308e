"""The archive index: lock hash -> archive in Poetry's cache, and each wheel's parsed directory
kept by its sha256. Entries are hints or checked facts: a stale, foreign or damaged one is never
believed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from poetry_plugin_lambda.archive_index import ArchiveIndex
from poetry_plugin_lambda.errors import hide
from poetry_plugin_lambda.errors import secrets_hidden
from poetry_plugin_lambda.wheels import ParsedWheel
from poetry_plugin_lambda.wheels import parse_wheel
from tests.fixtures.wheelfactory import build_wheel

TOKEN = "tok-5f3a9c1e77b2"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same(one: ParsedWheel, other: ParsedWheel) -> None:
    assert (one.archive, one.name, one.version, one.dist_info) == (other.archive, other.name, other.version, other.dist_info)
    assert dict(one.listed) == dict(other.listed) and one.metadata == other.metadata
    fields = ("orig_filename", "filename", "header_offset", "compress_size", "file_size", "CRC",
              "compress_type", "external_attr", "flag_bits")
    assert len(one.members) == len(other.members)
    for a, b in zip(one.members, other.members):
        assert (a.path, a.executable, a.data) == (b.path, b.executable, b.data)
        assert [getattr(a.info, f) for f in fields] == [getattr(b.info, f) for f in fields]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return build_wheel(
        tmp_path / "cache" / "artifacts" / "ab", "kept", "1.0",
        files={"kept/__init__.py": "x = 1\n", "kept/tool.py": "#!/usr/bin/env python\n", "kept/data.bin": b"\0" * 5000},
        executable=["kept/tool.py"], requires=[f"dep @ https://example.invalid/{TOKEN}/dep-1.0.tar.gz"],
        data_purelib={"kept_extra.py": "y = 2\n"}, scripts={"kept-cli": "#!python\n"},
    )


def test_a_kept_wheel_reads_back_as_parsed(tmp_path: Path, wheel: Path) -> None:
    index, digest = ArchiveIndex(tmp_path / "cache"), _sha256(wheel)
    assert index.parsed(digest, wheel) is None
    parsed = parse_wheel(wheel)
    index.keep_parsed(digest, parsed)
    _same(index.parsed(digest, wheel), parsed)


def test_the_shipped_metadata_is_made_again_with_this_runs_secrets(tmp_path: Path, wheel: Path) -> None:
    """What METADATA hides depends on the run (the secrets Poetry knows of): it is not kept."""
    index, digest = ArchiveIndex(tmp_path / "cache"), _sha256(wheel)
    index.keep_parsed(digest, parse_wheel(wheel))  # kept by a run that knew no secret
    with secrets_hidden():
        hide([TOKEN])
        restored = index.parsed(digest, wheel)
        _same(restored, parse_wheel(wheel))
    shipped = next(m.data for m in restored.members if m.path.endswith("/METADATA"))
    assert shipped is not None and TOKEN.encode() not in shipped and b"***" in shipped


@pytest.mark.parametrize("damage", ["flipped bit", "truncated", "garbage", "another format"])
def test_a_damaged_kept_wheel_is_not_believed(tmp_path: Path, wheel: Path, damage: str) -> None:
    index, digest = ArchiveIndex(tmp_path / "cache"), _sha256(wheel)
    index.keep_parsed(digest, parse_wheel(wheel))
    (kept,) = (tmp_path / "cache" / "lambda-bundle" / "archives").glob("*/*.parsed")
    blob = bytearray(kept.read_bytes())
    if damage == "flipped bit":
        blob[len(blob) // 2] ^= 0x01
    elif damage == "truncated":
        blob = blob[: len(blob) - 10]
    elif damage == "garbage":
        blob = bytearray(b"\x00" * len(blob))
    else:  # a checked file of another format (a newer plugin's): refused by its content
        from poetry_plugin_lambda.atomic import write_checked

        write_checked(kept, b"\xe9\x02\x00\x00\x00" + bytes(blob[-100:]))
        blob = bytearray(kept.read_bytes())
    kept.write_bytes(bytes(blob))
    assert index.parsed(digest, wheel) is None


def test_a_kept_wheel_under_another_file_name_is_not_believed(tmp_path: Path, wheel: Path) -> None:
    """The same bytes under another name are another distribution and version to the lock."""
    index, digest = ArchiveIndex(tmp_path / "cache"), _sha256(wheel)
    index.keep_parsed(digest, parse_wheel(wheel))
    other = wheel.with_name("other-2.0-py3-none-any.whl")
    other.write_bytes(wheel.read_bytes())
    assert index.parsed(digest, other) is None


def test_archive_entries_lead_only_into_the_cache(tmp_path: Path, wheel: Path) -> None:
    cache = tmp_path / "cache"
    index, digest = ArchiveIndex(cache), _sha256(wheel)
    assert index.lookup(digest) is None
    index.record(digest, wheel)
    entry = cache / "lambda-bundle" / "archives" / digest[:2] / digest
    assert entry.read_text() == str(wheel.relative_to(cache))  # relative: a moved cache stays warm
    assert index.lookup(digest) == wheel
    entry.write_text(str(wheel))  # as version 0.2 wrote it: absolute, in the cache
    assert ArchiveIndex(cache).lookup(digest) == wheel
    assert entry.read_text() == str(wheel.relative_to(cache))  # and written again as relative
    outside = tmp_path / "elsewhere" / wheel.name
    outside.parent.mkdir()
    outside.write_bytes(wheel.read_bytes())
    for hint in (str(outside), f"artifacts/../../elsewhere/{wheel.name}", "artifacts/ab/missing.whl"):
        entry.write_text(hint)
        assert ArchiveIndex(cache).lookup(digest) is None, hint
