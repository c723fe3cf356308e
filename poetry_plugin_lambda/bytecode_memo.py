"""A wheel's bytecode kept whole, so a warm `--compile` finds it with one read per wheel.

The per-module cache (`bytecode_cache.py`) is keyed by each source's content: it is what makes
a module compiled once per content, whatever wheel or version it comes in. But finding a module
there means inflating and hashing its source and reading one cache file, for every module of
every run. This memo sits on top of it: one deterministic ZIP per (wheel file, selection of its
modules, interpreter, optimization, runtime place), keyed by the wheel's SHA-256 (so by the
bytes of all its members) and the modules' paths, holding the deflated .pyc of each module and
the modules that did not compile (with why).

A memo is used only when its index (a checked file: its own SHA-256 first) is whole, the memo's
SHA-256 is the one the index names, and it covers exactly the modules the bundle needs;
otherwise the modules come from the per-module cache and the memo is written again. The index
also lists the memo's members as its central directory does, so a run never parses the memo's
ZIP: eight thousand members cost a run 0.06 s to parse. Its members become the bundle's entries
where they are, as a wheel's do: the ZIP copies their compressed bytes (their local headers
checked against the index, as a wheel's against its directory), the target dir copies them from
the unpacked copy or inflates them, their CRC checked, so bytes that changed after the check
fail the run instead of shipping (neither output is replaced). Memos are written whole and
renamed into place, the index last, and two runs write a key's memo with the same bytes, so one
run never reads another's half. Beside each memo is its unpacked copy (`unpacked.py`): the .pyc
files uncompressed.

Layout, under the interpreter's folder of the bytecode cache::

    wheels/<k[:2]>/<k>.zip       the memo (k: SHA-256 of the key)
    wheels/<k[:2]>/<k>.index     the memo's SHA-256, sources, modules skipped and members (checked)
    wheels/<k[:2]>/<k>.unpacked  its members' bytes uncompressed, in their order in the memo
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import io
import json
import marshal
import sys
import zipfile
import zlib
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import read_checked
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.atomic import write_checked
from poetry_plugin_lambda.unpacked import UnpackedWriter
from poetry_plugin_lambda.unpacked import unpacked_copy
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.bytecode_cache import BytecodeCache
    from poetry_plugin_lambda.pyc_archive import Deflated
    from poetry_plugin_lambda.unpacked import Unpacked

_FORMAT = b"memo 6"  # in every key: a memo of another layout (or without its unpacked copy) is never read
# Per member, in the index's packed numbers: offset, compressed size, size, CRC-32, attributes,
# flags, and the CRC-32 of its compressed bytes (its method is always DEFLATE: `store` writes it).
_NUMBERS = 7


class Memo:
    """What a memo gives back: each compiled module's .pyc member (by the module's bundle path),
    and the modules that did not compile, with why."""

    def __init__(
        self, path: Path, by_source: dict[str, zipfile.ZipInfo], skipped: dict[str, str], unpacked: Unpacked | None = None
    ) -> None:
        self.path, self.by_source, self.skipped, self.unpacked = path, by_source, skipped, unpacked


def _members(names: object, modules: object, packed: object, listed: list[str], skipped: dict[str, str]) -> list[tuple[str, str, tuple[int, ...]]] | None:
    """The index's members as `store` lists them (name, module, numbers), or None if they are not
    that: every module of `listed` either compiled (one member each) or skipped, never both, and
    no number negative. Checked with whole-list operations: a memo has thousands of members."""
    if type(names) is not list or type(modules) is not list or type(packed) is not bytes:
        return None
    numbers = array.array("q")
    if len(packed) != numbers.itemsize * _NUMBERS * len(names) or len(modules) != len(names):
        return None
    numbers.frombytes(packed)
    if sys.byteorder == "big":  # packed little-endian, whatever machine wrote or reads the cache
        numbers.byteswap()
    if (numbers and min(numbers) < 0) or not all(type(name) is str for name in names) or len(set(names)) != len(names):
        return None
    compiled = set(modules)
    if len(compiled) != len(modules) or not compiled.isdisjoint(skipped) or compiled | skipped.keys() != set(listed):
        return None
    return list(zip(names, modules, zip(*(numbers[k::_NUMBERS] for k in range(_NUMBERS)))))


class WheelMemos:
    """The memos of one interpreter's bytecode cache."""

    def __init__(self, cache: BytecodeCache) -> None:
        self.folder = cache.folder / "wheels"
        self._salt = cache.salt

    def key(self, wheel_sha256: str, layer: bool, sources: Sequence[str]) -> str:
        digest = hashlib.sha256(self._salt)
        digest.update(_FORMAT)
        digest.update(b"\0layer\0" if layer else b"\0function\0")
        digest.update(wheel_sha256.encode("ascii"))
        digest.update(json.dumps(sorted(sources)).encode())
        return digest.hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.folder / key[:2]
        return folder / f"{key}.zip", folder / f"{key}.index"

    def _unpacked_path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.unpacked"

    def load(self, key: str, sources: Sequence[str]) -> Memo | None:
        """The memo for exactly `sources` (bundle paths of .py files); None if missing, damaged
        or made for another selection of modules."""
        path, index_path = self._paths(key)
        blob = read_checked(index_path)
        if blob is None:
            return None
        try:
            digest, listed, skipped, names, modules, packed = marshal.loads(blob)
            if listed != sorted(sources) or type(skipped) is not dict:
                return None
            members = _members(names, modules, packed, listed, skipped)
            if members is None:
                return None  # not what `store` writes
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                return None
        except (OSError, ValueError, TypeError, EOFError):  # not what `store` writes: a miss
            return None
        by_source: dict[str, zipfile.ZipInfo] = {}
        raw_crcs: list[int] = []
        for name, module, (offset, compressed, size, crc, attributes, flags, raw_crc) in members:
            info = zipfile.ZipInfo(name)
            info.header_offset, info.compress_size, info.file_size, info.CRC = offset, compressed, size, crc
            info.compress_type, info.external_attr, info.flag_bits = zipfile.ZIP_DEFLATED, attributes, flags
            by_source[module] = info
            raw_crcs.append(raw_crc)
        unpacked = unpacked_copy(self._unpacked_path(key), list(by_source.values()), raw_crcs)
        return Memo(path, by_source, {str(k): str(v) for k, v in skipped.items()}, unpacked)

    def store(
        self, key: str, sources: Sequence[str], pycs: Sequence[tuple[str, str, Deflated]], skipped: dict[str, str]
    ) -> None:
        """Write the memo (`pycs`: each compiled module, its .pyc's name and bytes), its unpacked
        copy, then its index; a cache that cannot be written only costs speed."""
        out = io.BytesIO()
        in_order = sorted(pycs, key=lambda item: item[1])
        with DeterministicZipWriter(out, epoch=DOS_EPOCH_MIN) as writer:
            for _, name, pyc in in_order:
                writer.add_deflated(name, pyc.data, pyc.crc, pyc.size)
        data = out.getvalue()
        with zipfile.ZipFile(io.BytesIO(data)) as written:  # the members as a reader finds them
            infos = written.infolist()
        numbers = array.array("q")
        for info, (_, _, pyc) in zip(infos, in_order):
            if info.compress_type != zipfile.ZIP_DEFLATED:
                return  # not what `load` takes: no memo
            numbers.extend((
                info.header_offset, info.compress_size, info.file_size, info.CRC, info.external_attr,
                info.flag_bits, zlib.crc32(pyc.data),
            ))  # fmt: skip
        path, index_path = self._paths(key)
        unpacked = UnpackedWriter(self._unpacked_path(key), sum(pyc.size for _, _, pyc in in_order))
        for _, _, pyc in in_order:
            unpacked.write(zlib.decompress(pyc.data, -15))  # deflated here, by this run
        unpacked.commit()
        if sys.byteorder == "big":
            numbers.byteswap()
        names, modules = [info.filename for info in infos], [module for module, _, _ in in_order]
        index = marshal.dumps((hashlib.sha256(data).hexdigest(), sorted(sources), dict(skipped), names, modules, numbers.tobytes()))
        with contextlib.suppress(OSError):
            write_atomic(path, data)
            write_checked(index_path, index)
