"""A wheel's bytecode kept whole, so a warm `--compile` finds it with one read per wheel.

The per-module cache (`bytecode_cache.py`) is keyed by each source's content: it is what makes
a module compiled once per content, whatever wheel or version it comes in. But finding a module
there means inflating and hashing its source and reading one cache file, for every module of
every run. This memo sits on top of it: one deterministic ZIP per (wheel file, selection of its
modules, interpreter, optimization, runtime place), keyed by the wheel's SHA-256 (so by the
bytes of all its members) and the modules' paths, holding the deflated .pyc of each module and
the modules that did not compile (with why).

A memo is used only when the SHA-256 kept beside it matches its bytes and it covers exactly the
modules the bundle needs; otherwise the modules come from the per-module cache and the memo is
written again. Its members become the bundle's entries where they are, as a wheel's do: the ZIP
copies their compressed bytes, the target dir inflates them and checks their CRC, so bytes that
changed after the check fail the run instead of shipping (neither output is replaced). Memos are
written whole and renamed into place, and two runs write a key's memo with the same bytes, so
one run never reads another's half. Beside each memo is its unpacked copy (`unpacked.py`): the
.pyc files uncompressed, which the target dir copies (each held to its member's CRC) instead of
inflating them, as it does a wheel's.

Layout, under the interpreter's folder of the bytecode cache::

    wheels/<k[:2]>/<k>.zip       the memo (k: SHA-256 of the key)
    wheels/<k[:2]>/<k>.sha256    the memo's SHA-256, written after it
    wheels/<k[:2]>/<k>.unpacked  its members' bytes uncompressed, in their order in the memo
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
import zlib
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.unpacked import UnpackedWriter
from poetry_plugin_lambda.unpacked import unpacked_copy
from poetry_plugin_lambda.zipread import BrokenZip
from poetry_plugin_lambda.zipread import parsing_zip
from poetry_plugin_lambda.zipread import read_member
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.bytecode_cache import BytecodeCache
    from poetry_plugin_lambda.pyc_archive import Deflated
    from poetry_plugin_lambda.unpacked import Unpacked

_INDEX = ".lambda-bundle-memo.json"  # the member listing the sources and the modules skipped
_FORMAT = b"memo 4"  # in every key: a memo of another layout (or without its unpacked copy) is never read


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
        return folder / f"{key}.zip", folder / f"{key}.sha256"

    def _unpacked_path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.unpacked"

    def load(self, key: str, sources: Sequence[str]) -> Memo | None:
        """The memo for exactly `sources` (bundle paths of .py files); None if missing, damaged
        or made for another selection of modules."""
        path, check = self._paths(key)
        try:
            data = path.read_bytes()
            if check.read_text(encoding="ascii").strip() != hashlib.sha256(data).hexdigest():
                return None
            with parsing_zip(), zipfile.ZipFile(io.BytesIO(data)) as zf:
                index = json.loads(read_member(zf, _INDEX))
                members = {info.filename: info for info in zf.infolist() if info.filename != _INDEX}
        except (OSError, ValueError, KeyError, BrokenZip):  # a damaged memo (its index, its check) is a miss
            return None
        if not isinstance(index, dict) or index.get("sources") != sorted(sources):
            return None
        skipped = index.get("skipped")
        if not isinstance(skipped, dict):
            return None
        in_order = sorted(members.values(), key=lambda info: info.header_offset)
        raw_crcs = index.get("raw_crcs")
        if not isinstance(raw_crcs, list) or not all(isinstance(crc, int) for crc in raw_crcs):
            return None
        unpacked = unpacked_copy(self._unpacked_path(key), in_order, raw_crcs)
        return Memo(path, members, {str(k): str(v) for k, v in skipped.items()}, unpacked)

    def store(
        self, key: str, sources: Sequence[str], pycs: Sequence[tuple[str, Deflated]], skipped: dict[str, str]
    ) -> None:
        """Write the memo; a cache that cannot be written only costs speed."""
        out = io.BytesIO()
        in_order = sorted(pycs, key=lambda item: item[0])
        raw_crcs = [zlib.crc32(pyc.data) for _, pyc in in_order]
        index = json.dumps({"sources": sorted(sources), "skipped": skipped, "raw_crcs": raw_crcs}, sort_keys=True).encode()
        with DeterministicZipWriter(out, epoch=DOS_EPOCH_MIN) as writer:
            for name, pyc in in_order:
                writer.add_deflated(name, pyc.data, pyc.crc, pyc.size)
            writer.add_bytes(_INDEX, index)
        data = out.getvalue()
        path, check = self._paths(key)
        unpacked = UnpackedWriter(self._unpacked_path(key), sum(pyc.size for _, pyc in in_order))
        for _, pyc in in_order:
            unpacked.write(zlib.decompress(pyc.data, -15))  # deflated here, by this run
        unpacked.commit()
        with contextlib.suppress(OSError):
            write_atomic(path, data)
            write_atomic(check, hashlib.sha256(data).hexdigest().encode("ascii"))
