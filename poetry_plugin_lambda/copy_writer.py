"""A helper process that writes part of the target dirs' files from the cache's unpacked copies.

Creating a file costs the kernel far more than Python (10-30 us per file on ext4), and threads
of one process cannot overlap that work well: each of the three system calls a file takes
hands Python's lock (GIL) back and forth, and on a small VM each handoff costs as much as the
file. So a run with many files gives a share of them to a second interpreter (this one's,
`-I -S`, nothing imported but os, zlib and marshal): it creates them in the staged target dirs,
from the unpacked copies (`unpacked.py`), while this process writes the ZIPs and the rest of the
files. Each file is held to its member's size and CRC exactly as `emit._Copy` holds it; a file
whose copy fails that is left for this process, which inflates it from its archive.

The helper only creates files, the way `target_dir.StagedTargetDir` does (new, `O_EXCL |
O_NOFOLLOW`, final mode), in folders the staged dir already holds; it never removes anything.
The parent waits for it (or kills it and waits) before a staged dir is committed or removed.
"""

from __future__ import annotations

import contextlib
import marshal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# Runs in the helper: reads one job (marshal) from stdin, writes one answer (marshal) to stdout.
_HELPER = r"""
import marshal, os, sys, zlib
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
WHOLE = 16 << 20

def read_whole(path):
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

def main():
    roots, copies, files = marshal.loads(sys.stdin.buffer.read())
    bases = [root + "/" for root, _ in roots]
    exact = [exact for _, exact in roots]
    missed, errors = [], {}
    current, data, fd = -1, None, None
    for number, (root, path, mode, copy, start, size, crc) in enumerate(files):
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
            out = os.open(bases[root] + path, CREATE, mode)
            try:
                if not exact[root]:
                    os.fchmod(out, mode)
                view = memoryview(piece)
                while view:
                    view = view[os.write(out, view):]
            finally:
                os.close(out)
        except OSError as error:
            errors[root] = (error.errno or 0, error.strerror or type(error).__name__, error.filename or "")
    if fd is not None:
        os.close(fd)
    sys.stdout.buffer.write(marshal.dumps((missed, errors)))

main()
"""


# One file for the helper: (root, path, mode, copy, start, size, crc): in staged target dir `root`
# (an index in the job's roots), at `path`, with `mode`, holding the `size` bytes at `start` of
# unpacked copy `copy` (an index in the job's copies), whose CRC-32 must be `crc`.
CopiedFile = tuple[int, str, int, int, int, int, int]


@dataclass(frozen=True)
class Outcome:
    """What the helper did: the files it left (their copy failed its check: `missed`, by index
    in the job) and, by root, the operating system's refusal that stopped its files there; or,
    `stopped`, how the helper died (what it wrote is then unknown)."""

    missed: list[int]
    errors: dict[int, OSError]
    stopped: str | None = None


class CopyWriter:
    """The helper process: started early (Python starts while this process lays out the
    outputs), then `give`n its one job, sent on a thread of its own while this process goes on;
    `wait` for what it did, or `stop` it (always, at the end: it is a no-op once it is done)."""

    def __init__(self) -> None:
        self._count = 0
        self._sender: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        with contextlib.suppress(OSError):  # no helper: this process writes every file
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )

    def give(self, roots: Sequence[tuple[str, bool]], copies: Sequence[str], files: Sequence[CopiedFile]) -> None:
        """The job: `roots`, the staged target dirs (and whether their modes need no chmod);
        `copies`, the unpacked copies' paths; `files`, what to write where."""
        self._count = len(files)
        if self._process is not None:
            job = marshal.dumps(([list(root) for root in roots], list(copies), list(files)))
            self._sender = threading.Thread(target=self._send, args=(job,), daemon=True)
            self._sender.start()

    def _send(self, job: bytes) -> None:
        assert self._process is not None and self._process.stdin is not None
        with contextlib.suppress(OSError):  # it died: `wait` says so
            self._process.stdin.write(job)
            self._process.stdin.close()

    def wait(self) -> Outcome:
        """The helper's outcome once it is done (every file missed if it never started)."""
        process = self._process
        if process is None or self._sender is None:
            return Outcome(list(range(self._count)), {})
        self._sender.join()
        assert process.stdout is not None
        out = process.stdout.read()
        code = process.wait()
        try:
            if code != 0:
                raise ValueError(code)
            missed, errors = marshal.loads(out)
            return Outcome(list(missed), {int(root): OSError(*why) for root, why in errors.items()})
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
