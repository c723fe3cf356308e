"""Hashing files: the one helper behind the lock's hash checks, memo keys and the ZIP's SHA-256.

Files are read in large pieces: `hashlib` lets go of the GIL while it hashes a piece, so the
hash checks of a run's wheels (on `installer.max-workers` threads) run side by side with the
Python work of other threads; with small pieces each thread would wait for the GIL again
every few kilobytes.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

PIECE = 1 << 20


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of the file at `path` with `algorithm` (a `hashlib` name)."""
    digest = hashlib.new(algorithm)
    buffer = bytearray(PIECE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def fd_sha256(fd: int, size: int) -> bytes:
    """The SHA-256 of the first `size` bytes of the open file `fd`, read with positioned reads
    (its file position is left as it was)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        piece = os.pread(fd, min(PIECE, size - offset), offset)
        if not piece:
            raise OSError(f"the file is shorter than the {size} bytes written to it")
        digest.update(piece)
        offset += len(piece)
    return digest.digest()
