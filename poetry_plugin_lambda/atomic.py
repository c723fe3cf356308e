"""Atomic writes: every file or folder the plugin writes appears whole or not at all.

The one mechanism behind the ZIP, the target dir and every cache entry. Content is written
beside its final place under a unique temporary name (`.<name>.tmp-XXXXXXXX`), locked with an
advisory lock for as long as its writer lives, and renamed into place only when complete. A
writer that fails removes its temporary; one that is killed leaves it unlocked, and the next
writer of the same final path removes it (`remove_stale`). Concurrent writers never share a
temporary name, and a temporary is created under a name of its own (`.<name>.new-…`), locked,
and only then given its `.tmp-` name, so no other writer can find it unlocked and take it for a
dead run's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.interrupts import held

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

try:  # advisory locks tell a dead writer's temporaries from a live one's
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class Cancelled(Exception):
    """Stop staging: another output of the same run failed, so this one would be discarded."""


def temp_prefix(final: Path) -> str:
    """The name prefix of `final`'s temporaries: hidden, and never matching `final` itself."""
    return f".{final.name}.tmp-"


def _new_prefix(final: Path) -> str:
    """The prefix a temporary has for the microseconds before it is locked."""
    return f".{final.name}.new-"


_SAFE_OPEN = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | _SAFE_OPEN
_NEW_GRACE = 60.0  # seconds: a `.new-` name older than this was left by a killed writer


def _lock(fd: int, blocking: bool) -> bool:
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def remove_stale(final: Path) -> None:
    """Delete temporaries of `final` that no live writer holds (left by a killed run)."""
    if fcntl is None or not final.parent.is_dir():  # pragma: no cover - Windows
        return
    now = time.time()
    strays = list(final.parent.glob(temp_prefix(final) + "*"))
    for young in final.parent.glob(_new_prefix(final) + "*"):
        with contextlib.suppress(OSError):
            if now - young.lstat().st_mtime > _NEW_GRACE:
                strays.append(young)
    for stray in strays:
        try:
            fd = os.open(stray, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if not _lock(fd, blocking=False):
                continue  # a live writer owns it
            if os.path.isdir(stray) and not os.path.islink(stray):
                shutil.rmtree(stray, ignore_errors=True)
            else:
                stray.unlink(missing_ok=True)
        finally:
            os.close(fd)


class Staged:
    """A temporary file or folder beside `final`, locked while this object lives.

    `commit()` renames it into place; `discard()` removes it. Use it as a context manager to
    discard on any failure: after a commit, discarding does nothing. Until it is committed or
    discarded it is also listed for `discard_unfinished`, the net under a run that stops at a
    moment no `with` or `except` covers.
    """

    def __init__(self, final: Path, *, folder: bool = False) -> None:
        self.final = final
        self.folder = folder
        self._fd = -1
        self._done = False
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(final.parent)) from None
        remove_stale(final)
        with held() as interrupt:  # both names are known before either exists: a failure removes both
            young, self.path = _create(final, folder, self)
            try:
                _lock(self._fd, blocking=True)  # nobody else knows this name: never contended
                os.rename(young, self.path)
                _register(self)
            except BaseException:
                self._done = True
                self.close()
                for name in (young, self.path):
                    _remove(name, folder)
                raise
        interrupt.reraise()  # listed by now: `discard_unfinished` removes it

    @property
    def fd(self) -> int:
        """The open descriptor of the temporary (a file's is writable)."""
        return self._fd

    def commit(self) -> None:
        """Rename the temporary onto `final` (a file replaces a file; a folder needs `final` absent)."""
        os.replace(self.path, self.final)
        self._done = True
        _unregister(self)

    def uncommit(self) -> None:
        """Rename a committed folder back to its temporary name (so `discard` removes it)."""
        os.rename(self.final, self.path)
        self._done = False
        _register(self)

    def discard(self) -> None:
        with held() as interrupt:  # a Ctrl-C during the clean-up does not leave half of it
            if not self._done:
                self._done = True
                _remove(self.path, self.folder)
            self.close()
            _unregister(self)
        interrupt.reraise()

    def close(self) -> None:
        """Release the lock (the temporary is committed or gone by now)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.discard()


def _create(final: Path, folder: bool, staged: Staged) -> tuple[Path, Path]:
    """A new file or folder under a young name of `final`'s, its descriptor kept in `staged`;
    returns the young name and the `.tmp-` name it is to have."""
    for _ in range(100):
        suffix = os.urandom(6).hex()
        young = final.parent / (_new_prefix(final) + suffix)
        try:
            if folder:
                os.mkdir(young, 0o700)
            else:
                staged._fd = os.open(young, _NEW_FILE, 0o600)
        except FileExistsError:
            continue  # someone else's: never touched
        if folder:
            try:
                staged._fd = os.open(young, os.O_RDONLY | _SAFE_OPEN)
            except BaseException:
                os.rmdir(young)
                raise
        return young, final.parent / (temp_prefix(final) + suffix)
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(final.parent))


def _remove(path: Path, folder: bool) -> None:
    """Remove a temporary that may or may not exist."""
    if folder:
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_unfinished: set[Staged] = set()
_unfinished_lock = threading.Lock()


def _register(staged: Staged) -> None:
    with _unfinished_lock:
        _unfinished.add(staged)


def _unregister(staged: Staged) -> None:
    with _unfinished_lock:
        _unfinished.discard(staged)


def discard_unfinished() -> None:
    """Remove every temporary of this process not yet committed or discarded.

    Called by the command when a run ends, however it ends: after a Ctrl-C that came between a
    temporary's creation and the `with` or `try` meant to remove it, nothing is left behind.
    """
    with _unfinished_lock:
        left = list(_unfinished)
    for staged in left:
        with contextlib.suppress(OSError):
            staged.discard()


@contextlib.contextmanager
def atomic_file(final: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write `final` whole or not at all: yields a binary file; renamed into place on success."""
    with Staged(final) as staged:
        with os.fdopen(os.dup(staged.fd), "wb") as f:
            yield f
        os.chmod(staged.path, mode)
        staged.commit()


def write_atomic(final: Path, data: bytes, mode: int = 0o644) -> None:
    """`final` holds `data`, or keeps what it held before."""
    with atomic_file(final, mode) as f:
        f.write(data)


def scratch_folder(name: str) -> Staged:
    """A private folder for a run's scratch work in the system's temporary folder, locked while
    the run lives and removed by it; one a killed run left (SIGKILL, a power cut) is removed by
    the next run, as the outputs' temporaries are (`remove_stale`). Use it as a context manager."""
    import tempfile

    return Staged(Path(tempfile.gettempdir()) / name, folder=True)


_CHECKED = b"LBCHECKED1\n"  # then the payload's SHA-256, then the payload


def write_checked(final: Path, payload: bytes) -> None:
    """A cache file whose damage `read_checked` detects: the payload after its SHA-256."""
    write_atomic(final, _CHECKED + hashlib.sha256(payload).digest() + payload)


def read_checked(path: Path) -> bytes | None:
    """What `write_checked` wrote; None when the file is missing, unreadable or damaged (a
    flipped bit in a cache file that still parses must not be believed)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    start = len(_CHECKED) + 32
    if not blob.startswith(_CHECKED) or hashlib.sha256(blob[start:]).digest() != blob[len(_CHECKED) : start]:
        return None
    return blob[start:]


def copy_atomic(source: Path, final: Path, mode: int = 0o644) -> None:
    """`final` becomes a copy of `source`, or keeps what it held before."""
    with atomic_file(final, mode) as f, source.open("rb") as src:
        shutil.copyfileobj(src, f, 1 << 20)
