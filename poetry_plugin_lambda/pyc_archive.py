"""Compiled modules as members of a scratch ZIP, already deflated, so nothing compresses them twice.

The bytecode cache holds each module's .pyc as raw DEFLATE bytes with its CRC and size. Written
into a small ZIP in the run's scratch folder, the modules become entries like any wheel member
(`archive` + `info`): the bundle's ZIP copies their compressed bytes as they are and the target
dir inflates them. Compressing the bytecode of a few thousand modules again on every run would
cost more than everything else `--compile` does on a warm run.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.zipwriter import DEFLATE_LEVEL
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class Deflated:
    """One file's bytes as a ZIP member stores them: raw DEFLATE, CRC-32 and size of the original."""

    data: bytes
    crc: int
    size: int


def deflate(raw: bytes | memoryview) -> Deflated:
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)  # as the bundle's writer
    return Deflated(compressor.compress(raw) + compressor.flush(), zlib.crc32(raw), len(raw))


def write_archives(folder: Path, members: Sequence[tuple[str, Deflated]]) -> dict[str, tuple[Path, zipfile.ZipInfo]]:
    """Write `members` (unique names) into a ZIP under `folder`; where each member now lives."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="bytecode-", suffix=".zip", dir=folder)  # scratch: no rename
    path = Path(name)
    with os.fdopen(fd, "w+b") as f, DeterministicZipWriter(f, epoch=DOS_EPOCH_MIN) as writer:
        for member_name, member in members:
            writer.add_deflated(member_name, member.data, member.crc, member.size)
    with zipfile.ZipFile(path) as zf:
        return {info.filename: (path, info) for info in zf.infolist()}
