"""Reading a member of a source ZIP (a wheel) raw: where its compressed bytes start, and checks.

The bundle's ZIP copies wheel members' compressed bytes as they are, and the target dir inflates
them in one call; both find the bytes here. The local header must agree with the central
directory (the name, the method, the sizes when there is no data descriptor), so a crafted
archive cannot point two views of one member at different bytes. Encrypted members and methods
other than stored and deflate are refused.
"""

from __future__ import annotations

import struct
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


class ZipWriteError(Exception):
    """A source member cannot be copied (malformed, encrypted, unsupported method, too large)."""


def locate_raw_data(handle: BinaryIO, info: zipfile.ZipInfo, encoding: str | None = None) -> int:
    """Offset of a member's compressed bytes in its archive, after checking its local header."""
    handle.seek(info.header_offset)
    header = handle.read(LOCAL.size)
    if len(header) != LOCAL.size or header[:4] != LOCAL_SIG:
        raise ZipWriteError(f"{info.filename}: bad local header signature")
    fields = LOCAL.unpack(header)
    flags, method, crc, compressed_size, file_size, name_len, extra_len = (
        fields[2], fields[3], fields[6], fields[7], fields[8], fields[9], fields[10]
    )  # fmt: skip
    if method != info.compress_type or flags & FLAG_ENCRYPTED:
        raise ZipWriteError(f"{info.filename}: local header disagrees with central directory")
    _check_local_name(info, handle.read(name_len), flags, encoding)
    if not flags & FLAG_DATA_DESCRIPTOR:
        _check_local_sizes(info, crc, compressed_size, file_size)
    return int(info.header_offset) + LOCAL.size + int(name_len) + int(extra_len)


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
    for what, local_value, central_value in zip(("CRC", "compressed size", "size"), local, central):
        if what != "CRC" and local_value == ZIP32_LIMIT:
            continue
        if local_value != central_value:
            message = f"local header {what} disagrees with the central directory"
            raise ZipWriteError(f"{info.filename}: {message}")
