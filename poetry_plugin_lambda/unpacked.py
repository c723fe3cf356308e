"""An archive's members inflated once and kept, one after the other: the target dir copies them.

A wheel's members (`archive_index`) and a bytecode memo's (`bytecode_memo`) are inflated once,
when they are first checked or made, and their bytes kept in the cache in a file beside them,
in the order of the archive's members. A run then copies a member's bytes from there into the
target dir instead of inflating them again (inflating is most of the CPU time a warm run's
outputs take). The bytes are held to the member's size and CRC from the archive's own central
directory as they are copied (`emit._Copy`), and inflated from the archive when they fail that:
a damaged copy costs speed, never a wrong file. Inflating also checked the member's compressed
bytes, which the ZIP copies as they are; with a copy those are held instead to the CRC-32 they
had when they were first checked (kept with the archive's facts), so a member that changed
since is inflated, and fails as it always did. A wheel's copy is made (`unpack`) by the
outputs' own strict reader, so no member the outputs would refuse to inflate is ever copied;
a wheel larger than `MAX_COPY` unzipped gets none.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import atomic_file
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.sources import Inflater
from poetry_plugin_lambda.wheels import RecordCheck
from poetry_plugin_lambda.wheels import check_record_hashes
from poetry_plugin_lambda.zipread import RawSource
from poetry_plugin_lambda.zipread import ZipWriteError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import BinaryIO

    from poetry_plugin_lambda.wheels import ParsedWheel


@dataclass(frozen=True)
class Unpacked:
    """An archive's unpacked copy: by each member's offset in the archive (`ZipInfo.header_offset`,
    which names a member of that archive), where its bytes start in the copy and the CRC-32 of
    its compressed bytes in the archive."""

    path: Path
    offsets: dict[int, tuple[int, int]]


def unpacked_copy(path: Path, members: Sequence[zipfile.ZipInfo], raw_crcs: Sequence[int]) -> Unpacked | None:
    """The copy at `path` of `members` (in the order they were written into it; `raw_crcs`, their
    compressed bytes' CRC-32s), if it is there and of their size."""
    if len(raw_crcs) != len(members):
        return None
    offsets: dict[int, tuple[int, int]] = {}
    end = 0
    for info, raw_crc in zip(members, raw_crcs):
        offsets[info.header_offset] = (end, raw_crc)
        end += info.file_size
    try:
        if os.stat(path).st_size != end:
            return None
    except OSError:
        return None
    return Unpacked(path, offsets)


MAX_COPY = 256 << 20  # bytes: a wheel larger than this unzipped (past Lambda's 250 MB) gets no copy


class UnpackedWriter:
    """An unpacked copy being written (`atomic.atomic_file`), best effort: a full or read-only
    cache costs only speed, never the work that writes it. Nothing of it is left unless `commit`
    is called. `size`, the bytes it will hold: above `MAX_COPY` nothing is written (a compression
    bomb of a wheel never fills the cache; its members are inflated as they always were)."""

    def __init__(self, final: Path, size: int = 0) -> None:
        self._open = contextlib.ExitStack()
        self._file: BinaryIO | None = None
        if size <= MAX_COPY:
            try:
                self._file = self._open.enter_context(atomic_file(final))
            except OSError:
                self.discard()

    def write(self, data: bytes) -> None:
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError:
                self.discard()

    def commit(self) -> None:
        """Put the copy in place, unless a write failed or it was discarded."""
        if self._file is not None:
            self._file = None
            with contextlib.suppress(OSError):  # not put in place: removed, as atomic_file does
                self._open.close()

    def discard(self) -> None:
        self._file = None
        with contextlib.suppress(OSError):
            self._open.__exit__(_Dropped, _Dropped(), None)  # atomic_file removes its temporary


class _Dropped(Exception):
    """The copy is not wanted: its temporary is removed."""


class _NotStrict(Exception):
    """A member that zipfile reads but the outputs' own reader refuses."""


def unpack(wheel: ParsedWheel, writer: UnpackedWriter) -> ParsedWheel:
    """`wheel` held to its RECORD (`wheels.RecordCheck`), every member inflated once into `writer`
    on the way; returned with the CRC-32 of each member's compressed bytes.

    Each member is read as the outputs read it: its local header checked against the central
    directory, its deflate stream inflated to exactly its size and CRC. A wheel with a member
    that fails that (zipfile, which the RECORD check used before, is more lenient: a stream that
    runs on past its size passes it) gets no copy: its copy is discarded, it is checked as it
    always was (`wheels.check_record_hashes`), and the outputs inflate its members, refusing any
    of those they hold.
    """
    try:
        crcs = _unpack(wheel, writer)
    except _NotStrict:
        writer.discard()
        check_record_hashes(wheel)
        return wheel
    return replace(wheel, raw_crcs=crcs)


def _unpack(wheel: ParsedWheel, writer: UnpackedWriter) -> tuple[int, ...]:
    crcs = []
    try:
        source = RawSource.whole(wheel.archive)
    except OSError as error:
        raise WheelError(f"{wheel.archive.name}: a member cannot be read ({error}).") from None
    try:
        for member in wheel.members:
            info, check = member.info, RecordCheck(wheel, member)
            inflater = Inflater(wheel.archive, info) if info.compress_type == zipfile.ZIP_DEFLATED else None
            raw_crc = crc = size = 0
            try:
                for chunk in source.raw_chunks(info):
                    raw_crc = zlib.crc32(chunk, raw_crc)
                    for piece in inflater.feed(chunk) if inflater is not None else (chunk,):
                        check.update(piece)
                        writer.write(piece)
                        crc, size = zlib.crc32(piece, crc), size + len(piece)
                if inflater is not None:
                    inflater.finish()
                elif (crc, size) != (info.CRC, info.file_size):
                    raise _NotStrict
            except (ZipWriteError, WheelError, OSError) as error:
                raise _NotStrict from error
            check.finish()
            crcs.append(raw_crc)
    finally:
        source.close()
    return tuple(crcs)
