"""The output ZIP: laid out in advance, written member by member at its place, then committed.

Every member of a bundle's ZIP is a copy of compressed bytes whose sizes the sources' central
directories already give (`sources.as_archive_members` makes that true of every entry), so each
member's offset is known before a byte is written: `lay_out` computes the local headers, the
offsets and the central directory, and any thread can then write any member where it belongs
(`StagedZip.write_at`). The bytes are the same as a sequential `DeterministicZipWriter` writes.

The ZIP is staged beside `--output`; until `commit`, the previous ZIP (if any) stays at the
output path untouched, so a deploy step never picks up half a bundle.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.digests import fd_sha256
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.errors import unwritable_entry
from poetry_plugin_lambda.zipread import FLAG_ENCRYPTED
from poetry_plugin_lambda.zipread import FLAG_STRONG_ENCRYPTION
from poetry_plugin_lambda.zipread import ZIP32_LIMIT
from poetry_plugin_lambda.zipread import ZipWriteError
from poetry_plugin_lambda.zipread import check_source_member
from poetry_plugin_lambda.zipwriter import Record
from poetry_plugin_lambda.zipwriter import central_directory
from poetry_plugin_lambda.zipwriter import check_zip32
from poetry_plugin_lambda.zipwriter import dos_date_time
from poetry_plugin_lambda.zipwriter import external_attr
from poetry_plugin_lambda.zipwriter import local_header
from poetry_plugin_lambda.zipwriter import name_flags
from poetry_plugin_lambda.zipwriter import validate_name

_ENCRYPTED = FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.assemble import Entry


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: bytes
    size: int


@dataclass(frozen=True)
class ZipLayout:
    """Where each member of a ZIP goes: its local header (with its name) and offset, in entry
    order, and the central directory that follows them at `end`."""

    heads: tuple[bytes, ...]
    offsets: tuple[int, ...]
    end: int
    central: bytes


def lay_out(entries: Sequence[Entry], epoch: int) -> ZipLayout:
    """The layout of the deterministic ZIP of `entries` (each a deflated member of an archive,
    copied as its compressed bytes); a name or size the ZIP cannot hold is an `OutputError`."""
    dos_time, dos_date = dos_date_time(epoch)
    heads: list[bytes] = []
    offsets: list[int] = []
    records: list[Record] = []
    offset = 0
    _refuse_duplicates(entries)
    for entry in entries:  # a bundle's ten thousand members: the checks' usual outcome is tested inline
        info = entry.info
        assert info is not None and entry.archive is not None, "as_archive_members makes every entry a member"
        try:
            name = validate_name(entry.path)
            if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & _ENCRYPTED:
                check_source_member(info)
                raise ZipWriteError(f"{info.filename}: a stored member must be deflated first")
            if max(offset, info.compress_size, info.file_size) > ZIP32_LIMIT:
                check_zip32(entry.path, offset, info.compress_size, info.file_size)
        except (ValueError, ZipWriteError) as error:
            raise unwritable_entry(entry.path, entry.owner, error) from None
        flags = name_flags(entry.path)
        head = local_header(name, flags, info.CRC, info.compress_size, info.file_size, dos_time, dos_date)
        heads.append(head)
        offsets.append(offset)
        records.append(Record(name, info.CRC, info.compress_size, info.file_size, flags, offset, external_attr(entry.executable)))
        offset += len(head) + info.compress_size
    try:
        central = central_directory(records, offset, dos_time, dos_date)
    except ZipWriteError as error:
        raise OutputError(f"Cannot write the ZIP: {error}") from None
    return ZipLayout(tuple(heads), tuple(offsets), offset, central)


def _refuse_duplicates(entries: Sequence[Entry]) -> None:
    """Two members of one name (never from `assemble`, which refuses them first)."""
    if len({entry.path for entry in entries}) == len(entries):
        return
    seen: set[str] = set()
    for entry in entries:
        if entry.path in seen:
            raise unwritable_entry(entry.path, entry.owner, ValueError(f"duplicate member name: {entry.path!r}"))
        seen.add(entry.path)


class StagedZip:
    """A ZIP being written beside `output` from its layout: members in any order, from any thread."""

    def __init__(self, output: Path, layout: ZipLayout) -> None:
        self.output = output
        self.layout = layout
        self.staged = Staged(output)

    def write_at(self, offset: int, data: bytes) -> None:
        """`data` at `offset` (positioned writes: threads never share a file position)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self.staged.fd, view, offset)
            view, offset = view[written:], offset + written

    def member_start(self, index: int) -> int:
        """Where member `index`'s compressed bytes start (after its local header)."""
        return self.layout.offsets[index] + len(self.layout.heads[index])

    def finish(self) -> ZipResult:
        """The central directory written, the file synced and hashed: complete, not yet in place."""
        layout = self.layout
        self.write_at(layout.end, layout.central)
        fd, size = self.staged.fd, layout.end + len(layout.central)
        with ThreadPoolExecutor(max_workers=1) as hashing:  # read back while the disk syncs
            digest = hashing.submit(fd_sha256, fd, size)
            os.fsync(fd)
        os.chmod(self.staged.path, 0o644)
        return ZipResult(self.output, digest.result(), size)

    def commit(self) -> None:
        self.staged.commit()
        self.staged.close()

    def discard(self) -> None:
        self.staged.discard()
