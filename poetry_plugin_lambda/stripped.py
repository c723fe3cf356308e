"""Shared objects of a bundle, stripped by `elf_strip` and cached in Poetry's cache.

Stripping itself is cheap (headers and slices); compressing the result for the ZIP is not. So
each run strips again, and the cache, keyed by (sha256 of the input, what was stripped, the
stripper's version), holds the result as a one-member deterministic ZIP (deflated like the
bundle's own members) that the bundle's ZIP copies as it is. A cached file is used only when it
inflates to exactly this run's result: nothing from the cache ships unchecked.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetry_plugin_lambda import elf_strip
from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.zipread import BrokenZip
from poetry_plugin_lambda.zipread import parsing_zip
from poetry_plugin_lambda.zipread import read_member
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
    """Strip every run (cheap: headers and slices), reuse only the cached compression, verified."""
    data = archives.read(entry)
    if elf_strip.machine(data) is None:
        return None
    out = elf_strip.strip(data, what)
    if out is None:
        return None
    digest = hashlib.sha256(out).digest()
    if cache is None:
        return Stripped(entry._replace(size=len(out), data=out, archive=None, info=None, file=None), digest)
    key = hashlib.sha256(data).hexdigest()
    archive = cache / key[:2] / f"{key}-{what}-v{elf_strip.STRIPPER_VERSION}.zip"
    info = _cached(archive, out, digest)
    if info is None:
        buffer = io.BytesIO()
        with DeterministicZipWriter(buffer, epoch=DOS_EPOCH_MIN) as writer:
            writer.add_bytes(digest.hex(), out)
        archive.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(archive, buffer.getvalue())
        info = _cached(archive, out, digest)
        if info is None:  # pragma: no cover - the file was just written
            return Stripped(entry._replace(size=len(out), data=out, archive=None, info=None, file=None), digest)
    return Stripped(entry._replace(size=len(out), archive=archive, info=info, data=None, file=None), digest)


def _cached(archive: Path, out: bytes, digest: bytes) -> zipfile.ZipInfo | None:
    """The cached member when it inflates to exactly `out`; None when missing, damaged or different.

    The cache only saves compressing: what ships is always what the stripper made this run.
    """
    try:
        with parsing_zip(), zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) != 1 or infos[0].filename != digest.hex() or infos[0].file_size != len(out):
                return None
            if read_member(zf, infos[0]) != out:
                return None
    except (OSError, BrokenZip):
        return None
    return infos[0]
