"""Lock hash -> archive in Poetry's artifact cache, so a warm re-bundle needs no network.

Poetry's artifact cache is keyed by download URL, which only the index can tell; the lock
already names each file's sha256. Remembering where each verified archive landed lets the next
run go straight from the lock to the file. Entries are hints: the file is always re-verified
against the lock's hash before use, so a stale or tampered entry is simply ignored.

Also kept, by the same sha256: what `wheels.parse_wheel` found in a wheel once the wheel was
found true to its RECORD (`unpacked.unpack`, `wheels.RecordCheck`), facts of the file's bytes, so a warm
run neither parses a wheel's directory and RECORD again nor inflates every member to check it.
They are checked files (`atomic.read_checked`): a damaged one is parsed and checked again. And
each such wheel's unpacked copy (`unpacked.py`), its members' bytes as they were inflated for
that check, in the order of its parsed members, which the target dir copies from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from poetry_plugin_lambda.atomic import read_checked
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.atomic import write_checked
from poetry_plugin_lambda.unpacked import Unpacked
from poetry_plugin_lambda.unpacked import UnpackedWriter
from poetry_plugin_lambda.unpacked import unpacked_copy
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
    def unpacking(self, digest: str, wheel: ParsedWheel) -> Iterator[UnpackedWriter]:
        """A writer for the unpacked copy of `wheel` (whose sha256 is `digest`), kept if the block
        ends without an error and the writer was not discarded."""
        size = sum(member.info.file_size for member in wheel.members)
        writer = UnpackedWriter(self._entry(digest).with_suffix(".unpacked"), size)
        try:
            yield writer
        except BaseException:
            writer.discard()
            raise
        writer.commit()

    def unpacked(self, digest: str, wheel: ParsedWheel) -> Unpacked | None:
        """The unpacked copy of `wheel` (whose sha256 is `digest`), if there is one of its size."""
        return unpacked_copy(self._entry(digest).with_suffix(".unpacked"), [m.info for m in wheel.members], wheel.raw_crcs)

    def record(self, digest: str, archive: Path) -> None:
        """Remember `archive` for `digest`; best effort (a read-only cache only costs speed)."""
        try:
            relative = archive.resolve().relative_to(self._cache.resolve())
        except (OSError, ValueError):  # not in the cache: not remembered
            return
        with contextlib.suppress(OSError):
            write_atomic(self._entry(digest), str(relative).encode("utf-8"))


