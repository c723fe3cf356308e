"""How slow creating files is after deleting many, on the file system under a folder.

An ext4 file system without a journal does not reuse an inode deleted in the last 60 s (300 s
while its inode table block is dirty) and scans past each such inode for every file it creates,
so a target dir written just after a previous one was deleted can take several times longer
there; with a journal, it does not. docs/performance.md ("The file system without a journal")
quotes this script's numbers. Run it once on each file system to compare (it is a script, not a
pytest test)::

    .venv/bin/python tests/benchmarks/bench_inode_reuse.py DIR [--files 10000] [--size 10000]

It creates `--files` files of `--size` bytes in folders of 100 under a new folder in DIR, then
again beside them; deletes both, `sync`s and creates them once more; deletes that, `sync`s and
creates them a last time; and prints each creation's wall time. Everything it made is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def create(folder: Path, files: int, size: int) -> float:
    """Wall seconds to create `files` new files of `size` bytes under `folder`, 100 per folder."""
    folder.mkdir()
    data = b"x" * size
    start = time.perf_counter()
    for i in range(files):
        sub = folder / str(i // 100)
        if i % 100 == 0:
            sub.mkdir()
        fd = os.open(sub / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("where", type=Path, help="a folder on the file system to measure")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="inode-reuse-", dir=args.where))
    try:
        n = args.files
        print(f"{n:,} files of {args.size:,} bytes under {base}")
        def report(label: str, folder: str) -> None:
            print(f"  {label:40} {create(base / folder, n, args.size):.2f} s", flush=True)

        report("created, nothing deleted before:", "a")
        os.sync()
        report("created again beside them:", "b")
        shutil.rmtree(base / "a")
        shutil.rmtree(base / "b")
        os.sync()
        report(f"after deleting {2 * n:,} files, sync:", "c")
        shutil.rmtree(base / "c")
        os.sync()
        report(f"after deleting {n:,} more, sync:", "d")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
