"""`--compile`: bytecode for the target's Python, so cold starts skip compiling every import.

Lambda's /var/task is read-only, so Python can never cache bytecode there itself. We compile
with an interpreter of the runtime's exact minor version (the magic number must match), as
PEP 552 unchecked-hash .pyc files: the ZIP's fixed timestamps can never invalidate them, and
the same sources give the same bytes (PYTHONHASHSEED is fixed for the compiler).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.sources import Archives

if TYPE_CHECKING:
    from collections.abc import Sequence

# Runs inside the target's interpreter: compile each (source, dfile) and report what it made.
_COMPILER = r'''
import importlib.util, json, py_compile, sys
from concurrent.futures import ProcessPoolExecutor

def compile_one(item):
    source, dfile = item
    try:
        cfile = importlib.util.cache_from_source(source)
        py_compile.compile(
            source, cfile=cfile, dfile=dfile, doraise=True, optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return [source, cfile, None]
    except Exception as error:  # a module this Python cannot compile is skipped, as compileall does
        return [source, None, f"{type(error).__name__}: {error}".splitlines()[0]]

if __name__ == "__main__":
    items = json.load(sys.stdin)
    workers = int(sys.argv[1])
    if workers > 1 and len(items) > 50:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(compile_one, items, chunksize=32))
    else:
        results = [compile_one(item) for item in items]
    json.dump(results, sys.stdout)
'''


@dataclass(frozen=True)
class Compiled:
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def runtime_path(bundle_path: str, layer: bool) -> str:
    """Where Lambda puts the file: /var/task for functions, /opt for layers (python/...)."""
    return ("/opt/" if layer else "/var/task/") + bundle_path


def compile_bytecode(
    entries: Sequence[Entry], python: Path, scratch: Path, *, layer: bool, workers: int
) -> Compiled:
    """Compile every .py entry with `python`; the .pyc files become entries (files in scratch)."""
    sources = [e for e in entries if e.path.endswith(".py")]
    root = scratch / "bytecode"
    root.mkdir(parents=True, exist_ok=True)
    _write_sources(sources, root)
    owners = {str(root / e.path): e.owner for e in sources}
    items = [[str(root / e.path), runtime_path(e.path, layer)] for e in sources]
    script = scratch / "compile_bytecode.py"
    script.write_text(_COMPILER)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), "-I", str(script), str(max(1, workers))],
        input=json.dumps(items), capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        raise BundleError(f"Compiling bytecode with {python} failed: {result.stderr.strip()[-500:]}")
    made: list[Entry] = []
    warnings: list[str] = []
    for source, cfile, error in json.loads(result.stdout):
        rel = Path(source).relative_to(root).as_posix()
        if error is not None:
            warnings.append(f"Skipped bytecode for {rel} ({owners[source]}): {error}")
            continue
        pyc = Path(cfile)
        made.append(Entry(
            path=pyc.relative_to(root).as_posix(), owner=owners[source], size=pyc.stat().st_size, file=pyc,
        ))
    return Compiled(tuple(made), tuple(warnings))


def _write_sources(entries: Sequence[Entry], root: Path) -> None:
    """The sources to compile, as files the compiler can read."""
    with Archives() as archives:
        for entry in entries:
            dest = root / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archives.read(entry))
