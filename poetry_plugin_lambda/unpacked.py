"""Verified wheels unpacked once into Poetry's cache, so target dirs are hard links, not copies.

Writing a data-heavy target dir means creating thousands of files and ~200 MB of data on every
run; hard-linking them from an unpacked copy costs only the directory entries. Folders are keyed
by the wheel's sha256 as the lock records it, built under a temporary name and renamed when
complete. Their files are read-only, and each file's size, mode and mtime are recorded: a file
that no longer matches is never linked (the entry is written from the wheel instead).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from pathlib import PurePosixPath

COMPLETE = ".complete.json"
_CHUNK = 1 << 20


def fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns]


class UnpackedWheels:
    def __init__(self, root: Path) -> None:
        self._root = root

    def folder(self, archive: Path, digest: str) -> tuple[Path, dict[str, list[int]]] | None:
        """The unpacked folder of `archive` and its files' fingerprints; None if unavailable."""
        final = self._root / digest[:2] / digest
        try:
            return final, self._read(final)
        except (OSError, ValueError):
            pass
        try:
            return final, self._unpack(archive, final)
        except (OSError, zipfile.BadZipFile, ValueError):
            return None  # a read-only or full cache only costs speed

    @staticmethod
    def _read(final: Path) -> dict[str, list[int]]:
        files = json.loads((final / COMPLETE).read_text(encoding="utf-8"))
        if not isinstance(files, dict):
            raise ValueError("bad completion record")
        return files

    def _unpack(self, archive: Path, final: Path) -> dict[str, list[int]]:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        try:
            files = _extract(archive, staging)
            (staging / COMPLETE).write_text(json.dumps(files), encoding="utf-8")
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / COMPLETE).is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)  # another run won the race
                return self._read(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return files


def _extract(archive: Path, root: Path) -> dict[str, list[int]]:
    """Every regular member, by its name in the wheel (already validated by `wheels`)."""
    files: dict[str, list[int]] = {}
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for folder in sorted({PurePosixPath(i.filename).parent for i in infos}):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for info in infos:
            dest = root / info.filename
            with zf.open(info) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            dest.chmod(0o555 if (info.external_attr >> 16) & 0o111 else 0o444)
            files[info.filename] = fingerprint(dest)
    return files
