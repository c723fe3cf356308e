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

import contextlib
import hashlib
import io
import json
import marshal
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

_FORMAT = b"memo 5"  # in every key: a memo of another layout (or without its unpacked copy) is never read


def _is_row(row: object) -> bool:
    """A member as `store` lists it: its name, then eight numbers of its central directory entry
    (offset, sizes, CRCs, method: deflated, attributes, flags), none negative."""
    return (
        isinstance(row, tuple) and len(row) == 9 and isinstance(row[0], str)
        and all(type(number) is int and number >= 0 for number in row[1:])
        and row[5] == zipfile.ZIP_DEFLATED
    )


class Memo:
    """What a memo gives back: where each .pyc is, and the modules that did not compile."""

    def __init__(
        self, path: Path, members: dict[str, zipfile.ZipInfo], skipped: dict[str, str], unpacked: Unpacked | None = None
    ) -> None:
        self.path, self.members, self.skipped, self.unpacked = path, members, skipped, unpacked


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
            digest, listed, skipped, rows = marshal.loads(blob)
            if listed != sorted(sources) or not isinstance(skipped, dict):
                return None
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                return None
            members: dict[str, zipfile.ZipInfo] = {}
            raw_crcs: list[int] = []
            for row in rows:
                if not _is_row(row) or row[0] in members:
                    return None  # not what `store` writes
                name, offset, compressed, size, crc, method, attributes, flags, raw_crc = row
                info = zipfile.ZipInfo(name)
                info.header_offset, info.compress_size, info.file_size, info.CRC = offset, compressed, size, crc
                info.compress_type, info.external_attr, info.flag_bits = method, attributes, flags
                members[name] = info
                raw_crcs.append(raw_crc)
        except (OSError, ValueError, TypeError, EOFError):  # not what `store` writes: a miss
            return None
        unpacked = unpacked_copy(self._unpacked_path(key), list(members.values()), raw_crcs)
        return Memo(path, members, {str(k): str(v) for k, v in skipped.items()}, unpacked)

    def store(
        self, key: str, sources: Sequence[str], pycs: Sequence[tuple[str, Deflated]], skipped: dict[str, str]
    ) -> None:
        """Write the memo, its unpacked copy, then its index; a cache that cannot be written only
        costs speed."""
        out = io.BytesIO()
        in_order = sorted(pycs, key=lambda item: item[0])
        with DeterministicZipWriter(out, epoch=DOS_EPOCH_MIN) as writer:
            for name, pyc in in_order:
                writer.add_deflated(name, pyc.data, pyc.crc, pyc.size)
        data = out.getvalue()
        with zipfile.ZipFile(io.BytesIO(data)) as written:  # the members as a reader finds them
            infos = written.infolist()
        rows = [
            (
                info.filename, info.header_offset, info.compress_size, info.file_size, info.CRC,
                info.compress_type, info.external_attr, info.flag_bits, zlib.crc32(pyc.data),
            )
            for info, (_, pyc) in zip(infos, in_order)
        ]
        path, index_path = self._paths(key)
        unpacked = UnpackedWriter(self._unpacked_path(key), sum(pyc.size for _, pyc in in_order))
        for _, pyc in in_order:
            unpacked.write(zlib.decompress(pyc.data, -15))  # deflated here, by this run
        unpacked.commit()
        index = marshal.dumps((hashlib.sha256(data).hexdigest(), sorted(sources), dict(skipped), rows))
        with contextlib.suppress(OSError):
            write_atomic(path, data)
            write_checked(index_path, index)
