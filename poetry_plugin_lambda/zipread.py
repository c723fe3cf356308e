"""Reading a member of a source ZIP (a wheel) raw: where its compressed bytes start, and checks.

The bundle's ZIP copies wheel members' compressed bytes as they are, and the target dir inflates
them in one call; both find the bytes here. The local header must agree with the central
directory (the name, the method, the sizes when there is no data descriptor), so a crafted
archive cannot point two views of one member at different bytes. Encrypted members and methods
other than stored and deflate are refused.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

ZIP32_LIMIT = 0xFFFFFFFF
LOCAL_SIG = b"PK\x03\x04"
# signature, version needed, flags, method, time, date, crc, compressed, uncompressed,
# name length, extra length
LOCAL = struct.Struct("<4sHHHHHLLLHH")
FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800


CHUNK = 1 << 20  # members are read in pieces of at most this size
WHOLE_LIMIT = 16 << 20  # an archive up to this size is read in one system call, beyond it member by member
_SLACK = 512  # read past the fixed header at once: the name and extra field almost always fit


class ZipWriteError(Exception):
    """A source member cannot be copied (malformed, encrypted, unsupported method, too large)."""


class BrokenZip(Exception):
    """An untrusted archive (or a member of it) zipfile cannot parse, whichever way that showed."""


# How zipfile fails on a hostile archive, besides OSError (the file itself, left to the caller):
# its own error, the inflater's, a name that is not UTF-8 (ValueError), a truncated structure
# (struct.error, EOFError), an encrypted member or an unknown method (RuntimeError).
_PARSE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, struct.error, RuntimeError, OverflowError)


@contextlib.contextmanager
def parsing_zip() -> Iterator[None]:
    """Every parse failure of the archives read in the block, raised as one `BrokenZip`, so no
    crafted archive ends the run with a traceback."""
    try:
        yield
    except _PARSE_ERRORS as error:
        raise BrokenZip(_reason(error)) from error


def _reason(error: Exception) -> str:
    """The failure in words: a UnicodeDecodeError names a codec and a position, not what failed."""
    if isinstance(error, UnicodeDecodeError):
        return "a member name or text is not valid UTF-8"
    return str(error).rstrip(".") or type(error).__name__


def read_member(zf: zipfile.ZipFile, member: str | zipfile.ZipInfo) -> bytes:
    """A member's bytes, never inflated past one byte more than its declared size.

    `ZipFile.read` inflates all that the member's compressed bytes hold before its CRC check
    refuses a member that lies about its size: a gigabyte for a 1 MB ZIP bomb. Read in bounded
    steps, such a member is refused (`BadZipFile`) once its declared size is reached.
    """
    info = member if isinstance(member, zipfile.ZipInfo) else zf.getinfo(member)
    with zf.open(info) as stream:
        return stream.read(info.file_size + 1)


class RawSource:
    """Positioned reads of one archive: its bytes read whole (slices), an fd of our own (`pread`,
    no shared position), or a file object (seek and read; only for archives opened from memory,
    in a single thread)."""

    def __init__(
        self, fd: int | None = None, fileobj: BinaryIO | None = None, encoding: str | None = None,
        data: bytes | None = None,
    ) -> None:
        self._fd = fd
        self._fileobj = fileobj
        self._data = data
        self.encoding = encoding

    @classmethod
    def open(cls, path: str | os.PathLike[str], encoding: str | None = None) -> RawSource:
        return cls(fd=_open(path), encoding=encoding)

    @classmethod
    def whole(cls, path: str | os.PathLike[str], limit: int = WHOLE_LIMIT) -> RawSource:
        """An archive about to be read member after member: up to `limit` bytes it is read in
        one system call (then every member is a slice of those bytes), beyond that per member."""
        fd = _open(path)
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                return cls(fd=fd)
            pieces, offset = [], 0
            while piece := os.pread(fd, size + 1 - offset, offset):  # to the end, however long it is now
                pieces.append(piece)
                offset += len(piece)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return cls(data=b"".join(pieces))  # one piece: joined without a copy

    def pread(self, size: int, offset: int) -> bytes:
        if self._data is not None:
            return self._data[offset : offset + size]
        if self._fd is not None:
            return os.pread(self._fd, size, offset)
        assert self._fileobj is not None
        self._fileobj.seek(offset)
        return self._fileobj.read(size)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def raw_chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's stored bytes (compressed, as in the archive), checked against its local
        header; a small member comes whole from a single read."""
        first = min(info.compress_size, CHUNK)
        head = self.pread(LOCAL.size + _SLACK + first, info.header_offset)
        start = _check_local_header(info, head, self.encoding)
        if len(head) < start + first:
            head = self.pread(start + first, info.header_offset)
        data = head[start : start + first]
        offset, remaining = info.header_offset + start, info.compress_size
        while True:
            if len(data) != min(remaining, CHUNK):
                raise ZipWriteError(f"{info.filename}: source archive is truncated")
            yield data
            offset, remaining = offset + len(data), remaining - len(data)
            if not remaining:
                return
            data = self.pread(min(remaining, CHUNK), offset)

    def raw_bytes(self, info: zipfile.ZipInfo) -> bytes:
        """All of the member's stored bytes (for members small enough to hold)."""
        data = self._data
        if data is None:
            return b"".join(self.raw_chunks(info))
        offset = info.header_offset  # read whole: the header checked in place, the bytes sliced once
        start = offset + _check_local_header(info, data, self.encoding, offset)
        raw = data[start : start + info.compress_size]
        if len(raw) != info.compress_size:
            raise ZipWriteError(f"{info.filename}: source archive is truncated")
        return raw


def _open(path: str | os.PathLike[str]) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def _check_local_header(info: zipfile.ZipInfo, head: bytes, encoding: str | None, at: int = 0) -> int:
    """Where the member's data starts, relative to its local header (at `at` in `head`), after
    checking that header against the central directory."""
    if len(head) < at + LOCAL.size or head[at : at + 4] != LOCAL_SIG:
        raise ZipWriteError(f"{info.filename}: bad local header signature")
    fields = LOCAL.unpack_from(head, at)
    flags, method, crc, compressed_size, file_size, name_len, extra_len = (
        fields[2], fields[3], fields[6], fields[7], fields[8], fields[9], fields[10]
    )  # fmt: skip
    if method != info.compress_type or flags & FLAG_ENCRYPTED:
        raise ZipWriteError(f"{info.filename}: local header disagrees with central directory")
    raw_name = head[at + LOCAL.size : at + LOCAL.size + name_len]
    if len(raw_name) != name_len:
        raise ZipWriteError(f"{info.filename}: source archive is truncated")
    _check_local_name(info, raw_name, flags, encoding)
    if not flags & FLAG_DATA_DESCRIPTOR:
        _check_local_sizes(info, crc, compressed_size, file_size)
    return LOCAL.size + int(name_len) + int(extra_len)


def check_source_member(info: zipfile.ZipInfo) -> None:
    """Refuse what we cannot copy: encrypted members and methods other than stored/deflate."""
    if info.flag_bits & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        raise ZipWriteError(f"{info.filename}: encrypted member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ZipWriteError(f"{info.filename}: unsupported compression method {info.compress_type}")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ZipWriteError(f"{info.filename}: stored member sizes disagree")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > ZIP32_LIMIT:
        raise ZipWriteError(f"{info.filename}: stored member larger than 4 GiB")


def _check_local_name(info: zipfile.ZipInfo, raw: bytes, flags: int, encoding: str | None) -> None:
    """The local header must name the same member, or header_offset points somewhere else."""
    if encoding is None and raw.isascii():  # UTF-8 and cp437 both read ASCII as ASCII: the C fast path
        local_name = raw.decode("ascii")
    else:
        try:
            local_name = raw.decode("utf-8" if flags & FLAG_UTF8 else (encoding or "cp437"))
        except UnicodeDecodeError as error:
            raise ZipWriteError(f"{info.filename}: undecodable local header name") from error
    if local_name != info.orig_filename:
        raise ZipWriteError(f"{info.filename}: local header names {local_name!r}")


def _check_local_sizes(info: zipfile.ZipInfo, crc: int, compressed_size: int, file_size: int) -> None:
    """Without a data descriptor the local header must agree with the central directory.

    A size of 0xFFFFFFFF means the real value sits in the local ZIP64 extra field; the central
    directory's value (already decoded by zipfile) is the one we use, so it is not re-checked.
    """
    local = (crc, compressed_size, file_size)
    central = (info.CRC, info.compress_size, info.file_size)
    if local == central:
        return
    for what, local_value, central_value in zip(("CRC", "compressed size", "size"), local, central):
        if what != "CRC" and local_value == ZIP32_LIMIT:
            continue
        if local_value != central_value:
            message = f"local header {what} disagrees with the central directory"
            raise ZipWriteError(f"{info.filename}: {message}")
