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
import shutil
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import Cancelled
from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.sources import Archives

if TYPE_CHECKING:
    from collections.abc import Sequence

    from poetry_plugin_lambda.assemble import Entry

MARKER = ".lambda-bundle-target"
MARKER_TEXT = "This folder is written by `poetry lambda-bundle`; every run replaces it whole.\n"
_WRITERS = min(4, os.cpu_count() or 2)  # one per core: more only fight for the GIL (measured)
_CHUNK = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def stage_target_dirs(
    jobs: Sequence[tuple[Sequence[Entry], Path, threading.Event]],
) -> list[Staged | Exception]:
    """Several complete new target dirs (entries, target dir, cancel), staged in one pass.

    A wheel member that several of them hold (a layer and a function of the same run) is read
    and inflated once and written into each. Each target dir fails alone: its error (or
    `Cancelled`, once its `cancel` is set) is returned in its place, its staged folder removed,
    and its `cancel` set so that its ZIP stops too; the others go on.
    """
    states = [_Job(target_dir, cancel) for _, target_dir, cancel in jobs]
    try:
        for state, (entries, _, _) in zip(states, jobs):
            state.start(entries)
        _write_all(_by_member(states, jobs))
        return [state.finish() for state in states]
    except BaseException:
        for state in states:
            state.fail(Cancelled())
            state.finish()
        raise


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


class _Job:
    """One target dir being staged, and the first error that stopped it."""

    def __init__(self, target_dir: Path, cancel: threading.Event) -> None:
        self.target_dir, self.cancel = target_dir, cancel
        self.staged: Staged | None = None
        self.error: Exception | None = None
        self.exact = False  # modes come out as asked: no chmod needed
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        assert self.staged is not None
        return f"{self.staged.path}/"

    def start(self, entries: Sequence[Entry]) -> None:
        try:
            self.staged = Staged(self.target_dir, folder=True)
            self.exact = _make_folders(self.staged.path, entries)
        except Exception as error:  # returned as this target dir's outcome
            self.fail(error)

    @property
    def live(self) -> bool:
        return self.error is None and not self.cancel.is_set()

    def fail(self, error: Exception) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.cancel.set()  # its ZIP would be discarded: stop writing it

    def finish(self) -> Staged | Exception:
        """The staged folder, complete; or this job's error, with whatever it staged removed."""
        if self.live and self.staged is not None:
            try:
                _write_new(self.staged.path / MARKER, MARKER_TEXT.encode(), 0o644)
                os.chmod(self.staged.path, 0o755)
                return self.staged
            except Exception as error:  # returned as this target dir's outcome
                self.fail(error)
        if self.staged is not None:
            self.staged.discard()
            self.staged = None
        return self.error or Cancelled()


if TYPE_CHECKING:
    _Member = tuple[object, ...]  # a wheel member: (archive, offset); another entry: (job, path)
    _Targets = list[tuple[_Job, Entry]]


def _by_member(
    states: Sequence[_Job], jobs: Sequence[tuple[Sequence[Entry], Path, threading.Event]]
) -> list[dict[_Member, _Targets]]:
    """Groups of work, one per source archive: each member, with every (job, entry) it goes to.

    Wheel members are keyed by their archive and place in it, so one shared by several target
    dirs is read once; other entries (generated or project files) belong to one job each. One
    thread per archive keeps the threads in folders far apart: splitting a large wheel across
    threads doubled the kernel's time on ext4 (measured), even with each folder in one thread.
    """
    groups: dict[object, dict[_Member, _Targets]] = defaultdict(lambda: defaultdict(list))
    for index, (state, (entries, _, _)) in enumerate(zip(states, jobs)):
        if not state.live:
            continue
        for entry in entries:
            if entry.archive is not None and entry.info is not None:
                groups[entry.archive][(entry.archive, entry.info.header_offset)].append((state, entry))
            else:
                groups[None][(index, entry.path)].append((state, entry))
    return list(groups.values())


def _write_all(groups: Sequence[dict[_Member, _Targets]]) -> None:
    """Write every member to each of its target dirs, one thread per group of members."""

    def write_group(members: dict[_Member, _Targets]) -> None:
        with Archives() as archives:
            for targets in members.values():
                live = [(state, entry) for state, entry in targets if state.live]
                if live:
                    _write_member(live, archives)

    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        for _ in pool.map(write_group, groups):
            pass


def _write_member(targets: _Targets, archives: Archives) -> None:
    """Read one member (once) and write it into each target dir that holds it."""
    try:
        data = archives.small_bytes(targets[0][1])
    except Exception as error:  # a bad source fails every target dir holding it
        for state, _ in targets:
            state.fail(error)
        return
    for state, entry in targets:
        try:
            _write_entry(state.base + entry.path, entry, data, archives, state.exact)
        except Exception as error:  # returned as this target dir's outcome
            state.fail(error)


def _write_entry(dest: str, entry: Entry, data: bytes | None, archives: Archives, exact: bool) -> None:
    """Create `dest` from `data`, or stream it from its source when it is too large to hold."""
    mode = 0o755 if entry.executable else 0o644
    if data is not None:
        _write_new(dest, data, mode, exact)
        return
    fd = os.open(dest, _CREATE, mode)
    with os.fdopen(fd, "wb") as out, archives.stream(entry) as src:
        os.fchmod(fd, mode)  # the umask never decides a mode
        shutil.copyfileobj(src, out, _CHUNK)


def _write_new(dest: str | Path, data: bytes, mode: int, exact: bool = False) -> None:
    """Create `dest` (never an existing file or a link) holding `data`, with `mode` whatever the
    umask (`exact`: the umask is known to keep it)."""
    fd = os.open(dest, _CREATE, mode)
    try:
        if not exact:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _make_folders(root: Path, entries: Sequence[Entry]) -> bool:
    """Create every folder the entries need, parents first, one system call each.

    True when the first folder came out 0755 as asked: the umask (or default ACL) removes no bit
    of 0755, so files and folders are created with their final modes and need no chmod.
    """
    folders: set[str] = set()
    for entry in entries:
        folder = entry.path.rpartition("/")[0]
        while folder and folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    base = f"{root}/"
    exact: bool | None = None
    for folder in sorted(folders, key=lambda f: (f.count("/"), f)):
        path = base + folder
        os.mkdir(path, 0o755)
        if exact is None:
            exact = os.stat(path).st_mode & 0o777 == 0o755
        if not exact:
            os.chmod(path, 0o755)  # the umask never decides a mode
    return bool(exact)
