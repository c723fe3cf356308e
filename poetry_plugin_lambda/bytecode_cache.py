"""The `--compile` cache: compiled bytecode kept in Poetry's cache dir, reused across runs.

A module's bytecode depends only on its source bytes, the compiling interpreter (its magic number
and exact version), the optimization level and the path the code object records (`dfile`, the
runtime's /var/task/... or /opt/python/...). An entry is keyed by all four and holds the `.pyc`
as a ZIP stores it (raw DEFLATE, CRC-32, size: see `pyc_archive.py`), or the compiler's one-line
error for a module the interpreter cannot compile, behind a SHA-256 of those bytes: an entry that fails the check is treated as missing and compiled again, never
shipped. Writes go to a temporary file in the entry's folder and are renamed into place, so a
reader sees a whole entry or none; a cache that cannot be written only costs speed.

Layout, under `<cache-dir>/lambda-bundle/bytecode/`::

    interpreters/<hash of its path>.json     magic, cache tag and version of one interpreter
    <cache tag>-<magic>/<k[:2]>/<k>          one module (k: SHA-256 of the key)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from poetry_plugin_lambda.atomic import read_checked
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.atomic import write_checked
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.pyc_archive import Deflated

_FORMAT = b"LBPYC1"
# The compiler's output, in every key: bytecode of another compiler (2: every object of the code
# marked for back-references, `bytecode._COMPILER`) is never mixed with this one's.
COMPILER = 2
_COMPILED = b"c"
_FAILED = b"e"
_HEADER = len(_FORMAT) + 1 + 32  # format, kind, SHA-256 of the payload
_SIZES = struct.Struct("<LL")  # CRC-32 and size of the .pyc, before its DEFLATE bytes
_PROBE = (
    "import importlib.util, json, sys; print(json.dumps([importlib.util.MAGIC_NUMBER.hex(),"
    " sys.implementation.cache_tag, sys.version.split()[0], sys.executable]))"
)


@dataclass(frozen=True)
class Interpreter:
    """What bytecode depends on in the compiling interpreter."""

    path: Path
    magic: bytes  # importlib.util.MAGIC_NUMBER: the first 4 bytes of every .pyc it writes
    cache_tag: str  # "cpython-312": the .pyc's name in __pycache__
    version: str  # "3.12.1": patch releases keep the magic number but may compile differently


@dataclass(frozen=True)
class Outcome:
    """What compiling one module gave: its .pyc (deflated), or the compiler's error."""

    pyc: Deflated | None
    error: str | None = None


def interpreter_info(python: Path, cache_root: Path) -> Interpreter:
    """The magic number, tag and version of `python`, probed once per binary (path + stat).

    Only an interpreter binary (or a link to one) is remembered: a launcher script such as a
    pyenv shim may run another Python tomorrow without changing itself, so it is asked each run.
    """
    try:
        stamp = _stamp(python)
    except OSError as error:
        raise BundleError(f"Cannot run {python} to compile bytecode: {error.strerror}.") from None
    record = _record(python, cache_root)
    known = _remembered(python, record, stamp)
    if known is not None:
        return known
    try:
        result = subprocess.run(
            [str(python), "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise BundleError(f"Cannot run {python} to compile bytecode: {error}. Pass another --compile-with.") from None
    try:
        magic, cache_tag, version, executable = json.loads(result.stdout)
        found = Interpreter(python, bytes.fromhex(magic), str(cache_tag), str(version))
    except (ValueError, TypeError):  # not JSON, not four values, not hex: not the probe's answer
        raise BundleError(
            f"Cannot compile bytecode with {python}: it did not report its bytecode version"
            f" ({result.stderr.strip()[-300:] or 'no output'}). Pass another --compile-with."
        ) from None
    if os.path.realpath(executable or "") == os.path.realpath(python):
        info = {"stamp": stamp, "magic": magic, "cache_tag": cache_tag, "version": version}
        with contextlib.suppress(OSError):  # not remembered: asked again next time
            write_checked(record, json.dumps(info).encode())
    return found


def remembered_version(python: Path, cache_root: Path) -> str | None:
    """'3.12' if an earlier run probed this very binary (`interpreter_info`), else None: finding
    the interpreter for `--compile` then starts no Python to ask it (about 15 ms a run).

    Only interpreters already known to be CPython are probed and remembered there.
    """
    try:
        known = _remembered(python, _record(python, cache_root), _stamp(python))
    except OSError:
        return None
    if known is None or not known.cache_tag.startswith("cpython-") or not os.access(python, os.X_OK):
        return None  # a binary no longer executable is asked (and refused) as before
    return ".".join(known.version.split(".")[:2])


def _stamp(python: Path) -> list[object]:
    """What changes when another binary is at `python`: its path, device, inode, size, mtime."""
    st = python.stat()
    return [str(python), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _record(python: Path, cache_root: Path) -> Path:
    return cache_root / "interpreters" / (hashlib.sha256(str(python).encode()).hexdigest()[:32] + ".checked")


def _remembered(python: Path, record: Path, stamp: list[object]) -> Interpreter | None:
    """The probe's answer kept in `record`, if it was for this binary (`stamp`); damaged or
    missing: None, and the binary is probed again."""
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError, RecursionError):  # not a record
        known = json.loads(read_checked(record) or b"null")
        if known["stamp"] == stamp:
            return Interpreter(python, bytes.fromhex(known["magic"]), str(known["cache_tag"]), str(known["version"]))
    return None


class BytecodeCache:
    """Compiled modules of one interpreter at one optimization level, by source and `dfile`."""

    def __init__(self, root: Path, interpreter: Interpreter, optimize: int = 0) -> None:
        self.folder = root / f"{interpreter.cache_tag}-{interpreter.magic.hex()}"
        self.interpreter = interpreter
        self.salt = json.dumps([interpreter.magic.hex(), interpreter.version, optimize, COMPILER]).encode()

    def key(self, source: bytes, dfile: str) -> str:
        digest = hashlib.sha256(self.salt)
        digest.update(b"\0" + dfile.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(hashlib.sha256(source).digest())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def get(self, key: str) -> Outcome | None:
        """The cached outcome, or None if missing or damaged (then it must be compiled again)."""
        try:
            blob = self._path(key).read_bytes()
        except OSError:
            return None
        payload = blob[_HEADER:]
        if blob[: len(_FORMAT)] != _FORMAT or blob[len(_FORMAT) + 1 : _HEADER] != hashlib.sha256(payload).digest():
            return None
        kind = blob[len(_FORMAT) : len(_FORMAT) + 1]
        if kind == _COMPILED and len(payload) > _SIZES.size:
            crc, size = _SIZES.unpack_from(payload)
            return Outcome(Deflated(payload[_SIZES.size :], crc, size))
        if kind == _FAILED:
            return Outcome(None, payload.decode("utf-8", "replace"))
        return None

    def put(self, key: str, outcome: Outcome) -> None:
        if outcome.pyc is not None:
            pyc = outcome.pyc
            kind, payload = _COMPILED, _SIZES.pack(pyc.crc, pyc.size) + pyc.data
        else:
            kind, payload = _FAILED, (outcome.error or "").encode()
        path = self._path(key)
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
            write_atomic(path, _FORMAT + kind + hashlib.sha256(payload).digest() + payload)
