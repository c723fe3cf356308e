"""A helper process that writes part of the target dirs' files from the cache's unpacked copies.

Creating a file costs the kernel far more than Python (10-30 us per file on ext4), and threads
of one process cannot overlap that work well: each of the three system calls a file takes
hands Python's lock (GIL) back and forth, and on a small VM each handoff costs as much as the
file. So a run with many files gives a share of them to a second interpreter (this one's,
`-I -S`, nothing imported but os, zlib, marshal and signal): it creates them in the staged
target dirs, from the unpacked copies (`unpacked.py`), while this process writes the ZIPs and
the rest of the files. Each file is held to its member's size and CRC exactly as `emit._Copy`
holds it; a file whose copy fails that is left for this process, which inflates it.

It starts as soon as the staged target dirs exist, before this process lays out the ZIPs, and
first makes every folder of those dirs (as `target_dir.StagedTargetDir` makes them: parents
first, 0755 whatever the umask), says so (`CopyWriter.folders`), then creates its files the
way `StagedTargetDir` does (new, `O_EXCL | O_NOFOLLOW`, final mode). It never removes
anything. Paths cross as bytes (`os.fsencode`), so both processes name a file alike whatever
the locale. It holds the staged dirs' locks with this process (their descriptors are
inherited), so no other run removes a staged dir it may still write into, and it stops by
itself if this process dies. It ignores Ctrl-C: this process decides, and kills it and waits
for it before a staged dir is committed or removed. A helper that never said its folders were
made (no usable interpreter, or it died first) wrote no file: the folders and files are all
left to this process.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# Runs in the helper: reads one job (marshal) from stdin, says it started (b"S"), makes the
# folders and says so (b"F", the answer's length, the answer: marshal), creates the files, then
# writes one last answer (marshal) to stdout.
_HELPER = r"""
import marshal, os, signal, sys, zlib
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides: it kills this process if it stops
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
WHOLE = 16 << 20
PARENT = os.getppid()

def read_whole(path):
    # zipread.RawSource.whole's read, written again: this interpreter runs isolated and imports
    # nothing of the plugin.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size > WHOLE:
            return None, fd
        pieces, offset = [], 0
        while True:
            piece = os.pread(fd, size + 1 - offset, offset)
            if not piece:
                break
            pieces.append(piece)
            offset += len(piece)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return b"".join(pieces), None

def folders(bases, wanted):
    # Each root's folders, parents first, as target_dir._make_folders makes them: whether the
    # first came out 0755 (then nothing needs a chmod), and the refusal that stopped a root's.
    exact, errors = [], {}
    for root, base in enumerate(bases):
        first = None
        try:
            for folder in wanted[root]:
                path = base + folder
                os.mkdir(path, 0o755)
                if first is None:
                    first = os.stat(path).st_mode & 0o777 == 0o755
                if not first:
                    os.chmod(path, 0o755)
        except OSError as error:
            errors[root] = described(error)
        exact.append(bool(first))
    return exact, errors

def described(error):
    name = error.filename if isinstance(error.filename, bytes) else b""
    return (error.errno or 0, error.strerror or type(error).__name__, name)

def main():
    roots, wanted, copies, files = marshal.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    out.write(b"S")  # started: from here on, folders may exist
    out.flush()
    bases = [root + b"/" for root in roots]
    exact, errors = folders(bases, wanted)
    answer = marshal.dumps((exact, errors))
    out.write(b"F" + len(answer).to_bytes(4, "big") + answer)  # the folders are made: files may follow
    out.flush()
    missed = []
    current, data, fd = -1, None, None
    for number, (root, path, mode, copy, start, size, crc) in enumerate(files):
        if number % 32 == 0 and os.getppid() != PARENT:
            os._exit(3)  # the parent is gone: nobody will use or remove what follows
        if root in errors:
            continue
        if copy != current:
            if fd is not None:
                os.close(fd)
            current, data, fd = copy, None, None
            try:
                data, fd = read_whole(copies[copy])
            except OSError:
                pass
        if data is not None:
            piece = data[start:start + size]
        elif fd is not None:
            try:
                piece = os.pread(fd, size, start)
            except OSError:
                piece = b""
        else:
            piece = b""
        if len(piece) != size or zlib.crc32(piece) != crc:
            missed.append(number)
            continue
        try:
            made = os.open(bases[root] + path, CREATE, mode)
            try:
                if not exact[root]:
                    os.fchmod(made, mode)
                view = memoryview(piece)
                while view:
                    view = view[os.write(made, view):]
            finally:
                os.close(made)
        except OSError as error:
            errors[root] = described(error)
    if fd is not None:
        os.close(fd)
    out.write(marshal.dumps((missed, errors)))

main()
"""

# One file for the helper: (root, path, mode, copy, start, size, crc): in staged target dir `root`
# (an index in the job's roots), at `path` (bytes, relative), with `mode`, holding the `size`
# bytes at `start` of unpacked copy `copy` (an index in the job's copies), whose CRC-32 is `crc`.
CopiedFile = tuple[int, bytes, int, int, int, int, int]


@dataclass(frozen=True)
class Outcome:
    """What the helper did: the files it left (their copy failed its check, or it never said its
    folders were made: `missed`, by index in the job) and, by root, the operating system's refusal that stopped its
    files there; or, `stopped`, how it died once it had started (what it wrote is unknown)."""

    missed: list[int]
    errors: dict[int, OSError]
    stopped: str | None = None


@dataclass(frozen=True)
class Folders:
    """The folders the helper made: by root, whether they came out with their modes exact (files
    need no chmod there), and the refusals that stopped a root's folders (and its files)."""

    exact: list[bool]
    errors: dict[int, OSError]


def available() -> bool:
    """A helper can run here: this interpreter can be started again (not a frozen or embedded
    one) and has the calls it uses (POSIX)."""
    return bool(sys.executable) and not getattr(sys, "frozen", False) and os.name == "posix" and hasattr(os, "pread")


class CopyWriter:
    """The helper process, started with its one job (sent on a thread of its own while this
    process goes on): it makes every root's folders first (`folders` waits for them), then its
    files; `wait` for what it did, or `stop` it (always, at the end: it is a no-op once it is
    done)."""

    def __init__(
        self,
        roots: Sequence[tuple[bytes, int]],
        folders: Sequence[Sequence[bytes]],
        copies: Sequence[bytes],
        files: Sequence[CopiedFile],
    ) -> None:
        """`roots`: each staged target dir's path and the descriptor that holds its lock
        (inherited: the helper holds it too); `folders`: each root's folders (relative, parents
        first)."""
        self._count = len(files)
        self._process: subprocess.Popen[bytes] | None = None
        self._sender: threading.Thread | None = None
        self._folders: Folders | None = None
        self._answered = False  # `folders` has read the helper's first answer (or found none)
        job = marshal.dumps(([path for path, _ in roots], [list(f) for f in folders], list(copies), list(files)))
        with contextlib.suppress(OSError, ValueError, TypeError):  # no helper: this process writes every file
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                pass_fds=[fd for _, fd in roots],
            )
        if self._process is not None:
            self._sender = threading.Thread(target=self._send, args=(job,), daemon=True)
            self._sender.start()

    def _send(self, job: bytes) -> None:
        assert self._process is not None and self._process.stdin is not None
        with contextlib.suppress(OSError):  # it died: `wait` says so
            self._process.stdin.write(job)
            self._process.stdin.close()

    def folders(self) -> Folders | None:
        """The folders made, once the helper has made them; None if it made no answer (it never
        started, or stopped first): then it is stopped, it wrote no file, and every folder and
        file is this process's to make."""
        if not self._answered:
            try:
                self._folders = self._read_folders()
            except BaseException:  # interrupted while waiting: it writes nothing more
                self.stop()
                raise
            self._answered = True
            if self._folders is None:
                self.stop()
        return self._folders

    def _read_folders(self) -> Folders | None:
        process = self._process
        if process is None or process.stdout is None:
            return None
        head = process.stdout.read(6)
        if len(head) != 6 or head[:2] != b"SF":
            return None
        answer = process.stdout.read(int.from_bytes(head[2:], "big"))
        try:
            exact, errors = marshal.loads(answer)
            return Folders([bool(e) for e in exact], _errors(errors))
        except (ValueError, EOFError, TypeError):
            return None

    def wait(self) -> Outcome:
        """The helper's outcome once it is done."""
        process, everything = self._process, list(range(self._count))
        if self.folders() is None or process is None or self._sender is None:
            return Outcome(everything, {})
        self._sender.join()
        assert process.stdout is not None
        out = process.stdout.read()
        code = process.wait()
        try:
            if code != 0:
                raise ValueError(code)
            missed, errors = marshal.loads(out)
            return Outcome(list(missed), _errors(errors))
        except (ValueError, EOFError, TypeError):
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            return Outcome([], {}, stopped=f"the helper process writing its files stopped ({how})")

    def stop(self) -> None:
        """Kill the helper if it still runs and wait for it: nothing more is written once this
        returns."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        if self._sender is not None:
            self._sender.join()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _errors(answer: dict[int, tuple[int, str, bytes]]) -> dict[int, OSError]:
    """The helper's refusals, by root, as this process's `OSError`s."""
    return {int(root): OSError(errno, strerror, os.fsdecode(name) if name else None) for root, (errno, strerror, name) in answer.items()}
