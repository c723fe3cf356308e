"""Lock hash -> archive in Poetry's artifact cache, so a warm re-bundle needs no network.

Poetry's artifact cache is keyed by download URL, which only the index can tell; the lock
already names each file's sha256. Remembering where each verified archive landed lets the next
run go straight from the lock to the file. Entries are hints: the file is always re-verified
against the lock's hash before use, so a stale or tampered entry is simply ignored.

Also kept, by the same sha256: what `wheels.parse_wheel` found in a wheel once the wheel was
found true to its RECORD (`wheels.check_record_hashes`), facts of the file's bytes, so a warm
run neither parses a wheel's directory and RECORD again nor inflates every member to check it.
They are checked files (`atomic.read_checked`): a damaged one is parsed and checked again. And
each such wheel's unpacked copy: the bytes of its members, inflated while they were checked, one
after the other in the order of its parsed members. The target dir copies a member's bytes from
there instead of inflating them again; they are held to the member's size and CRC (from the
wheel's own directory) as they are copied, and inflated from the wheel when they fail that.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.atomic import read_checked
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.atomic import write_checked
from poetry_plugin_lambda.wheels import ParsedWheel
from poetry_plugin_lambda.wheels import restored
from poetry_plugin_lambda.wheels import saved


class ArchiveIndex:
    """Entries under `<cache>/lambda-bundle/archives`, naming archives by their path relative to
    Poetry's cache dir `cache`: a cache restored elsewhere (a CI cache) still finds them, and an
    entry never leads out of the cache (to a file whose build beside it no hash vouches for)."""

    def __init__(self, cache: Path) -> None:
        self._cache = cache
        self._root = cache / "lambda-bundle" / "archives"
        self._real_cache: str | None = None  # resolved once, when an entry needs it

    def _entry(self, digest: str) -> Path:
        return self._root / digest[:2] / digest

    def lookup(self, digest: str) -> Path | None:
        """The archive recorded for `digest` (a sha256 hex digest), if it still exists in the cache."""
        try:
            recorded = Path(self._entry(digest).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if ".." in recorded.parts:
            return None  # leading out of the cache
        if recorded.is_absolute():  # written by 0.2: kept only if it is in this cache dir
            if self._real_cache is None:
                self._real_cache = os.path.realpath(self._cache)
            if os.path.commonpath([self._real_cache, os.path.realpath(recorded)]) != self._real_cache:
                return None
            if recorded.is_file():
                self.record(digest, recorded)  # written again as 0.3 writes it: no path resolved next time
        path = self._cache / recorded
        return path if path.is_file() else None

    def parsed(self, digest: str, wheel: Path) -> ParsedWheel | None:
        """The wheel file `wheel`, whose sha256 is `digest`, as `keep_parsed` kept it (found true
        to its RECORD); None if it was not kept, or its entry is damaged."""
        blob = read_checked(self._entry(digest).with_suffix(".parsed"))
        return restored(blob, wheel) if blob is not None else None

    def keep_parsed(self, digest: str, wheel: ParsedWheel) -> None:
        """Keep `wheel` (parsed, and found true to its RECORD) for the next runs; best effort."""
        with contextlib.suppress(OSError):
            write_checked(self._entry(digest).with_suffix(".parsed"), saved(wheel))

    @contextlib.contextmanager
    def unpacking(self, digest: str) -> Iterator[UnpackedWriter]:
        """A writer for the unpacked copy of the wheel with this sha256, kept if the block ends
        without an error (`keep_parsed` comes after it: a kept wheel's copy is complete)."""
        writer = UnpackedWriter(self._entry(digest).with_suffix(".unpacked"))
        try:
            yield writer
        except BaseException:
            writer.discard()
            raise
        writer.commit()

    def unpacked(self, digest: str, wheel: ParsedWheel) -> Unpacked | None:
        """The unpacked copy of `wheel` (whose sha256 is `digest`), if there is one of its size."""
        path = self._entry(digest).with_suffix(".unpacked")
        offsets: dict[int, int] = {}
        end = 0
        for member in wheel.members:
            offsets[member.info.header_offset] = end
            end += member.info.file_size
        try:
            if os.stat(path).st_size != end:
                return None
        except OSError:
            return None
        return Unpacked(path, offsets)

    def record(self, digest: str, archive: Path) -> None:
        """Remember `archive` for `digest`; best effort (a read-only cache only costs speed)."""
        try:
            relative = archive.resolve().relative_to(self._cache.resolve())
        except (OSError, ValueError):  # not in the cache: not remembered
            return
        with contextlib.suppress(OSError):
            write_atomic(self._entry(digest), str(relative).encode("utf-8"))



@dataclass(frozen=True)
class Unpacked:
    """A wheel's unpacked copy: where each member's bytes start in it, by the member's offset in
    the wheel (`ZipInfo.header_offset`, which names a member of that wheel)."""

    path: Path
    offsets: dict[int, int]


class UnpackedWriter:
    """An unpacked copy being written, best effort: a full or read-only cache costs only speed,
    never the check that writes it."""

    def __init__(self, final: Path) -> None:
        self._staged: Staged | None = None
        self._file = None
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
