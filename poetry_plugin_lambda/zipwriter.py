"""A ZIP writer for Lambda bundles that is fast and byte-reproducible.

Why not `zipfile.ZipFile` for writing:

* Speed. Most of a bundle comes out of wheels, whose members are already DEFLATE-compressed.
  `add_from_zip` copies those compressed bytes verbatim (CRC and sizes come from the wheel's
  central directory), so nothing is decompressed and recompressed. Only stored members and
  files from disk are deflated, streamed in 1 MiB chunks so no member is ever held in memory.
* Reproducibility. Every header field that `zipfile` fills from the host (timestamps, "made by"
  system, data-descriptor flags, extra fields, permission bits) is fixed here: the timestamp comes
  from one `epoch`, the method is always deflate, permissions are 0644 or 0755, no data
  descriptors, no comments, no extra fields. Raw-copied members are the same bytes on every
  machine; members deflated here are the same bytes wherever the same zlib build runs.
* Size. A Lambda ZIP is capped far below 4 GiB, so members and offsets never need ZIP64; a
  ZIP that would is refused with a clear error. Only the ZIP64 end record stays, for bundles of
  more than 65,535 files.

The archive holds regular files only, written in call order: sorting is the caller's job.
"""

from __future__ import annotations

import calendar
import io
import os
import struct
import time
import zipfile
import zlib
from typing import TYPE_CHECKING
from typing import BinaryIO
from typing import NamedTuple

from poetry_plugin_lambda.zipread import CHUNK
from poetry_plugin_lambda.zipread import FLAG_UTF8
from poetry_plugin_lambda.zipread import LOCAL
from poetry_plugin_lambda.zipread import LOCAL_SIG
from poetry_plugin_lambda.zipread import ZIP32_LIMIT
from poetry_plugin_lambda.zipread import BrokenZip
from poetry_plugin_lambda.zipread import RawSource
from poetry_plugin_lambda.zipread import ZipWriteError
from poetry_plugin_lambda.zipread import check_source_member
from poetry_plugin_lambda.zipread import parsing_zip

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Iterator
    from collections.abc import Sequence
    from types import TracebackType

DOS_EPOCH_MIN: int = 315532800  # 1980-01-01 00:00:00 UTC, the earliest time a ZIP can store
DOS_EPOCH_MAX: int = calendar.timegm((2107, 12, 31, 23, 59, 59, 0, 0, 0))  # the latest

ZIP16_LIMIT = 0xFFFF
DEFLATE_LEVEL = 6

_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45
_SYSTEM_UNIX = 3
_METHOD_DEFLATE = 8
_MODE_FILE = 0o100644
_MODE_EXECUTABLE = 0o100755

_CENTRAL_SIG = b"PK\x01\x02"
_END_SIG = b"PK\x05\x06"
_END64_SIG = b"PK\x06\x06"
_LOCATOR64_SIG = b"PK\x06\x07"

# signature, made by, version needed, flags, method, time, date, crc, compressed, uncompressed,
# name length, extra length, comment length, disk, internal attrs, external attrs, offset
_CENTRAL = struct.Struct("<4sHHHHHHLLLHHHHHLL")
# signature, disk, disk with central directory, entries on disk, entries, cd size, cd offset,
# comment length
_END = struct.Struct("<4sHHHHLLH")
# signature, record size, made by, version needed, disk, disk with cd, entries on disk,
# entries, cd size, cd offset
_END64 = struct.Struct("<4sQHHLLQQQQ")
# signature, disk with zip64 end record, offset of zip64 end record, total disks
_LOCATOR64 = struct.Struct("<4sLQL")
_CRC_AND_SIZES_OFFSET = 14  # where crc/compressed/uncompressed sit inside a local header


def dos_date_time(epoch: int) -> tuple[int, int]:
    """(dos_time, dos_date) for a UTC epoch; clamps to 1980-01-01..2107-12-31; seconds rounded
    down to even.

    ZIP stores local-time-less DOS stamps with 2 s resolution; using UTC and clamping makes the
    stamp a pure function of `epoch` (e.g. SOURCE_DATE_EPOCH=0 still gives a valid archive).
    """
    clamped = min(max(int(epoch), DOS_EPOCH_MIN), DOS_EPOCH_MAX)
    t = time.gmtime(clamped)
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date


class Record(NamedTuple):
    """Everything the central directory needs about one member (a tuple: a bundle makes them by
    the ten thousand, and a frozen dataclass takes three times as long to make)."""

    name_bytes: bytes
    crc: int
    compressed_size: int
    file_size: int
    flags: int
    offset: int
    external_attr: int


def unsafe_path(name: str) -> bool:
    """An empty, `.` or `..` part (a leading or trailing slash too), a backslash or a NUL.

    Substring tests, not a split: bundles and wheels have names by the ten thousand. The one
    check behind the names a wheel may hold (`wheels.check_member_name`) and the ZIP may get.
    """
    framed = f"/{name}/"  # such a part shows as `//`, `/./` or `/../`
    return "//" in framed or "/./" in framed or "/../" in framed or "\\" in name or "\x00" in name


def validate_name(name: str) -> bytes:
    """The UTF-8 name, after refusing names that are unsafe or not plain file paths."""
    if unsafe_path(name):
        _refuse(name)
    encoded = name.encode("utf-8")
    if len(encoded) > ZIP16_LIMIT:
        raise ValueError(f"member name too long: {name[:64]!r}...")
    return encoded


def _refuse(name: str) -> None:
    """Say what is wrong with a name `validate_name` caught."""
    if not name:
        raise ValueError("empty member name")
    if name.startswith("/"):
        raise ValueError(f"absolute member name: {name!r}")
    if "\\" in name:
        raise ValueError(f"backslash in member name: {name!r}")
    if "\x00" in name:
        raise ValueError(f"NUL in member name: {name!r}")
    if name.endswith("/"):
        raise ValueError(f"directory member name (files only): {name!r}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"bad path segment {segment!r} in member name: {name!r}")
    raise AssertionError(f"unreachable: {name!r}")


def name_flags(name: str) -> int:
    """Bit 11 (UTF-8) only when needed, so ASCII names look like every other zip tool's."""
    return 0 if name.isascii() else FLAG_UTF8


def external_attr(executable: bool) -> int:
    """Unix mode in the high 16 bits: regular file, 0755 or 0644, never the host's umask."""
    return (_MODE_EXECUTABLE if executable else _MODE_FILE) << 16


def check_zip32(name: str, *values: int) -> None:
    """Sizes and offsets must fit the 32-bit fields: a Lambda ZIP is far smaller than 4 GiB."""
    if max(values) > ZIP32_LIMIT:
        raise ZipWriteError(
            f"{name}: the bundle passes 4 GiB, which no Lambda deployment package can be (the limit is 250 MB unzipped)"
        )


class _Deflater:
    """Raw deflate (level 6, no zlib header) of a stream, counting CRC and sizes on the way."""

    def __init__(self) -> None:
        self.crc = 0
        self.file_size = 0
        self.compressed_size = 0

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        """Compressed blocks of `stream`, read in 1 MiB chunks so memory stays flat."""
        compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        while chunk := stream.read(CHUNK):
            self.crc = zlib.crc32(chunk, self.crc)
            self.file_size += len(chunk)
            block = compressor.compress(chunk)
            self.compressed_size += len(block)
            yield block
        block = compressor.flush()
        self.compressed_size += len(block)
        yield block


class DeterministicZipWriter:
    """Writes a ZIP of regular files whose bytes depend only on the inputs and `epoch`.

    `fileobj` must be a writable and seekable binary file, positioned at its start (streamed
    members get their header patched after the data is written); give it a large buffer, since
    every member is a few small writes. It is flushed but not closed by `close()`.
    """

    def __init__(self, fileobj: BinaryIO, *, epoch: int) -> None:
        self._fp = fileobj
        self._offset = fileobj.tell()  # where the next write lands: kept here, not asked again
        self._dos_time, self._dos_date = dos_date_time(epoch)
        self._records: list[Record] = []
        self._names: set[str] = set()
        self._handle: tuple[zipfile.ZipFile, RawSource] | None = None  # the current source's
        self._closed = False

    # ----------------------------------------------------------------------- public API

    def add_bytes(self, name: str, data: bytes, *, executable: bool = False) -> None:
        """Add generated content (small files such as launchers or metadata), deflated in memory
        exactly as `add_stream` would, so no header is patched."""
        deflater = _Deflater()
        compressed = b"".join(deflater.chunks(io.BytesIO(data)))
        self.add_deflated(name, compressed, deflater.crc, deflater.file_size, executable=executable)

    def add_stream(self, name: str, stream: BinaryIO, *, executable: bool = False) -> None:
        """Deflate `stream` (read to EOF in 1 MiB chunks) into a new member.

        The size is unknown up front and we never write data descriptors, so the local header
        is patched afterwards.
        """
        name_bytes = self._check_name(name)
        self._add(name, self._write_streamed(name, name_bytes, self._offset, stream, executable))

    def add_deflated(self, name: str, data: bytes, crc: int, size: int, *, executable: bool = False) -> None:
        """Add a member already compressed as raw DEFLATE, given the CRC and size of its content."""
        self.add_deflated_chunks(name, (data,), crc, len(data), size, executable=executable)

    def add_deflated_chunks(
        self, name: str, chunks: Iterable[bytes], crc: int, compressed_size: int, size: int, *, executable: bool = False
    ) -> None:
        """Add a member from its raw DEFLATE bytes (in pieces), given their total and the CRC and
        size of the content; the pieces must add up to `compressed_size`."""
        name_bytes = self._check_name(name)
        offset = self._offset
        check_zip32(name, offset, compressed_size, size)
        flags = name_flags(name)
        self._write_local_header(name_bytes, flags, crc, compressed_size, size)
        written = 0
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
        if written != compressed_size:
            raise ZipWriteError(f"{name}: {written} compressed bytes where {compressed_size} were expected")
        self._add(name, Record(name_bytes, crc, compressed_size, size, flags, offset, external_attr(executable)))

    def add_from_source(self, name: str, source: RawSource, info: zipfile.ZipInfo, *, executable: bool = False) -> None:
        """Copy one deflated member of an archive read through `source` as its raw bytes, trusting
        the CRC and sizes of the archive's central directory (`info`): nothing is decompressed."""
        check_source_member(info)
        if info.compress_type != zipfile.ZIP_DEFLATED:
            raise ZipWriteError(f"{info.filename}: a stored member must be deflated (use add_from_zip)")
        self.add_deflated_chunks(
            name, source.raw_chunks(info), info.CRC, info.compress_size, info.file_size, executable=executable
        )

    def add_from_zip(
        self, name: str, source: zipfile.ZipFile, info: zipfile.ZipInfo, *, executable: bool = False
    ) -> None:
        """Copy one member of `source` (e.g. a wheel) into the bundle as `name`.

        Deflated members are copied as raw compressed bytes, trusting the CRC and sizes of the
        source's central directory (the wheel's hash is verified before it gets here); stored
        members are streamed through `source.open` and deflated. Encrypted members and other
        compression methods raise `ZipWriteError`.
        """
        check_source_member(info)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            self.add_from_source(name, self._source_handle(source), info, executable=executable)
            return
        name_bytes = self._check_name(name)
        self._add(name, self._copy_stored(name, name_bytes, self._offset, source, info, executable))

    def close(self) -> None:
        """Write the central directory and end records; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._write_central_directory()
            self._fp.flush()
        finally:
            self._release_handles()

    def __enter__(self) -> DeterministicZipWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Finish the archive only on success: a half-built bundle must not look complete."""
        if exc_type is None:
            self.close()
        else:
            self._release_handles()

    # ----------------------------------------------------------------------- entry writing

    def _write(self, data: bytes) -> None:
        self._fp.write(data)
        self._offset += len(data)

    def _check_name(self, name: str) -> bytes:
        if self._closed:
            raise ValueError("writer is closed")
        name_bytes = validate_name(name)
        if name in self._names:
            raise ValueError(f"duplicate member name: {name!r}")
        return name_bytes

    def _add(self, name: str, record: Record) -> None:
        """Remember a written member. A failed write is not undone: the caller discards the file."""
        check_zip32(name, record.offset, record.compressed_size, record.file_size)
        self._records.append(record)
        self._names.add(name)

    def _write_local_header(
        self, name_bytes: bytes, flags: int, crc: int, compressed_size: int, file_size: int
    ) -> None:
        self._write(local_header(name_bytes, flags, crc, compressed_size, file_size, self._dos_time, self._dos_date))

    def _write_streamed(self, name: str, name_bytes: bytes, offset: int, stream: BinaryIO, executable: bool) -> Record:
        check_zip32(name, offset)
        flags = name_flags(name)
        self._write_local_header(name_bytes, flags, 0, 0, 0)
        deflater = _Deflater()
        for block in deflater.chunks(stream):
            self._write(block)
        crc, compressed_size, file_size = deflater.crc, deflater.compressed_size, deflater.file_size
        check_zip32(name, compressed_size, file_size)
        self._fp.seek(offset + _CRC_AND_SIZES_OFFSET)
        self._fp.write(struct.pack("<LLL", crc, compressed_size, file_size))
        self._fp.seek(self._offset)
        return Record(name_bytes, crc, compressed_size, file_size, flags, offset, external_attr(executable))

    def _copy_stored(
        self,
        name: str,
        name_bytes: bytes,
        offset: int,
        source: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        executable: bool,
    ) -> Record:
        try:
            with parsing_zip(), source.open(info) as member:
                stream: BinaryIO = member  # type: ignore[assignment]
                record = self._write_streamed(name, name_bytes, offset, stream, executable)
        except BrokenZip as error:
            raise ZipWriteError(f"{info.filename}: cannot read stored member: {error}") from error
        if record.file_size != info.file_size or record.crc != info.CRC:
            raise ZipWriteError(f"{info.filename}: content disagrees with the central directory")
        return record

    # ----------------------------------------------------------------------- source access

    def _source_handle(self, source: zipfile.ZipFile) -> RawSource:
        """Our own reader of the source file, so the ZipFile's position is never disturbed.

        One source at a time is kept open (a bundle of hundreds of wheels never runs out of file
        descriptors). A ZipFile opened from a file object (no path) lends its own: zipfile
        re-seeks before every read, so sharing it is safe in a single thread.
        """
        if self._handle is not None and self._handle[0] is source:
            return self._handle[1]
        self._release_handles()
        encoding = getattr(source, "metadata_encoding", None)
        path = source.filename
        if isinstance(path, str) and os.path.isfile(path):
            handle = RawSource.open(path, encoding)
        elif source.fp is None:
            raise ZipWriteError(f"source archive {path!r} is closed")
        else:
            handle = RawSource(fileobj=source.fp, encoding=encoding)  # type: ignore[arg-type]
        self._handle = (source, handle)
        return handle

    def _release_handles(self) -> None:
        current, self._handle = self._handle, None
        if current is not None:
            current[1].close()

    # ----------------------------------------------------------------------- central directory

    def _write_central_directory(self) -> None:
        self._write(central_directory(self._records, self._offset, self._dos_time, self._dos_date))


def local_header(
    name_bytes: bytes, flags: int, crc: int, compressed_size: int, file_size: int, dos_time: int, dos_date: int
) -> bytes:
    """A member's local header and name: deflate, no data descriptor, no extra field."""
    header = LOCAL.pack(
        LOCAL_SIG, _VERSION_DEFAULT, flags, _METHOD_DEFLATE, dos_time, dos_date,
        crc, compressed_size, file_size, len(name_bytes), 0,
    )  # fmt: skip
    return header + name_bytes


def central_directory(records: Sequence[Record], cd_offset: int, dos_time: int, dos_date: int) -> bytes:
    """The central directory of `records` starting at `cd_offset`, then the end records (with the
    ZIP64 end record only when there are more than 65,535 members: only the count needs it)."""
    parts = [_central_header(record, dos_time, dos_date) for record in records]
    cd_size = sum(len(part) for part in parts)
    check_zip32("the central directory", cd_offset + cd_size)
    count = len(records)
    if count > ZIP16_LIMIT:
        end64_offset = cd_offset + cd_size
        made_by = (_SYSTEM_UNIX << 8) | _VERSION_ZIP64
        record_size = _END64.size - 12  # excludes the signature and this size field
        parts.append(_END64.pack(_END64_SIG, record_size, made_by, _VERSION_ZIP64, 0, 0, count, count, cd_size, cd_offset))
        parts.append(_LOCATOR64.pack(_LOCATOR64_SIG, 0, end64_offset, 1))
        count = ZIP16_LIMIT
    parts.append(_END.pack(_END_SIG, 0, 0, count, count, cd_size, cd_offset, 0))
    return b"".join(parts)


def _central_header(record: Record, dos_time: int, dos_date: int) -> bytes:
    """One central-directory record (no extra field, no comment)."""
    made_by = (_SYSTEM_UNIX << 8) | _VERSION_DEFAULT
    header = _CENTRAL.pack(
        _CENTRAL_SIG, made_by, _VERSION_DEFAULT, record.flags, _METHOD_DEFLATE, dos_time, dos_date,
        record.crc, record.compressed_size, record.file_size, len(record.name_bytes), 0, 0, 0, 0,
        record.external_attr, record.offset,
    )  # fmt: skip
    return header + record.name_bytes
