"""`--slim`: a documented set of safe reductions of an assembled bundle, and what they saved.

Applied to third-party distributions only (never the project's own files or `include`d ones):
- `tests`/`test`/`docs`/`doc`/`examples` folders inside a package go, unless a module outside
  such folders imports from one (`slim_imports`); `numpy/testing` and the like stay, they are
  not named so;
- `*.pyi` stubs go (`py.typed` stays);
- shared objects lose their debug sections and static symbol table (`elf_strip`, cached by
  `stripped`);
- `*.dist-info` stays whole, and each distribution's RECORD is rewritten to list exactly what
  ships, with the new hashes and sizes of stripped files, so `importlib.metadata` and
  `pip`-style checks keep working.
Runs after assembly and before `--compile`, so removed modules are never compiled.
"""

from __future__ import annotations

import base64
import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from poetry_plugin_lambda.slim_imports import imported_names
from poetry_plugin_lambda.slim_imports import kept_folders
from poetry_plugin_lambda.slim_imports import slim_folder
from poetry_plugin_lambda.stripped import is_shared_object
from poetry_plugin_lambda.stripped import strip_all

if TYPE_CHECKING:
    from collections.abc import Collection
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.stripped import Stripped


@dataclass(frozen=True)
class SlimReport:
    """What `--slim` removed: bytes in all, and per distribution (most first)."""

    removed_bytes: int
    files_removed: int
    shared_objects_stripped: int
    packages: tuple[tuple[str, int], ...]  # (owner "name version", bytes removed)

    def to_json(self) -> dict[str, Any]:
        return {
            "removed_bytes": self.removed_bytes,
            "files_removed": self.files_removed,
            "shared_objects_stripped": self.shared_objects_stripped,
            "packages": [
                {"name": owner.rsplit(" ", 1)[0], "version": owner.rsplit(" ", 1)[-1], "removed_bytes": size}
                for owner, size in self.packages
            ],
        }


@dataclass(frozen=True)
class Slimmed:
    entries: list[Entry]
    report: SlimReport


def slim(
    entries: Sequence[Entry],
    prefix: str,
    protected_owners: Collection[str],
    cache: Path | None,
    workers: int = 1,
) -> Slimmed:
    """The entries `--slim` keeps (stripped where it strips), RECORDs rewritten, and the report.

    `protected_owners` are the project's own (its wheel and `include`): never touched.
    `cache` is where stripped files and import scans are kept (None: nothing cached).
    """
    mine = [e for e in entries if e.owner not in protected_owners and e.path.startswith(prefix)]
    folders = {e.path: slim_folder(e.path[len(prefix):]) for e in mine}
    names = imported_names(entries, prefix, cache / "imports" if cache is not None else None)
    removable = set(folders.values()) - {None} - kept_folders(
        (f for f in folders.values() if f is not None), names
    )
    removed = {
        e.path for e in mine
        if (folders[e.path] in removable or e.path.endswith(".pyi"))
        and not e.path[len(prefix):].split("/", 1)[0].endswith(".dist-info")
    }
    shared = [e for e in mine if e.path not in removed and is_shared_object(e.path)]
    stripped = strip_all(shared, cache / "stripped" if cache is not None else None, workers)
    kept = _rewrite_records(
        [stripped[e.path].entry if e.path in stripped else e for e in entries if e.path not in removed],
        prefix, protected_owners, removed, stripped,
    )
    return Slimmed(kept, _report(entries, kept, len(removed), len(stripped)))


def _rewrite_records(
    entries: list[Entry],
    prefix: str,
    protected_owners: Collection[str],
    removed: set[str],
    stripped: dict[str, Stripped],
) -> list[Entry]:
    """Each changed distribution's RECORD, listing exactly what ships."""
    out = []
    for entry in entries:
        rel = entry.path[len(prefix):]
        parts = rel.split("/")
        is_record = (
            entry.data is not None and len(parts) == 2 and parts[0].endswith(".dist-info")
            and parts[1] == "RECORD" and entry.owner not in protected_owners
        )
        if is_record:
            assert entry.data is not None
            data = _new_record(entry.data, prefix, removed, stripped)
            entry = entry._replace(data=data, size=len(data))
        out.append(entry)
    return out


def _new_record(record: bytes, prefix: str, removed: set[str], stripped: dict[str, Stripped]) -> bytes:
    rows = csv.reader(io.StringIO(record.decode("utf-8")))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        if not row:
            continue
        path = prefix + row[0]
        if path in removed:
            continue
        done = stripped.get(path)
        if done is not None:
            row = [row[0], record_hash_of(done.sha256), str(done.entry.size)]
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8")


def record_hash_of(digest: bytes) -> str:
    """RECORD's `sha256=` form of a digest already computed."""
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _report(before: Sequence[Entry], after: Sequence[Entry], files: int, shared: int) -> SlimReport:
    sizes: dict[str, int] = defaultdict(int)
    for entry in before:
        sizes[entry.owner] += entry.size
    for entry in after:
        sizes[entry.owner] -= entry.size
    packages = tuple(sorted(((o, s) for o, s in sizes.items() if s), key=lambda item: (-item[1], item[0])))
    return SlimReport(sum(s for _, s in packages), files, shared, packages)

