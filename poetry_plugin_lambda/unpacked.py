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
since is inflated, and fails as it always did.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import Staged

if TYPE_CHECKING:
    import zipfile
    from collections.abc import Sequence
    from pathlib import Path
    from typing import BinaryIO


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


class UnpackedWriter:
    """An unpacked copy being written, best effort: a full or read-only cache costs only speed,
    never the work that writes it. Nothing of it is left unless `commit` is called."""

    def __init__(self, final: Path) -> None:
        self._staged: Staged | None = None
        self._file: BinaryIO | None = None
        try:
            self._staged = Staged(final)
            self._file = os.fdopen(os.dup(self._staged.fd), "wb", buffering=1 << 20)
        except OSError:
            self.discard()

    def write(self, data: bytes) -> None:
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError:
                self.discard()

    def commit(self) -> None:
        if self._file is not None and self._staged is not None:
            try:
                self._file.close()
                self._file = None
                self._staged.commit()
            except OSError:
                self.discard()

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._staged is not None:
            with contextlib.suppress(OSError):
                self._staged.discard()
            self._staged = None
