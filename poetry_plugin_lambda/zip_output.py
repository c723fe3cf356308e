"""The output ZIP: written complete beside `--output`, synced, hashed, then renamed into place.

Until `commit`, the previous ZIP (if any) stays at the output path untouched, so a deploy step
never picks up half a bundle; `discard` removes the new one instead.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import Cancelled
from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.zipread import ZipWriteError
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence
    from pathlib import Path
    from typing import BinaryIO

    from poetry_plugin_lambda.assemble import Entry

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: bytes
    size: int


def stage_zip(entries: Sequence[Entry], output: Path, epoch: int, cancel: threading.Event) -> tuple[Staged, ZipResult]:
    """The deterministic ZIP of `entries`, complete and synced beside `output`, not yet in place."""
    staged = Staged(output)
    try:
        with os.fdopen(os.dup(staged.fd), "w+b", buffering=_CHUNK) as f:  # few, large writes
            _fill(f, entries, epoch, cancel)
            f.flush()
            os.fsync(f.fileno())
            digest, size = _sha256_of(f)
        os.chmod(staged.path, 0o644)
    except BaseException:
        staged.discard()
        raise
    return staged, ZipResult(output, digest, size)


def _fill(f: BinaryIO, entries: Sequence[Entry], epoch: int, cancel: threading.Event) -> None:
    with DeterministicZipWriter(f, epoch=epoch) as writer, Archives() as archives:
        for entry in entries:
            if cancel.is_set():
                raise Cancelled
            try:
                if entry.info is not None and entry.archive is not None:
                    if entry.info.compress_type == zipfile.ZIP_DEFLATED:  # most: copied as they are
                        source = archives.raw(entry.archive)
                        writer.add_from_source(entry.path, source, entry.info, executable=entry.executable)
                    else:
                        zf = archives.get(entry.archive)
                        writer.add_from_zip(entry.path, zf, entry.info, executable=entry.executable)
                elif entry.data is not None:
                    writer.add_bytes(entry.path, entry.data, executable=entry.executable)
                elif entry.size <= _CHUNK:  # a small file: deflated in memory, no header to patch
                    writer.add_bytes(entry.path, archives.read(entry), executable=entry.executable)
                else:
                    with archives.stream(entry) as stream:
                        writer.add_stream(entry.path, stream, executable=entry.executable)
            except (ValueError, ZipWriteError) as error:
                raise OutputError(f"Cannot write {entry.path!r} of {entry.owner}: {error}") from None


def _sha256_of(f: BinaryIO) -> tuple[bytes, int]:
    f.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.digest(), size
