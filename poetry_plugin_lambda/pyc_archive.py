"""Compiled modules as members of a scratch ZIP, already deflated, so nothing compresses them twice.

The bytecode cache holds each module's .pyc as raw DEFLATE bytes with its CRC and size. Written
into a small ZIP in the run's scratch folder, the modules become entries like any wheel member
(`archive` + `info`): the bundle's ZIP copies their compressed bytes as they are and the target
dir inflates them. Compressing the bytecode of a few thousand modules again on every run would
cost more than everything else `--compile` does on a warm run.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

LEVEL = 6  # what the bundle's ZIP writer uses for what it compresses itself
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_UTF8 = 0x800
# This writer has no ZIP64: a new archive is started well before its limits.
_MAX_MEMBERS = 60_000
_MAX_OFFSET = 1 << 31


@dataclass(frozen=True)
class Deflated:
    """One file's bytes as a ZIP member stores them: raw DEFLATE, CRC-32 and size of the original."""

    data: bytes
    crc: int
    size: int


def deflate(raw: bytes | memoryview) -> Deflated:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return Deflated(compressor.compress(raw) + compressor.flush(), zlib.crc32(raw), len(raw))


def write_archives(folder: Path, members: Sequence[tuple[str, Deflated]]) -> dict[str, tuple[Path, zipfile.ZipInfo]]:
    """Write `members` (unique names) into ZIPs under `folder`; where each member now lives."""
    folder.mkdir(parents=True, exist_ok=True)
    where: dict[str, tuple[Path, zipfile.ZipInfo]] = {}
    start = 0
    while start < len(members):
        fd, name = tempfile.mkstemp(prefix="bytecode-", suffix=".zip", dir=folder)
        os.close(fd)
        path = Path(name)
        start = _write_one(path, members, start)
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                where[info.filename] = (path, info)
    return where


def _write_one(path: Path, members: Sequence[tuple[str, Deflated]], start: int) -> int:
    """Write members from `start` on until a limit is near; the index of the first not written."""
    central: list[bytes] = []
    end = start
    with path.open("wb") as f:
        offset = 0
        while end < len(members) and len(central) < _MAX_MEMBERS and offset < _MAX_OFFSET:
            name, member = members[end]
            encoded = name.encode("utf-8")
            fields = (20, _UTF8, zipfile.ZIP_DEFLATED, 0, 0x21, member.crc, len(member.data), member.size)
            f.write(_LOCAL.pack(b"PK\x03\x04", *fields, len(encoded), 0))
            f.write(encoded)
            f.write(member.data)
            central.append(_CENTRAL.pack(b"PK\x01\x02", 20, *fields, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
            offset += _LOCAL.size + len(encoded) + len(member.data)
            end += 1
        directory = b"".join(central)
        f.write(directory)
        f.write(_END.pack(b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0))
    return end
