"""Lock hash -> archive in Poetry's artifact cache, so a warm re-bundle needs no network.

Poetry's artifact cache is keyed by download URL, which only the index can tell; the lock
already names each file's sha256. Remembering where each verified archive landed lets the next
run go straight from the lock to the file. Entries are hints: the file is always re-verified
against the lock's hash before use, so a stale or tampered entry is simply ignored.
"""

from __future__ import annotations

from pathlib import Path

from poetry_plugin_lambda.atomic import write_atomic


class ArchiveIndex:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _entry(self, digest: str) -> Path:
        return self._root / digest[:2] / digest

    def lookup(self, digest: str) -> Path | None:
        """The archive recorded for `digest` (a sha256 hex digest), if it still exists."""
        try:
            path = Path(self._entry(digest).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        return path if path.is_file() else None

    def record(self, digest: str, archive: Path) -> None:
        """Remember `archive` for `digest`; best effort (a read-only cache only costs speed)."""
        try:
            write_atomic(self._entry(digest), str(archive.resolve()).encode("utf-8"))
        except OSError:
            return
