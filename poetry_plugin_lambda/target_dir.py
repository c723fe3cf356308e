"""The target dir: the bundle's files unzipped, staged beside their place, then swapped in.

Every run writes a complete new folder (`.<name>.tmp-XXXXXXXX` beside the target dir) from the
hash-verified wheels and the other entries, and only then swaps it with the previous one. So:

* nothing is ever written into an existing target dir, so a symlink someone put there is never
  followed (the old folder is moved aside and removed; `shutil.rmtree` unlinks links, it does
  not descend into them);
* every file is a new inode of its own: writing into one target dir cannot change Poetry's
  cache, another target dir or a later bundle;
* files are 0644 (0755 when executable) and folders 0755, whatever the umask;
* a failure or a kill before the swap leaves the previous target dir as it was.

The swap itself is two renames; `Swap.undo` puts the previous folder back (used when the ZIP,
committed right after, cannot be).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.zipwriter import unsafe_path

if TYPE_CHECKING:
    from collections.abc import Sequence

    from poetry_plugin_lambda.assemble import Entry

MARKER = ".lambda-bundle-target"
MARKER_TEXT = "This folder is written by `poetry lambda-bundle`; every run replaces it whole.\n"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class StagedTargetDir:
    """A new folder beside the target dir, with every folder the entries need, filled file by file.

    Files are created new (`O_EXCL | O_NOFOLLOW`: never an existing file or a link) with their
    final mode; `finish` adds the marker. Safe to fill from several threads.
    """

    def __init__(self, target_dir: Path, entries: Sequence[Entry], *, folders: bool = True) -> None:
        """`folders=False`: only the folder itself; its folders are made by the helper process
        (`copy_writer`), which says whether they came out exact (`exact` is set then), or
        here by `make_folders` if it cannot."""
        self.target_dir = target_dir
        self.staged = Staged(target_dir, folder=True)
        self.exact = False
        try:
            if folders:
                self.exact = _make_folders(self.staged.path, entries)  # modes come out as asked: no chmod
        except BaseException:
            self.staged.discard()
            raise
        self._base = f"{self.staged.path}/"

    def make_folders(self, entries: Sequence[Entry]) -> None:
        """Every folder the entries need, where the helper may have made some of them already:
        those are taken if they are folders (not links), and every mode is set by chmod."""
        self.exact = False
        _make_folders(self.staged.path, entries, existing=True)

    def write(self, path: str, data: bytes, executable: bool) -> None:
        """Create the file `path` (relative to the target dir) holding `data`."""
        _write_new(self._base + path, data, file_mode(executable), self.exact)

    def create(self, path: str, executable: bool) -> int:
        """Create the file `path` and return its descriptor, for content written in pieces."""
        mode = file_mode(executable)
        fd = os.open(self._base + path, _CREATE, mode)
        if not self.exact:
            try:
                os.fchmod(fd, mode)  # the umask never decides a mode
            except BaseException:
                os.close(fd)
                raise
        return fd

    def finish(self) -> Staged:
        """The folder, complete (with its marker), ready to be swapped in."""
        _write_new(self.staged.path / MARKER, MARKER_TEXT.encode(), 0o644)
        os.chmod(self.staged.path, 0o755)
        return self.staged

    def discard(self) -> None:
        self.staged.discard()


class Swap:
    """A staged target dir renamed into place, with the previous one kept aside until `finish`."""

    def __init__(self, staged: Staged) -> None:
        self._staged = staged
        self._aside: Staged | None = None
        final = staged.final
        if os.path.lexists(final):
            self._aside = Staged(final, folder=True)  # an empty, locked folder to move it into
            os.rename(final, self._aside.path / "previous")
        try:
            staged.commit()
        except BaseException:
            if self._aside is not None:
                os.rename(self._aside.path / "previous", final)
                self._aside.discard()
            raise

    def undo(self) -> None:
        """Put the previous target dir (or its absence) back."""
        final = self._staged.final
        self._staged.uncommit()
        if self._aside is not None:
            os.rename(self._aside.path / "previous", final)
        self.finish()
        self._staged.discard()

    def finish(self) -> None:
        """Remove the previous target dir."""
        if self._aside is not None:
            self._aside.discard()
            self._aside = None
        self._staged.close()


def nested(path: Path, folder: Path) -> bool:
    """`path` is `folder` or inside it (both absolute, resolved the same way)."""
    return path == folder or folder in path.parents


def file_mode(executable: bool) -> int:
    """A file's mode in the target dir."""
    return 0o755 if executable else 0o644


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of `data` into `fd` (a write may take only part of it)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _write_new(dest: str | Path, data: bytes, mode: int, exact: bool = False) -> None:
    """Create `dest` (never an existing file or a link) holding `data`, with `mode` whatever the
    umask (`exact`: the umask is known to keep it)."""
    fd = os.open(dest, _CREATE, mode)
    try:
        if not exact:
            os.fchmod(fd, mode)
        write_all(fd, data)
    finally:
        os.close(fd)


def folders_of(entries: Sequence[Entry]) -> list[str]:
    """Every folder the entries need (relative), parents before their children."""
    folders: set[str] = set()
    for entry in entries:
        folder = entry.path.rpartition("/")[0]
        while folder and folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    return sorted(folders, key=lambda f: (f.count("/"), f))


def _make_folders(root: Path, entries: Sequence[Entry], *, existing: bool = False) -> bool:
    """Create every folder the entries need, parents first, one system call each.

    True when the first folder came out 0755 as asked: the umask (or default ACL) removes no bit
    of 0755, so files and folders are created with their final modes and need no chmod.
    `existing`: a folder that is there already (a real folder, not a link) is taken, and every
    mode is set by chmod.
    """
    base = f"{root}/"
    exact: bool | None = False if existing else None
    for folder in folders_of(entries):
        path = base + folder
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not existing or unsafe_path(folder) or not stat.S_ISDIR(os.lstat(path).st_mode):
                raise  # `..` exists too: never taken
        if exact is None:
            exact = os.stat(path).st_mode & 0o777 == 0o755
        if not exact:
            os.chmod(path, 0o755)  # the umask never decides a mode
    return bool(exact)
