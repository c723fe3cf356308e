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
    assert dict(one.listed) == dict(other.listed) and one.metadata == other.metadata and one.raw_crcs == other.raw_crcs
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
    parsed, _ = _unpack(ArchiveIndex(tmp_path / "elsewhere"), wheel)
    assert len(parsed.raw_crcs) == len(parsed.members)
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


# -- unpacked copies -----------------------------------------------------------------------------


def _unpack(index: ArchiveIndex, wheel: Path) -> tuple[ParsedWheel, str]:
    from poetry_plugin_lambda.unpacked import unpack

    parsed, digest = parse_wheel(wheel), _sha256(wheel)
    with index.unpacking(digest, parsed) as writer:
        parsed = unpack(parsed, writer)
    return parsed, digest


def test_an_unpacked_copy_holds_every_installable_member_in_order(tmp_path: Path, wheel: Path) -> None:
    import zipfile

    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)
    copy = index.unpacked(digest, parsed)
    assert copy is not None
    blob = copy.path.read_bytes()
    with zipfile.ZipFile(wheel) as zf:
        for member in parsed.members:
            start, _ = copy.offsets[member.info.header_offset]
            assert blob[start : start + member.info.file_size] == zf.read(member.info)
    copy.path.write_bytes(blob[:-1])  # not of the wheel's size: not believed
    assert index.unpacked(digest, parsed) is None
    assert not [p for p in copy.path.parent.iterdir() if ".tmp" in p.name or ".new" in p.name]


def test_an_unpacked_copy_is_not_kept_when_the_check_fails(tmp_path: Path, wheel: Path) -> None:
    from poetry_plugin_lambda.errors import WheelError

    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = parse_wheel(wheel), _sha256(wheel)
    with pytest.raises(WheelError), index.unpacking(digest, parsed) as sink:
        sink.write(b"half")
        raise WheelError("the RECORD check failed")
    assert index.unpacked(digest, parsed) is None
    assert list((tmp_path / "cache" / "lambda-bundle" / "archives").rglob("*")) == [
        tmp_path / "cache" / "lambda-bundle" / "archives" / digest[:2]
    ]  # nothing left, not even a temporary


def test_an_unwritable_cache_costs_the_copy_not_the_check(tmp_path: Path, wheel: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "lambda-bundle").mkdir(parents=True)
    (cache / "lambda-bundle" / "archives").write_text("a file where the folder should be")
    index = ArchiveIndex(cache)
    parsed, digest = _unpack(index, wheel)  # no error
    assert index.unpacked(digest, parsed) is None


@pytest.mark.parametrize("damage", [None, "flipped byte", "swapped members"])
def test_the_outputs_copy_from_the_unpacked_copy_and_never_ship_a_damaged_one(
    tmp_path: Path, wheel: Path, damage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target dir takes a member's bytes from the copy only when they have the member's size
    and CRC; otherwise they are inflated from the wheel: the outputs are the same either way."""
    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from poetry_plugin_lambda.wheels import contents_of

    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)
    entries = assemble([contents_of(parsed)])
    emit.write_outputs(entries, tmp_path / "plain" / "fn.zip", tmp_path / "plain" / "target", 315532800)
    copy = index.unpacked(digest, parsed)
    assert copy is not None
    blob = bytearray(copy.path.read_bytes())
    if damage == "flipped byte":
        blob[len(blob) // 2] ^= 0x20  # inside kept/data.bin
    elif damage == "swapped members":
        second = sorted(start for start, _ in copy.offsets.values())[1]
        blob = blob[second:] + blob[:second]  # same size, every member's bytes elsewhere
    copy.path.write_bytes(bytes(blob))
    inflated: list[str] = []
    original = emit.inflated
    monkeypatch.setattr(emit, "inflated", lambda archive, info, raw: inflated.append(info.filename) or original(archive, info, raw))
    emit.write_outputs(entries, tmp_path / "copied" / "fn.zip", tmp_path / "copied" / "target", 315532800, {wheel: copy})
    assert (tmp_path / "copied" / "fn.zip").read_bytes() == (tmp_path / "plain" / "fn.zip").read_bytes()
    files = {p.relative_to(tmp_path / "plain" / "target"): p.read_bytes() for p in (tmp_path / "plain" / "target").rglob("*") if p.is_file()}
    assert files == {p.relative_to(tmp_path / "copied" / "target"): p.read_bytes() for p in (tmp_path / "copied" / "target").rglob("*") if p.is_file()}
    from_wheel = {m.info.filename for m in parsed.members if m.data is None}
    inflated = [name for name in inflated if name in from_wheel]  # not the rewritten RECORD's
    if damage is None:
        assert inflated == []  # every member of the wheel came from the copy
    elif damage == "flipped byte":
        assert inflated == ["kept/data.bin"]
    else:
        assert set(inflated) == from_wheel


@pytest.mark.parametrize("damage", [None, "flipped byte", "changed while read"])
def test_a_large_member_comes_from_the_copy_only_when_it_is_true(
    tmp_path: Path, damage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member too large to hold is streamed; from the copy only if the copy's bytes have its
    CRC, and a copy that changes while it is streamed fails the bundle, never ships."""
    import random

    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from poetry_plugin_lambda.errors import BundleError
    from poetry_plugin_lambda.wheels import contents_of

    blob = random.Random(3).randbytes(3_000_000)
    big = build_wheel(tmp_path / "cache" / "artifacts", "big", "1.0", files={"big/__init__.py": "", "big/blob.bin": blob})
    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, big)
    entries = assemble([contents_of(parsed)])
    copy = index.unpacked(digest, parsed)
    assert copy is not None
    if damage is not None:
        data = bytearray(copy.path.read_bytes())
        data[copy.offsets[next(m.info.header_offset for m in parsed.members if m.path == "big/blob.bin")][0] + 5] ^= 1
        copy.path.write_bytes(bytes(data))
    inflaters: list[str] = []
    original_inflater = emit.Inflater
    monkeypatch.setattr(emit, "Inflater", lambda archive, info: inflaters.append(info.filename) or original_inflater(archive, info))
    if damage == "changed while read":  # the check read the true bytes; the copy changed after
        monkeypatch.setattr(emit._Copy, "_crc", lambda self, info, start: info.CRC)
        with pytest.raises(BundleError, match="changed while it was read"):
            emit.write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", 315532800, {big: copy})
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        return
    emit.write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", 315532800, {big: copy})
    assert (tmp_path / "out" / "target" / "big" / "blob.bin").read_bytes() == blob
    assert inflaters == ([] if damage is None else ["big/blob.bin"])


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_wheel_whose_bytes_changed_since_its_copy_was_made_fails_as_it_always_did(tmp_path: Path, size: str) -> None:
    """The ZIP copies the wheel's compressed bytes as they are: with a copy they are not inflated,
    so they are held to the CRC-32 they had when checked; changed, they are inflated, and fail."""
    import random
    import zipfile

    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from poetry_plugin_lambda.errors import BundleError
    from poetry_plugin_lambda.wheels import contents_of

    blob = random.Random(5).randbytes(3_000_000 if size == "large" else 4000)
    wheel = build_wheel(tmp_path / "cache" / "artifacts", "chg", "1.0", files={"chg/__init__.py": "", "chg/blob.bin": blob})
    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)
    copy = index.unpacked(digest, parsed)
    assert copy is not None
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("chg/blob.bin")
    data = bytearray(wheel.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x01  # the stored bytes
    wheel.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="blob.bin does not match its CRC|blob.bin cannot be read"):
        emit.write_outputs(assemble([contents_of(parsed)]), tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", 315532800, {wheel: copy})
    assert not any((tmp_path / "out").iterdir())


def _rewrite_stream(wheel: Path, member: str, raw: bytes) -> None:
    """Put `raw` in place of `member`'s compressed bytes, every size and offset made to agree."""
    import struct
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(member)
    data = bytearray(wheel.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    delta = len(raw) - info.compress_size
    data[start : start + info.compress_size] = raw
    struct.pack_into("<L", data, info.header_offset + 18, len(raw))
    end = data.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<L", data, end + 16)
    struct.pack_into("<L", data, end + 16, cd_offset + delta)
    at = cd_offset + delta
    while data[at : at + 4] == b"PK\x01\x02":
        n, e, c = struct.unpack_from("<HHH", data, at + 28)
        (offset,) = struct.unpack_from("<L", data, at + 42)
        if bytes(data[at + 46 : at + 46 + n]).decode() == member:
            struct.pack_into("<L", data, at + 20, len(raw))
        elif offset > info.header_offset:
            struct.pack_into("<L", data, at + 42, offset + delta)
        at += 46 + n + e + c
    wheel.write_bytes(bytes(data))


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("stream", ["runs on past its size", "never ends"])
def test_a_member_whose_stream_zipfile_forgives_gets_no_copy_and_is_refused_as_before(
    tmp_path: Path, stream: str, size: str
) -> None:
    """zipfile stops at a member's declared size and does not ask whether its deflate stream
    ended there; the outputs' reader does. Such a wheel gets no unpacked copy, so the outputs
    inflate it and refuse it, as they did before copies existed (never a ZIP member that
    inflates to more, or to something else, than the file beside it)."""
    import random
    import zlib

    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from poetry_plugin_lambda.errors import BundleError
    from poetry_plugin_lambda.wheels import contents_of

    good = b"x = 1\n" * 50 if size == "small" else random.Random(1).randbytes(1_500_000)
    wheel = build_wheel(tmp_path / "cache" / "artifacts", "evil", "1.0", files={"evil/__init__.py": good})
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    if stream == "runs on past its size":
        raw = deflate.compress(good + b"import os; os.system('echo pwned')\n") + deflate.flush()
    else:
        raw = deflate.compress(good) + deflate.flush(zlib.Z_SYNC_FLUSH)
    _rewrite_stream(wheel, "evil/__init__.py", raw)
    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)  # checked as before (zipfile): RECORD holds for the first bytes
    assert parsed.raw_crcs == () and index.unpacked(digest, parsed) is None
    assert not list((tmp_path / "cache" / "lambda-bundle" / "archives").glob("*/*.unpacked"))
    with pytest.raises(BundleError, match="evil/__init__.py (does not match its CRC|cannot be read)"):
        emit.write_outputs(assemble([contents_of(parsed)]), tmp_path / "out" / "fn.zip", tmp_path / "out" / "t", 315532800)


def test_a_member_left_out_whose_local_header_disagrees_leaves_the_bundle_as_before(tmp_path: Path) -> None:
    """The copy reads every member strictly; one that fails costs the wheel its copy, not the
    bundle that leaves that member out."""
    import struct
    import zipfile

    from poetry_plugin_lambda import emit
    from poetry_plugin_lambda.assemble import assemble
    from poetry_plugin_lambda.assemble import file_filter
    from poetry_plugin_lambda.wheels import contents_of

    wheel = build_wheel(tmp_path / "cache" / "artifacts", "odd", "1.0",
                        files={"odd/__init__.py": "x = 1\n", "odd/tests/test_x.py": "y = 2\n"})
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("odd/tests/test_x.py")
    data = bytearray(wheel.read_bytes())
    struct.pack_into("<L", data, info.header_offset + 14, 0)  # its local header's CRC: 0
    wheel.write_bytes(bytes(data))
    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)
    assert index.unpacked(digest, parsed) is None
    drop = file_filter(("odd/tests/*",), "")
    emit.write_outputs(assemble([contents_of(parsed, drop)]), tmp_path / "out" / "fn.zip", tmp_path / "out" / "t", 315532800)
    assert (tmp_path / "out" / "t" / "odd" / "__init__.py").read_text() == "x = 1\n"


def test_a_wheel_too_large_unzipped_gets_no_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compression bomb of a wheel never fills the cache: past `MAX_COPY` unzipped, no copy."""
    from poetry_plugin_lambda import unpacked

    monkeypatch.setattr(unpacked, "MAX_COPY", 4000)
    wheel = build_wheel(tmp_path / "cache" / "artifacts", "bomb", "1.0", files={"bomb/__init__.py": b"\0" * 5000})
    index = ArchiveIndex(tmp_path / "cache")
    parsed, digest = _unpack(index, wheel)
    assert len(parsed.raw_crcs) == len(parsed.members)  # checked all the same
    assert index.unpacked(digest, parsed) is None
    assert not list((tmp_path / "cache").rglob("*.unpacked")) and not list((tmp_path / "cache").rglob("*.tmp*"))


def test_writing_copies_leaves_no_descriptor_open(tmp_path: Path, wheel: Path) -> None:
    import os

    index = ArchiveIndex(tmp_path / "cache")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        for copy in (tmp_path / "cache").rglob("*.unpacked"):
            copy.unlink()
        _unpack(index, wheel)
    assert len(os.listdir("/proc/self/fd")) == before
    (copy,) = (tmp_path / "cache").rglob("*.unpacked")
    assert copy.stat().st_mode & 0o777 == 0o644


def test_a_copy_the_cache_cannot_hold_costs_one_check_not_one_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full or read-only cache (or a restored cache without its copies): the wheel is checked
    once, its parsed entry kept; later runs inflate its members in the outputs, as before."""
    from poetry_plugin_lambda import pipeline
    from poetry_plugin_lambda import unpacked
    from poetry_plugin_lambda.fetch import Artifact

    cache = tmp_path / "cache"
    wheel = build_wheel(cache / "artifacts", "w", "1.0", files={"w/__init__.py": "x = 1\n" * 1000})
    digest = _sha256(wheel)
    (cache / "lambda-bundle" / "archives" / digest[:2] / f"{digest}.unpacked").mkdir(parents=True)  # no room
    checks: list[Path] = []
    original = unpacked.unpack
    monkeypatch.setattr(pipeline, "unpack", lambda parsed, writer: checks.append(parsed.archive) or original(parsed, writer))
    for _ in range(3):
        shared = pipeline.SharedWork.__new__(pipeline.SharedWork)  # only what `_read` uses
        shared._known, shared._parsed, shared.unpacked = ArchiveIndex(cache), {}, {}
        shared._read(Artifact("w", "1.0", wheel, digest))
        assert wheel in shared._parsed and wheel not in shared.unpacked
    assert checks == [wheel]
