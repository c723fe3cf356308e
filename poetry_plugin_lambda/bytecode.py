"""`--compile`: bytecode for the target's Python, so cold starts skip compiling every import.

Lambda's /var/task is read-only, so Python can never cache bytecode there itself. We compile
with an interpreter of the runtime's exact minor version (the magic number must match), as
PEP 552 unchecked-hash .pyc files: the ZIP's fixed timestamps can never invalidate them, and
the same sources give the same bytes (PYTHONHASHSEED is fixed for the compiler). Each module is
compiled (and deflated) once per (source, interpreter, runtime path) and then served from the
bytecode cache (`bytecode_cache.py`); only the modules it does not hold are compiled, in one run
of the interpreter. The .pyc entries are members of a scratch ZIP (`pyc_archive.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.bytecode_cache import BytecodeCache
from poetry_plugin_lambda.bytecode_cache import Outcome
from poetry_plugin_lambda.bytecode_cache import interpreter_info
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.pyc_archive import Deflated
from poetry_plugin_lambda.pyc_archive import deflate
from poetry_plugin_lambda.pyc_archive import write_archives

if TYPE_CHECKING:
    from collections.abc import Sequence

# Runs inside the target's interpreter: compile each (source, cfile, dfile); report the failures.
_COMPILER = r'''
import json, py_compile, sys
from concurrent.futures import ProcessPoolExecutor

def compile_one(item):
    source, cfile, dfile = item
    try:
        py_compile.compile(
            source, cfile=cfile, dfile=dfile, doraise=True, optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return None
    except Exception as error:  # a module this Python cannot compile is skipped, as compileall does
        return f"{type(error).__name__}: {error}".splitlines()[0]

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
    cached: int = 0  # modules served from the cache (compiled or known not to compile)
    fresh: int = 0  # modules the interpreter compiled on this run

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def runtime_path(bundle_path: str, layer: bool) -> str:
    """Where Lambda puts the file: /var/task for functions, /opt for layers (python/...)."""
    return ("/opt/" if layer else "/var/task/") + bundle_path


def pyc_path(source_path: str, cache_tag: str) -> str:
    """`a/b.py` -> `a/__pycache__/b.cpython-312.pyc`, as `importlib.util.cache_from_source` names it."""
    head, _, tail = source_path.rpartition("/")
    base, sep, rest = tail.rpartition(".")
    name = f"{base or rest}{sep}{cache_tag}.pyc"
    return f"{head}/__pycache__/{name}" if head else f"__pycache__/{name}"


def source_bytes(entry: Entry, archives: dict[Path, zipfile.ZipFile]) -> bytes:
    """An entry's bytes, whatever holds them; `archives` keeps each wheel open once."""
    if entry.data is not None:
        return entry.data
    if entry.file is not None:
        return entry.file.read_bytes()
    assert entry.archive is not None and entry.info is not None
    if entry.archive not in archives:
        archives[entry.archive] = zipfile.ZipFile(entry.archive)
    return archives[entry.archive].read(entry.info)


@dataclass(frozen=True)
class _Miss:
    entry: Entry
    key: str
    source: str  # the copy in scratch the compiler reads
    dfile: str


def compile_bytecode(
    entries: Sequence[Entry], python: Path, scratch: Path, *, layer: bool, workers: int, cache_dir: Path
) -> Compiled:
    """A .pyc entry for every .py entry `python` can compile, from `cache_dir` where it can."""
    interpreter = interpreter_info(python, cache_dir)
    cache = BytecodeCache(cache_dir, interpreter)
    outcomes: dict[str, Outcome] = {}
    misses: list[_Miss] = []
    sources = [e for e in entries if e.path.endswith(".py")]
    folder = scratch / "bytecode"
    archives: dict[Path, zipfile.ZipFile] = {}
    try:
        for entry in sources:
            data = source_bytes(entry, archives)
            dfile = runtime_path(entry.path, layer)
            key = cache.key(data, dfile)
            found = cache.get(key)
            if found is not None:
                outcomes[entry.path] = found
                continue
            if not misses:
                (folder / "src").mkdir(parents=True, exist_ok=True)
            copy = folder / "src" / f"{len(misses)}.py"
            copy.write_bytes(data)
            misses.append(_Miss(entry, key, str(copy), dfile))
    finally:
        for archive in archives.values():
            archive.close()
    for miss, outcome in zip(misses, _run_compiler(misses, python, folder, workers)):
        cache.put(miss.key, outcome)
        outcomes[miss.entry.path] = outcome
    # One archive per distribution, as its wheel: the target dir is written one thread per archive.
    by_owner: dict[str, list[tuple[str, Deflated]]] = {}
    warnings: list[str] = []
    for entry in sources:
        outcome = outcomes[entry.path]
        if outcome.pyc is None:
            warnings.append(f"Skipped bytecode for {entry.path} ({entry.owner}): {outcome.error}")
            continue
        by_owner.setdefault(entry.owner, []).append((pyc_path(entry.path, interpreter.cache_tag), outcome.pyc))
    made = [
        Entry(path=path, owner=owner, size=info.file_size, archive=archive, info=info)
        for owner, members in by_owner.items()
        for path, (archive, info) in write_archives(folder / "zip", members).items()
    ]
    return Compiled(tuple(made), tuple(warnings), cached=len(sources) - len(misses), fresh=len(misses))


def _run_compiler(misses: Sequence[_Miss], python: Path, folder: Path, workers: int) -> list[Outcome]:
    """Compile the misses in one run of `python` (parallel inside it): their outcomes, in order.

    Not isolated mode (`-I`): it ignores PYTHONHASHSEED, and Python 3.9 and 3.10 write frozensets
    of strings in hash order. Instead every PYTHON* variable is dropped, site is not imported
    (`-s -S`) and the script runs from a folder holding nothing else.
    """
    if not misses:
        return []
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    script = run / "lambda_bundle_compiler.py"
    script.write_text(_COMPILER)
    items = [[m.source, str(folder / "pyc" / f"{i}.pyc"), m.dfile] for i, m in enumerate(misses)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    try:
        result = subprocess.run(
            [str(python), "-s", "-S", str(script), str(max(1, workers))],
            input=json.dumps(items), capture_output=True, text=True, env=env, cwd=run, check=False,
        )
    except OSError as error:
        raise BundleError(f"Cannot run {python} to compile bytecode: {error.strerror}.") from None
    if result.returncode != 0:
        raise BundleError(f"Compiling bytecode with {python} failed: {result.stderr.strip()[-500:]}")
    with ThreadPoolExecutor(max(1, workers)) as pool:  # zlib lets go of the GIL
        return list(pool.map(_outcome, [cfile for _, cfile, _ in items], json.loads(result.stdout)))


def _outcome(cfile: str, error: str | None) -> Outcome:
    if error is not None:
        return Outcome(None, error)
    pyc = Path(cfile).read_bytes()
    with contextlib.suppress(OSError):
        os.unlink(cfile)
    return Outcome(deflate(pyc))
