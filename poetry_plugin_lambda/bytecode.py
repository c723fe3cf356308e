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

import os
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.bytecode_cache import BytecodeCache
from poetry_plugin_lambda.bytecode_cache import Outcome
from poetry_plugin_lambda.bytecode_cache import interpreter_info
from poetry_plugin_lambda.bytecode_memo import Memo
from poetry_plugin_lambda.bytecode_memo import WheelMemos
from poetry_plugin_lambda.digests import file_digest
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import cause_line
from poetry_plugin_lambda.pyc_archive import Deflated
from poetry_plugin_lambda.pyc_archive import deflate
from poetry_plugin_lambda.pyc_archive import write_archives
from poetry_plugin_lambda.sources import Archives

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Sequence

    from poetry_plugin_lambda.unpacked import Unpacked

# Runs inside the target's interpreter: reads (dfile, source) frames, writes one outcome frame each:
# b"c" + the .pyc, as py_compile writes an unchecked-hash one, or b"e" + why it does not compile.
_COMPILER = r"""
import importlib.util, marshal, os, struct, sys, threading, time, warnings
from concurrent.futures import ProcessPoolExecutor

warnings.simplefilter("ignore")  # SyntaxWarnings say nothing about the bytecode
CODE = type(compile("", "", "exec"))

def held(code):
    # Python 3.9 and 3.10: every object of the module's code, held once more while it is
    # marshalled. Their marshal marks an object for back-references only when something else
    # holds it too; an interned name that a module this process happens to have loaded also uses
    # (`_launch`, with the pool's multiprocessing) was marked in one process and not in another,
    # so the same source gave different bytes. Held here, every object is marked, whatever else
    # the process holds. (Newer versions write the same bytes either way, py_compile's.)
    if sys.version_info >= (3, 11):
        return []
    keep, stack = [], [code]
    while stack:
        obj = stack.pop()
        keep.append(obj)
        if type(obj) in (tuple, frozenset):
            stack.extend(obj)
        elif type(obj) is CODE:
            stack.extend(getattr(obj, name) for name in (
                "co_code", "co_consts", "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_filename",
                "co_name", "co_qualname", "co_lnotab", "co_linetable", "co_exceptiontable",
            ) if hasattr(obj, name))
    return keep

def compile_one(item):
    dfile, source = item
    try:
        code = compile(source, dfile, "exec", dont_inherit=True, optimize=0)
    except Exception as error:  # a module this Python cannot compile is skipped, as compileall does
        return b"e" + (f"{type(error).__name__}: {error}".splitlines() or ["?"])[0].encode("utf-8", "replace")
    flags = (0b01).to_bytes(4, "little")  # hash-based, unchecked (PEP 552)
    keep = held(code)
    data = marshal.dumps(code)
    del keep
    return b"c" + importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + data

def ends_with(parent):
    # This process ends soon after the one that started it: the plugin kills only this
    # interpreter's main process (a signal sent to the plugin's process alone, not its group),
    # and the pool's workers, which hold both ends of their pipes, would wait forever.
    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()

def frames(data):
    at = 0
    while at < len(data):
        size_d, size_s = struct.unpack_from("<LL", data, at)
        at += 8
        dfile = data[at:at + size_d].decode("utf-8", "surrogateescape")
        yield dfile, data[at + size_d:at + size_d + size_s]
        at += size_d + size_s

if __name__ == "__main__":
    ends_with(os.getppid())
    items = list(frames(sys.stdin.buffer.read()))
    workers = int(sys.argv[1])
    out = sys.stdout.buffer
    out.write(b"R")  # ready: what follows is one frame per module, in order, as each is done
    out.flush()
    if workers > 1:  # the caller asks for a pool only for more than _POOLED_FROM modules
        with ProcessPoolExecutor(workers, initializer=ends_with, initargs=(os.getpid(),)) as pool:
            results = pool.map(compile_one, items, chunksize=32)
            for result in results:
                out.write(struct.pack("<L", len(result)) + result)
    else:
        for item in items:
            result = compile_one(item)
            out.write(struct.pack("<L", len(result)) + result)
            out.flush()  # a module that crashes the interpreter is the one after the last frame
    out.flush()
"""
_FRAME = struct.Struct("<LL")
_POOLED_FROM = 50  # fewer modules are compiled in the interpreter's one process
_CRASHED = "the interpreter crashed compiling it"


@dataclass(frozen=True)
class Compiled:
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]
    cached: int = 0  # modules served from the cache (compiled or known not to compile)
    fresh: int = 0  # modules the interpreter compiled on this run
    unpacked: Mapping[Path, Unpacked] = field(default_factory=dict)  # the memos' unpacked copies, by memo

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


def _look_up(
    group: Sequence[Entry], cache: BytecodeCache, layer: bool
) -> list[tuple[Entry, str, Outcome | None, bytes | None]]:
    """(entry, key, cached outcome, or its source if there is none) for entries of one archive."""
    found: list[tuple[Entry, str, Outcome | None, bytes | None]] = []
    with Archives() as archives:
        for entry in group:
            data = archives.read(entry)
            key = cache.key(data, runtime_path(entry.path, layer))
            outcome = cache.get(key)
            found.append((entry, key, outcome, data if outcome is None else None))
    return found


def compile_bytecode(
    entries: Sequence[Entry],
    python: Path,
    scratch: Path,
    *,
    layer: bool,
    workers: int,
    cache_dir: Path,
    wheel_sha256: Mapping[Path, str] | None = None,
) -> Compiled:
    """A .pyc entry for every .py entry `python` can compile, from `cache_dir` where it can.

    A wheel whose memo (`bytecode_memo.py`) covers its modules gives them all at once; the
    others' modules come from the per-module cache, the rest from the interpreter. Memos are
    keyed by each wheel's SHA-256: `wheel_sha256` gives those the lock check already computed,
    the others are hashed here.
    """
    known = wheel_sha256 or {}
    interpreter = interpreter_info(python, cache_dir)
    cache = BytecodeCache(cache_dir, interpreter)
    memos = WheelMemos(cache)
    sources = [e for e in entries if e.path.endswith(".py")]
    groups: dict[Path | None, list[Entry]] = {}
    for entry in sources:
        groups.setdefault(entry.archive, []).append(entry)
    folder = scratch / "bytecode"
    keys: dict[Path, str] = {}  # each wheel's memo key
    used: list[Memo] = []  # the memos that gave their wheel's modules
    made: list[Entry] = []
    skipped: dict[str, str] = {}  # source path -> the warning saying why it has no bytecode
    outcomes: dict[str, Outcome] = {}
    misses: list[tuple[Entry, str]] = []  # and their cache keys
    frames: list[bytes] = []  # what the compiler reads: (dfile, source) of each miss
    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashing and inflating let go of the GIL
        wheels = [archive for archive in groups if archive is not None]
        memo_args = (memos, layer, interpreter.cache_tag)
        for archive, key, memo in pool.map(lambda a: _memo(a, known.get(a), groups[a], *memo_args), wheels):
            keys[archive] = key
            if memo is not None:
                used.append(memo)
                made += _from_memo(memo, groups.pop(archive), skipped)
        for looked_up in pool.map(lambda group: _look_up(group, cache, layer), groups.values()):
            for entry, key, found, data in looked_up:
                if found is not None:
                    outcomes[entry.path] = found
                    continue
                assert data is not None
                dfile = runtime_path(entry.path, layer).encode("utf-8", "surrogateescape")
                frames.append(_FRAME.pack(len(dfile), len(data)) + dfile + data)
                misses.append((entry, key))
    if misses:
        out = _run_compiler(frames, python, folder, workers)
        del frames  # the sources, no longer needed: memory for the compiled modules
        compiled = _outcomes(out, workers)
        if len(compiled) != len(misses):
            raise BundleError(
                f"Compiling bytecode with {python} failed: {len(compiled)} of {len(misses)} modules came back."
            )
        for (entry, key), outcome in zip(misses, compiled):
            if not (outcome.error or "").startswith(_CRASHED):  # see _store_memo
                cache.put(key, outcome)
            outcomes[entry.path] = outcome
    for wheel, group in groups.items():  # the wheels without a memo: write theirs
        if wheel is not None:
            _store_memo(memos, keys[wheel], group, outcomes, interpreter.cache_tag)
    # One archive per distribution, as its wheel: the target dir is written one thread per archive.
    by_owner: dict[str, list[tuple[str, Deflated]]] = {}
    for group in groups.values():
        for entry in group:
            outcome = outcomes[entry.path]
            if outcome.pyc is None:
                skipped[entry.path] = f"Skipped bytecode for {entry.path} ({entry.owner}): {outcome.error}"
            else:
                by_owner.setdefault(entry.owner, []).append((pyc_path(entry.path, interpreter.cache_tag), outcome.pyc))
    made += [
        Entry(path=path, owner=owner, size=info.file_size, archive=archive, info=info)
        for owner, members in by_owner.items()
        for path, (archive, info) in write_archives(folder / "zip", members).items()
    ]
    warnings = tuple(skipped[path] for path in sorted(skipped))  # in the bundle's order, warm or cold
    unpacked = {memo.path: memo.unpacked for memo in used if memo.unpacked is not None}
    return Compiled(tuple(made), warnings, cached=len(sources) - len(misses), fresh=len(misses), unpacked=unpacked)


def _from_memo(memo: Memo, group: Sequence[Entry], skipped: dict[str, str]) -> list[Entry]:
    """The .pyc entries of a wheel's modules, where its memo holds them; the modules that did
    not compile go to `skipped`."""
    made = []
    for entry in group:
        info = memo.by_source.get(entry.path)
        if info is None:  # `load` took only a memo whose every module is compiled or skipped
            skipped[entry.path] = f"Skipped bytecode for {entry.path} ({entry.owner}): {memo.skipped[entry.path]}"
        else:
            made.append(Entry(info.filename, entry.owner, info.file_size, False, memo.path, info))
    return made


def _memo(
    archive: Path, sha256: str | None, group: Sequence[Entry], memos: WheelMemos, layer: bool, cache_tag: str
) -> tuple[Path, str, Memo | None]:
    """The wheel's memo key, and its memo if it holds exactly these modules' bytecode, each
    under its module's .pyc name (the name its index gives is the path that ships)."""
    sources = [e.path for e in group]
    key = memos.key(sha256 or file_digest(archive), layer, sources)
    memo = memos.load(key, sources)
    if memo is not None and any(info.orig_filename != pyc_path(module, cache_tag) for module, info in memo.by_source.items()):
        memo = None  # not these modules' .pyc files: they come from the per-module cache
    return archive, key, memo


def _store_memo(
    memos: WheelMemos, key: str, group: Sequence[Entry], outcomes: dict[str, Outcome], cache_tag: str
) -> None:
    pycs = [(e.path, pyc_path(e.path, cache_tag), pyc) for e in group if (pyc := outcomes[e.path].pyc) is not None]
    skipped = {e.path: outcomes[e.path].error or "" for e in group if outcomes[e.path].pyc is None}
    if any(why.startswith(_CRASHED) for why in skipped.values()):
        return  # a crash may not happen again: neither kept in the cache nor in a memo
    memos.store(key, [e.path for e in group], pycs, skipped)


def _run_compiler(items: list[bytes], python: Path, folder: Path, workers: int) -> list[bytes]:
    """Compile the framed sources with `python` (parallel inside it): one result frame each.

    A module that crashes the interpreter (CPython 3.9 can, on a huge expression) is skipped,
    saying so, and the modules after it are compiled one by one: the crash is after the last
    frame that came back. Not isolated mode (`-I`): it ignores PYTHONHASHSEED, and Python 3.9
    and 3.10 write frozensets of strings in hash order. Instead every PYTHON* variable is
    dropped, site is not imported (`-s -S`) and the script runs from a folder holding nothing else.
    """
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    script = run / "lambda_bundle_compiler.py"
    script.write_text(_COMPILER)
    results: list[bytes] = []
    while len(results) < len(items):
        rest = items[len(results) :]
        pooled = workers > 1 and len(rest) > _POOLED_FROM
        done, crash = _compile_run(rest, python, script, workers if pooled else 1)
        results += done
        if crash is not None and not pooled:  # the module after the last frame crashed it
            results.append(b"e" + f"{_CRASHED} ({crash})".encode())
        workers = 1 if crash is not None else workers  # after a crash, one by one: it says which
    return results


def _compile_run(items: list[bytes], python: Path, script: Path, workers: int) -> tuple[list[bytes], str | None]:
    """One run of the compiler: the frames that came back, and how it died if it did."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    try:
        result = subprocess.run(
            [str(python), "-s", "-S", str(script), str(max(1, workers))],
            input=b"".join(items), capture_output=True, env=env, cwd=script.parent, check=False,
        )
    except OSError as error:
        raise BundleError(f"Cannot run {python} to compile bytecode: {error.strerror}.") from None
    out = result.stdout
    if not out.startswith(b"R"):  # the compiler itself did not start
        cause = cause_line(result.stderr.decode("utf-8", "replace")) or f"exit code {result.returncode}"
        raise BundleError(f"Compiling bytecode with {python} failed: {cause}")
    frames, at = [], 1
    while at + 4 <= len(out):
        (size,) = struct.unpack_from("<L", out, at)
        if at + 4 + size > len(out):
            break
        frames.append(out[at + 4 : at + 4 + size])
        at += 4 + size
    if result.returncode == 0 and len(frames) == len(items):
        return frames, None
    how = f"signal {-result.returncode}" if result.returncode < 0 else f"exit code {result.returncode}"
    return frames, how


def _outcomes(raw: list[bytes], workers: int) -> list[Outcome]:
    """The compiler's result frames as outcomes, the .pyc deflated."""
    with ThreadPoolExecutor(max(1, workers)) as pool:  # zlib lets go of the GIL
        return list(pool.map(_outcome, raw))


def _outcome(raw: bytes) -> Outcome:
    if raw[0] == ord("c"):
        return Outcome(deflate(memoryview(raw)[1:]))
    return Outcome(None, raw[1:].decode("utf-8", "replace"))
