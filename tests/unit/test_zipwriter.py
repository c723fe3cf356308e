from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
import zipfile
import zlib
from typing import TYPE_CHECKING

import pytest

from poetry_plugin_lambda.zipread import RawSource
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter
from poetry_plugin_lambda.zipwriter import ZipWriteError
from poetry_plugin_lambda.zipwriter import dos_date_time

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

EPOCH = 1_700_000_000  # 2023-11-14 22:13:20 UTC
UNZIP = "/usr/bin/unzip"
MODULE_TEXT = b"".join(b"def function_%d(x):\n    return x * %d\n\n" % (i, i) for i in range(2000))
DATA_BLOB = random.Random(1234).randbytes(50_000)
BIG_STREAM = random.Random(99).randbytes(2_500_000)  # more than two 1 MiB chunks


def make_source(path: Path, *, date_time: tuple[int, ...] = (2020, 1, 2, 3, 4, 6)) -> Path:
    """A wheel-like source: one deflated module, one stored blob."""
    with zipfile.ZipFile(path, "w") as zf:
        deflated = zipfile.ZipInfo("pkg/mod.py", date_time=date_time)  # type: ignore[arg-type]
        deflated.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(deflated, MODULE_TEXT)
        stored = zipfile.ZipInfo("pkg/data.bin", date_time=date_time)  # type: ignore[arg-type]
        stored.compress_type = zipfile.ZIP_STORED
        zf.writestr(stored, DATA_BLOB)
    return path


def write_bundle(build: Callable[[DeterministicZipWriter], None], *, epoch: int = EPOCH) -> bytes:
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=epoch) as writer:
        build(writer)
    return out.getvalue()


def full_bundle(source: Path, stream_file: Path, *, epoch: int = EPOCH) -> bytes:
    def build(writer: DeterministicZipWriter) -> None:
        writer.add_bytes("bootstrap.py", b"print('hi')\n", executable=True)
        with stream_file.open("rb") as stream:
            writer.add_stream("big.bin", stream)
        with zipfile.ZipFile(source) as zf:
            writer.add_from_zip("pkg/mod.py", zf, zf.getinfo("pkg/mod.py"))
            writer.add_from_zip("pkg/data.bin", zf, zf.getinfo("pkg/data.bin"))

    return write_bundle(build, epoch=epoch)


def unzip_test(path: Path) -> None:
    if not os.path.exists(UNZIP):
        return
    result = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_source(tmp_path / "src-1.0-py3-none-any.whl")


@pytest.fixture
def stream_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(BIG_STREAM)
    return path


# --------------------------------------------------------------------------- dos_date_time


def test_dos_date_time_known_value() -> None:
    dos_time, dos_date = dos_date_time(EPOCH)
    assert dos_time == (22 << 11) | (13 << 5) | (20 // 2)
    assert dos_date == ((2023 - 1980) << 9) | (11 << 5) | 14


def test_dos_date_time_rounds_seconds_down_to_even() -> None:
    assert dos_date_time(DOS_EPOCH_MIN + 3) == dos_date_time(DOS_EPOCH_MIN + 2)
    assert dos_date_time(DOS_EPOCH_MIN + 3)[0] == 1


def test_dos_date_time_clamps() -> None:
    assert dos_date_time(0) == dos_date_time(DOS_EPOCH_MIN) == (0, (1 << 5) | 1)
    assert dos_date_time(-5) == dos_date_time(DOS_EPOCH_MIN)
    latest = (23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31
    assert dos_date_time(10**12) == latest


# --------------------------------------------------------------------------- round trip


def test_round_trip(tmp_path: Path, source: Path, stream_file: Path) -> None:
    data = full_bundle(source, stream_file)
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)

    with zipfile.ZipFile(bundle) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["bootstrap.py", "big.bin", "pkg/mod.py", "pkg/data.bin"]
        assert zf.read("bootstrap.py") == b"print('hi')\n"
        assert zf.read("big.bin") == BIG_STREAM
        assert zf.read("pkg/mod.py") == MODULE_TEXT
        assert zf.read("pkg/data.bin") == DATA_BLOB
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.date_time == (2023, 11, 14, 22, 13, 20)
            assert info.comment == b""
            assert info.extra == b""
    unzip_test(bundle)


@pytest.mark.skipif(not os.path.exists(UNZIP), reason="unzip not installed")
def test_unzip_extracts_contents_and_modes(tmp_path: Path, source: Path, stream_file: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(full_bundle(source, stream_file))
    target = tmp_path / "out"
    subprocess.run([UNZIP, "-q", str(bundle), "-d", str(target)], check=True)
    assert (target / "pkg" / "mod.py").read_bytes() == MODULE_TEXT
    assert (target / "bootstrap.py").stat().st_mode & 0o777 == 0o755
    assert (target / "pkg" / "mod.py").stat().st_mode & 0o111 == 0


def test_members_hold_what_was_written(source: Path) -> None:
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=EPOCH) as writer:
        writer.add_bytes("a.txt", b"hello")
        with zipfile.ZipFile(source) as zf:
            info = zf.getinfo("pkg/mod.py")
            writer.add_from_zip("pkg/mod.py", zf, info)
    raw_deflate_size = len(zlib.compress(b"hello", 6)) - 6  # minus zlib header and adler32
    with zipfile.ZipFile(out) as zf:
        a, mod = zf.getinfo("a.txt"), zf.getinfo("pkg/mod.py")
        assert (a.compress_size, a.file_size, a.CRC) == (raw_deflate_size, 5, zlib.crc32(b"hello"))
        assert (mod.compress_size, mod.file_size, mod.CRC) == (info.compress_size, info.file_size, info.CRC)
        assert zf.read("pkg/mod.py") == MODULE_TEXT


def test_empty_member(tmp_path: Path) -> None:
    bundle = tmp_path / "empty.zip"
    bundle.write_bytes(write_bundle(lambda w: w.add_bytes("empty.txt", b"")))
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read("empty.txt") == b""
        assert zf.testzip() is None
    unzip_test(bundle)


def test_empty_archive() -> None:
    data = write_bundle(lambda w: None)
    assert data == b"PK\x05\x06" + b"\x00" * 18
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == []


def test_source_opened_from_file_object(source: Path) -> None:
    """A ZipFile without a path falls back to its own file object, leaving it usable."""
    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(io.BytesIO(source.read_bytes())) as zf:
            writer.add_from_zip("pkg/mod.py", zf, zf.getinfo("pkg/mod.py"))
            assert zf.read("pkg/data.bin") == DATA_BLOB

    with zipfile.ZipFile(io.BytesIO(write_bundle(build))) as zf:
        assert zf.read("pkg/mod.py") == MODULE_TEXT


def test_source_with_data_descriptors(tmp_path: Path) -> None:
    """Wheels written to a pipe carry data descriptors (flag bit 3); the raw copy still works."""

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.buffer += data
            return len(data)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/mod.py", MODULE_TEXT)
    source = tmp_path / "dd.whl"
    source.write_bytes(bytes(sink.buffer))

    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(source) as zf:
            info = zf.getinfo("pkg/mod.py")
            assert info.flag_bits & 0x08
            writer.add_from_zip("pkg/mod.py", zf, info)

    data = write_bundle(build)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("pkg/mod.py") == MODULE_TEXT
        assert zf.getinfo("pkg/mod.py").flag_bits == 0


def test_writes_into_a_real_temp_file(source: Path) -> None:
    with tempfile.TemporaryFile() as fh:
        with DeterministicZipWriter(fh, epoch=EPOCH) as writer, zipfile.ZipFile(source) as zf:
            writer.add_from_zip("pkg/data.bin", zf, zf.getinfo("pkg/data.bin"))
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            assert zf.read("pkg/data.bin") == DATA_BLOB


# --------------------------------------------------------------------------- byte format


def test_local_and_central_header_fields() -> None:
    data = write_bundle(lambda w: w.add_bytes("a.txt", b"hello"))
    (sig, version, flags, method, _t, _d, crc, csize, usize, name_len, extra_len) = struct.unpack(
        "<4sHHHHHLLLHH", data[:30]
    )
    assert (sig, version, flags, method) == (b"PK\x03\x04", 20, 0, 8)
    assert (crc, usize, name_len, extra_len) == (zlib.crc32(b"hello"), 5, 5, 0)
    assert data[30 + name_len + csize : 30 + name_len + csize + 4] == b"PK\x01\x02"
    central = data.index(b"PK\x01\x02")
    made_by, needed = struct.unpack("<HH", data[central + 4 : central + 8])
    assert (made_by, needed) == ((3 << 8) | 20, 20)


def test_add_bytes_and_add_stream_agree() -> None:
    via_bytes = write_bundle(lambda w: w.add_bytes("x", BIG_STREAM))
    via_stream = write_bundle(lambda w: w.add_stream("x", io.BytesIO(BIG_STREAM)))
    assert via_bytes == via_stream


def test_close_is_idempotent() -> None:
    out = io.BytesIO()
    writer = DeterministicZipWriter(out, epoch=EPOCH)
    writer.add_bytes("a", b"a")
    writer.close()
    once = out.getvalue()
    writer.close()
    assert out.getvalue() == once
    with pytest.raises(ValueError, match="closed"):
        writer.add_bytes("b", b"b")


def test_context_manager_does_not_finish_on_error() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), DeterministicZipWriter(out, epoch=EPOCH) as writer:
        writer.add_bytes("a", b"a")
        raise RuntimeError("boom")
    assert b"PK\x05\x06" not in out.getvalue()


# --------------------------------------------------------------------------- determinism


def test_same_inputs_same_bytes(source: Path, stream_file: Path) -> None:
    assert full_bundle(source, stream_file) == full_bundle(source, stream_file)


def test_source_mtimes_do_not_matter(tmp_path: Path, stream_file: Path) -> None:
    old = make_source(tmp_path / "old.whl", date_time=(1999, 1, 1, 0, 0, 0))
    new = make_source(tmp_path / "new.whl", date_time=(2024, 6, 30, 12, 0, 0))
    os.utime(stream_file, (1_000_000_000, 1_000_000_000))
    first = full_bundle(old, stream_file)
    os.utime(stream_file, (time.time(), time.time()))
    os.utime(new, (1_500_000_000, 1_500_000_000))
    assert full_bundle(new, stream_file) == first


def test_epoch_changes_bytes(source: Path, stream_file: Path) -> None:
    assert full_bundle(source, stream_file, epoch=EPOCH) != full_bundle(
        source, stream_file, epoch=EPOCH + 86_400
    )


def test_epoch_before_1980_clamps(source: Path, stream_file: Path) -> None:
    clamped = full_bundle(source, stream_file, epoch=0)
    assert clamped == full_bundle(source, stream_file, epoch=DOS_EPOCH_MIN)
    with zipfile.ZipFile(io.BytesIO(clamped)) as zf:
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# --------------------------------------------------------------------------- raw copy


def test_deflated_member_is_copied_raw(source: Path, stream_file: Path) -> None:
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo("pkg/mod.py")
    raw = source.read_bytes()
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[header + 26 : header + 30])
    start = header + 30 + name_len + extra_len
    compressed = raw[start : start + info.compress_size]
    assert zlib.decompress(compressed, -15) == MODULE_TEXT

    data = full_bundle(source, stream_file)
    position = data.find(compressed)
    assert position > 0
    assert data[position - len("pkg/mod.py") : position] == b"pkg/mod.py"


def test_raw_copy_is_not_recompressed(tmp_path: Path) -> None:
    """A level-1 source stays level-1 bytes: proof that nothing was recompressed at level 6."""
    source = tmp_path / "fast.whl"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("m.py", MODULE_TEXT)
    level1 = zlib.compressobj(1, zlib.DEFLATED, -15)
    expected = level1.compress(MODULE_TEXT) + level1.flush()

    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(source) as zf:
            writer.add_from_zip("m.py", zf, zf.getinfo("m.py"))

    assert expected in write_bundle(build)


# --------------------------------------------------------------------------- permissions


def test_permissions_and_create_system(source: Path, stream_file: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(full_bundle(source, stream_file))) as zf:
        modes = {info.filename: info.external_attr >> 16 for info in zf.infolist()}
        assert {info.create_system for info in zf.infolist()} == {3}
    assert modes == {
        "bootstrap.py": 0o100755,
        "big.bin": 0o100644,
        "pkg/mod.py": 0o100644,
        "pkg/data.bin": 0o100644,
    }


def test_executable_from_zip(source: Path) -> None:
    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(source) as zf:
            writer.add_from_zip("bin/tool", zf, zf.getinfo("pkg/mod.py"), executable=True)

    with zipfile.ZipFile(io.BytesIO(write_bundle(build))) as zf:
        assert zf.getinfo("bin/tool").external_attr >> 16 == 0o100755


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "name", ["", "../x", "a/../x", "/abs", "a\\b", "dir/", "a//b", "./a", "a\x00b"]
)
def test_bad_names_are_refused(name: str) -> None:
    writer = DeterministicZipWriter(io.BytesIO(), epoch=EPOCH)
    with pytest.raises(ValueError):
        writer.add_bytes(name, b"x")


def test_duplicate_name_is_refused(source: Path) -> None:
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=EPOCH) as writer:
        writer.add_bytes("a.txt", b"x")
        with pytest.raises(ValueError, match="duplicate"):
            writer.add_bytes("a.txt", b"y")
        with pytest.raises(ValueError, match="duplicate"), zipfile.ZipFile(source) as zf:
            writer.add_from_zip("a.txt", zf, zf.getinfo("pkg/mod.py"))
    with zipfile.ZipFile(out) as zf:
        assert zf.read("a.txt") == b"x"


def _set_flag_bits(data: bytes, bits: int) -> bytes:
    """Set general-purpose flag bits in the first local header and the first central record."""
    patched = bytearray(data)
    central = data.index(b"PK\x01\x02")
    for offset in (6, central + 8):
        (flags,) = struct.unpack_from("<H", patched, offset)
        struct.pack_into("<H", patched, offset, flags | bits)
    return bytes(patched)


def _assert_refused_cleanly(source: Path, member: str, match: str) -> None:
    """The refusal leaves the bundle valid: later members still land in a readable archive."""
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=EPOCH) as writer, zipfile.ZipFile(source) as zf:
        with pytest.raises(ZipWriteError, match=match):
            writer.add_from_zip(member, zf, zf.getinfo(member))
        writer.add_bytes("ok.txt", b"ok")
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["ok.txt"]
        assert zf.testzip() is None


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_encrypted_member_is_refused(tmp_path: Path, method: int) -> None:
    plain = tmp_path / "plain.whl"
    with zipfile.ZipFile(plain, "w", compression=method) as zf:
        zf.writestr("secret.py", MODULE_TEXT)
    encrypted = tmp_path / "encrypted.whl"
    encrypted.write_bytes(_set_flag_bits(plain.read_bytes(), 0x01))
    _assert_refused_cleanly(encrypted, "secret.py", "secret.py: encrypted")


def test_bzip2_member_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "bz.whl"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("m.py", MODULE_TEXT)
    _assert_refused_cleanly(source, "m.py", "m.py: unsupported compression method 12")


def test_bad_local_header_signature_is_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "bad.whl")
    raw = bytearray(source.read_bytes())
    raw[0:4] = b"XXXX"  # pkg/mod.py's local header
    source.write_bytes(bytes(raw))
    _assert_refused_cleanly(source, "pkg/mod.py", "bad local header signature")


def test_local_sizes_disagreeing_are_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "sizes.whl")
    raw = bytearray(source.read_bytes())
    (size,) = struct.unpack_from("<L", raw, 22)
    struct.pack_into("<L", raw, 22, size + 1)  # local uncompressed size of pkg/mod.py
    source.write_bytes(bytes(raw))
    _assert_refused_cleanly(source, "pkg/mod.py", "size disagrees")


def test_local_header_naming_another_member_is_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "name.whl")
    raw = bytearray(source.read_bytes())
    assert raw[30:40] == b"pkg/mod.py"  # pkg/mod.py's local header name
    raw[30:40] = b"pkg/evi.py"
    source.write_bytes(bytes(raw))
    _assert_refused_cleanly(source, "pkg/mod.py", "local header names 'pkg/evi.py'")


def test_non_ascii_local_names_are_checked_too(tmp_path: Path) -> None:
    source = tmp_path / "unicode.whl"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/donn\u00e9es.py", MODULE_TEXT)  # UTF-8 flag set by zipfile
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=EPOCH) as writer, zipfile.ZipFile(source) as zf:
        writer.add_from_zip("pkg/donn\u00e9es.py", zf, zf.getinfo("pkg/donn\u00e9es.py"))
    with zipfile.ZipFile(out) as zf:
        assert zf.read("pkg/donn\u00e9es.py") == MODULE_TEXT
    raw = bytearray(source.read_bytes())
    at = raw.index("\u00e9".encode())
    raw[at : at + 2] = "\u00e8".encode()
    source.write_bytes(bytes(raw))
    _assert_refused_cleanly(source, "pkg/donn\u00e9es.py", "local header names 'pkg/donn\u00e8es.py'")


def test_truncated_source_is_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "trunc.whl")
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo("pkg/mod.py")
    out = io.BytesIO()
    with DeterministicZipWriter(out, epoch=EPOCH) as writer, zipfile.ZipFile(source) as zf:
        with open(source, "r+b") as fh:
            fh.truncate(info.header_offset + 30 + len("pkg/mod.py") + 10)
        with pytest.raises(ZipWriteError, match="truncated"):
            writer.add_from_zip("pkg/mod.py", zf, info)
        writer.add_bytes("ok.txt", b"ok")
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["ok.txt"]


# --------------------------------------------------------------------------- zip64 and names


def test_zip64_for_more_than_65535_entries(tmp_path: Path) -> None:
    count = 70_000
    started = time.monotonic()
    bundle = tmp_path / "many.zip"
    with bundle.open("w+b") as fh, DeterministicZipWriter(fh, epoch=EPOCH) as writer:
        for i in range(count):
            writer.add_bytes(f"d{i // 1000:02d}/f{i:05d}.txt", b"%d" % i)
    data = bundle.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    end = data[-22:]
    assert end[:4] == b"PK\x05\x06"
    assert struct.unpack("<HH", end[8:12]) == (0xFFFF, 0xFFFF)

    with zipfile.ZipFile(bundle) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert infos[-1].filename == "d69/f69999.txt"
        assert zf.read("d69/f69999.txt") == b"69999"
        assert zf.read("d00/f00000.txt") == b"0"
    unzip_test(bundle)
    assert time.monotonic() - started < 30


def test_non_ascii_name_round_trips_with_utf8_flag(tmp_path: Path) -> None:
    name = "pkg/données/naïve_日本.py"

    def build(writer: DeterministicZipWriter) -> None:
        writer.add_bytes(name, b"x = 1\n")
        writer.add_bytes("ascii.py", b"y = 2\n")

    bundle = tmp_path / "utf8.zip"
    bundle.write_bytes(write_bundle(build))
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read(name) == b"x = 1\n"
        assert zf.getinfo(name).flag_bits & 0x800
        assert zf.getinfo("ascii.py").flag_bits == 0
    unzip_test(bundle)


def test_non_ascii_source_member_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "u.whl"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/é.py", MODULE_TEXT)

    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(source) as zf:
            writer.add_from_zip("pkg/é.py", zf, zf.getinfo("pkg/é.py"))

    with zipfile.ZipFile(io.BytesIO(write_bundle(build))) as zf:
        assert zf.read("pkg/é.py") == MODULE_TEXT


@pytest.mark.skipif(shutil.which("zipinfo") is None, reason="zipinfo not installed")
def test_zipinfo_sees_unix_modes(tmp_path: Path) -> None:
    bundle = tmp_path / "modes.zip"
    bundle.write_bytes(write_bundle(lambda w: w.add_bytes("run", b"#!/bin/sh\n", executable=True)))
    listing = subprocess.run(["zipinfo", str(bundle)], capture_output=True, text=True, check=True)
    assert "-rwxr-xr-x  2.0 unx" in listing.stdout


class ShiftedFile(io.BytesIO):
    """Pretends to start `base` bytes into a file, so offsets pass 4 GiB without writing them."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.base = base

    def tell(self) -> int:
        return super().tell() + self.base

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            pos -= self.base
        return super().seek(pos, whence) + self.base


def test_offsets_beyond_4_gib_are_refused_not_zip64(source: Path) -> None:
    """A Lambda ZIP can never pass 4 GiB: the writer says so instead of writing ZIP64 records."""
    out = ShiftedFile(5 * 2**30)
    with pytest.raises(ZipWriteError, match="passes 4 GiB"), DeterministicZipWriter(out, epoch=EPOCH) as writer:
        writer.add_bytes("a.txt", b"hello")
    with pytest.raises(ZipWriteError, match="passes 4 GiB"), DeterministicZipWriter(ShiftedFile(5 * 2**30), epoch=EPOCH) as writer:
        with zipfile.ZipFile(source) as zf:
            writer.add_from_zip("pkg/mod.py", zf, zf.getinfo("pkg/mod.py"))


def test_central_directory_beyond_4_gib_is_refused() -> None:
    out = ShiftedFile(2**32 - 40)
    writer = DeterministicZipWriter(out, epoch=EPOCH)
    with pytest.raises(ZipWriteError, match="passes 4 GiB"):
        writer.add_bytes("a.txt", b"hello")
        writer.close()


def test_members_from_several_sources_interleaved(tmp_path: Path) -> None:
    first = make_source(tmp_path / "one.whl")
    second = tmp_path / "two.whl"
    with zipfile.ZipFile(second, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("two/mod.py", MODULE_TEXT[::-1])

    def build(writer: DeterministicZipWriter) -> None:
        with zipfile.ZipFile(first) as one, zipfile.ZipFile(second) as two:
            writer.add_from_zip("a.py", one, one.getinfo("pkg/mod.py"))
            writer.add_from_zip("b.py", two, two.getinfo("two/mod.py"))
            writer.add_from_zip("c.py", one, one.getinfo("pkg/mod.py"))

    with zipfile.ZipFile(io.BytesIO(write_bundle(build))) as zf:
        assert zf.read("a.py") == zf.read("c.py") == MODULE_TEXT
        assert zf.read("b.py") == MODULE_TEXT[::-1]


@pytest.mark.parametrize("limit", [0, 1 << 30], ids=["member by member", "whole"])
def test_an_archive_read_whole_or_member_by_member_gives_the_same_raw_bytes(source: Path, limit: int) -> None:
    whole = RawSource.whole(source, limit=limit)
    one_by_one = RawSource.open(source)
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            assert infos
            for info in infos:
                assert whole.raw_bytes(info) == one_by_one.raw_bytes(info)
    finally:
        whole.close()
        one_by_one.close()


def test_a_truncated_archive_read_whole_is_refused(tmp_path: Path, source: Path) -> None:
    with zipfile.ZipFile(source) as zf:
        info = max(zf.infolist(), key=lambda i: i.header_offset)
    cut = tmp_path / "cut.whl"
    cut.write_bytes(source.read_bytes()[: info.header_offset + 40])
    whole = RawSource.whole(cut)
    with pytest.raises(ZipWriteError):
        whole.raw_bytes(info)
