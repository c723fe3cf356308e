"""Shared objects of a bundle, stripped by `elf_strip` and cached in Poetry's cache.

The cache is keyed by (sha256 of the input, what was stripped, the stripper's version), so a
warm `--slim` reads each input once and strips nothing. A stripped file is cached as a one-member
deterministic ZIP (deflated like the bundle's own members): the bundle's ZIP then copies its
compressed bytes as they are, and the target dir inflates them with a CRC check. A file the
stripper leaves alone is remembered by an empty `.same` marker.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING

from poetry_plugin_lambda import elf_strip
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.assemble import Entry

_SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")


@dataclass(frozen=True)
class Stripped:
    """A shared object's stripped form: the new entry and the sha256 of its bytes (for RECORD)."""

    entry: Entry
    sha256: bytes


def is_shared_object(path: str) -> bool:
    return _SHARED_OBJECT.search(path.rsplit("/", 1)[-1]) is not None


def strip_all(entries: Sequence[Entry], cache: Path | None, workers: int = 1) -> dict[str, Stripped]:
    """The stripped form of each entry the stripper changes, by bundle path."""
    what = elf_strip.DEBUG_AND_SYMBOLS
    chunks = [list(entries[i::workers]) for i in range(max(1, workers))]

    def run(chunk: list[Entry]) -> list[tuple[str, Stripped]]:
        done = []
        with Archives() as archives:
            for entry in chunk:
                result = _strip_one(entry, archives, cache, what)
                if result is not None:
                    done.append((entry.path, result))
        return done

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        results = [pair for part in pool.map(run, chunks) for pair in part]
    return dict(sorted(results))


def _strip_one(entry: Entry, archives: Archives, cache: Path | None, what: str) -> Stripped | None:
    data = archives.read(entry)
    if elf_strip.machine(data) is None:
        return None
    key = hashlib.sha256(data).hexdigest()
    name = f"{key}-{what}-v{elf_strip.STRIPPER_VERSION}"
    if cache is not None:
        found, cached = _cached(entry, cache / key[:2], name)
        if found:
            return cached
    out = elf_strip.strip(data, what)
    if out is None:
        if cache is not None:
            (cache / key[:2]).mkdir(parents=True, exist_ok=True)
            write_atomic(cache / key[:2] / f"{name}.same", b"")
        return None
    digest = hashlib.sha256(out).digest()
    if cache is None:
        return Stripped(replace(entry, size=len(out), data=out, archive=None, info=None, file=None), digest)
    archive = cache / key[:2] / f"{name}.zip"
    buffer = io.BytesIO()
    with DeterministicZipWriter(buffer, epoch=DOS_EPOCH_MIN) as writer:
        writer.add_bytes(digest.hex(), out)
    archive.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(archive, buffer.getvalue())
    found, cached = _cached(entry, cache / key[:2], name)
    assert found and cached is not None
    return cached


def _cached(entry: Entry, folder: Path, name: str) -> tuple[bool, Stripped | None]:
    """(whether the cache knows the file, its stripped form or None for "left as it is")."""
    if (folder / f"{name}.same").exists():
        return True, None
    archive = folder / f"{name}.zip"
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile):
        return False, None
    if len(infos) != 1 or not re.fullmatch(r"[0-9a-f]{64}", infos[0].filename):
        return False, None
    info = infos[0]
    stripped = replace(entry, size=info.file_size, archive=archive, info=info, data=None, file=None)
    return True, Stripped(stripped, bytes.fromhex(info.filename))
