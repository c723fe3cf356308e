"""Write the bundle: the target dir and the deterministic ZIP, both atomically.

Both outputs are built beside their final place under a temporary name and renamed into place
only when complete, so a failure or a kill never leaves a partial ZIP or folder where a deploy
step would pick it up. The target dir is only ever replaced when it carries our marker.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from collections.abc import Mapping
from typing import Any
from typing import BinaryIO

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.unpacked import fingerprint
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN
from poetry_plugin_lambda.zipwriter import DeterministicZipWriter
from poetry_plugin_lambda.zipwriter import ZipWriteError

if TYPE_CHECKING:
    import zipfile
    from collections.abc import Iterator
    from collections.abc import Sequence

    from poetry_plugin_lambda.assemble import Entry

try:  # advisory locks tell a dead run's temporary files from a live one's
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MARKER = ".lambda-bundle-target"
MARKER_TEXT = "This folder is written by `poetry lambda-bundle`; it replaces it on every run.\n"
_CHUNK = 1 << 20
_WRITERS = 4


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: bytes
    size: int


def source_epoch(environ: Mapping[str, str]) -> int:
    """Every entry's timestamp: SOURCE_DATE_EPOCH when set, else 1980-01-01 (ZIP's earliest)."""
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return DOS_EPOCH_MIN
    try:
        return max(int(value), DOS_EPOCH_MIN)
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH must be an integer, got {value!r}.") from None


# -- safety checks on the user's paths -----------------------------------------------------------


def check_outputs(output: Path, target_dir: Path, project_root: Path) -> None:
    """Refuse outputs that could destroy the user's files, before any work is done."""
    home = Path.home().resolve()
    protected = {Path("/"), home, project_root, Path.cwd().resolve()}
    if target_dir in protected or target_dir in project_root.parents:
        raise OutputError(
            f"Refusing to use {target_dir} as the target dir: it is the project, its parent,"
            " your home or the current folder. Choose a folder of its own, such as build/lambda."
        )
    if target_dir.exists():
        if not target_dir.is_dir():
            raise OutputError(f"The target dir {target_dir} exists and is not a folder.")
        if not (target_dir / MARKER).is_file() and any(target_dir.iterdir()):
            raise OutputError(
                f"Refusing to replace {target_dir}: it is not empty and was not created by"
                " poetry lambda-bundle. Remove it yourself or choose another --target-dir."
            )
    if output == target_dir or target_dir in output.parents:
        raise OutputError(f"The output {output} must not be inside the target dir {target_dir}.")
    if output.exists():
        if output.is_dir():
            raise OutputError(f"The output {output} is a folder; give a .zip file path.")
        with output.open("rb") as f:
            if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                raise OutputError(f"Refusing to overwrite {output}: it is not a ZIP file.")


# -- temporary files that survive a kill are cleaned by the next run ------------------------------


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


@contextlib.contextmanager
def _held(path: Path) -> Iterator[int]:
    """Hold an exclusive advisory lock on `path` while we own it (released on exit or death)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _remove_stale(final: Path) -> None:
    """Delete temporaries of `final` left by killed runs (their lock is free)."""
    if fcntl is None or not final.parent.is_dir():
        return
    for stray in final.parent.glob(_temp_prefix(final) + "*"):
        try:
            fd = os.open(stray, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live run owns it
        finally:
            os.close(fd)
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
        else:
            stray.unlink(missing_ok=True)


# -- reading entry bytes ---------------------------------------------------------------------------


class _Sources:
    """Open each wheel once, however many of its members are written."""

    def __init__(self) -> None:
        import zipfile

        self._zipfile = zipfile
        self._open: dict[Path, zipfile.ZipFile] = {}

    def get(self, archive: Path) -> zipfile.ZipFile:
        zf = self._open.get(archive)
        if zf is None:
            zf = self._open[archive] = self._zipfile.ZipFile(archive)
        return zf

    def stream(self, entry: Entry) -> BinaryIO:
        if entry.file is not None:
            return entry.file.open("rb")
        assert entry.archive is not None and entry.info is not None
        return self.get(entry.archive).open(entry.info)  # type: ignore[return-value]

    def close(self) -> None:
        for zf in self._open.values():
            zf.close()
        self._open.clear()


def _write_file(root: Path, entry: Entry, sources: _Sources) -> None:
    """Write one entry; its folder must exist (see `_make_parents`)."""
    _write_to(root / entry.path, entry, sources)


def _write_to(dest: Path, entry: Entry, sources: _Sources) -> None:
    with dest.open("wb") as out:
        if entry.data is not None:
            out.write(entry.data)
        else:
            with sources.stream(entry) as src:
                shutil.copyfileobj(src, out, _CHUNK)
    dest.chmod(0o755 if entry.executable else 0o644)


def _make_parents(root: Path, entries: Sequence[Entry]) -> None:
    """Create every folder the entries need, parents first, one system call each."""
    folders: set[PurePosixPath] = set()
    for entry in entries:
        folders.update(PurePosixPath(entry.path).parents)
    base = str(root)
    for folder in sorted(folders, key=lambda f: (len(f.parts), f.parts)):
        if folder.parts:
            try:
                os.mkdir(os.path.join(base, *folder.parts))
            except FileExistsError:
                pass


def materialize(entries: Sequence[Entry], root: Path) -> None:
    """Write `entries` as files under `root` (streamed, never held in memory)."""
    _make_parents(root, entries)
    sources = _Sources()
    try:
        for entry in entries:
            _write_file(root, entry, sources)
    finally:
        sources.close()


def entry_key(entry: Entry) -> str:
    """What identifies an entry's bytes, cheaply: a wheel member's name, CRC and size, or a hash."""
    if entry.info is not None:
        return f"zip:{entry.info.filename}:{entry.info.CRC:08x}:{entry.info.file_size}"
    if entry.data is not None:
        return "sha256:" + hashlib.sha256(entry.data).hexdigest()
    assert entry.file is not None
    digest = hashlib.sha256()
    with entry.file.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _target_fingerprint(path: Path) -> list[int]:
    """What changes whenever anyone touches a file: size, mode, mtime, ctime and inode."""
    st = path.stat()
    return [st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def manifest_path(target_dir: Path) -> Path:
    """Beside the target dir, not in it: tools that zip the target dir must not ship it."""
    return target_dir.parent / f".{target_dir.name}.manifest.json"


def _read_manifest(target_dir: Path) -> dict[str, list[Any]]:
    """The previous run's {path: [key, executable, *fingerprint]}, if the target dir is ours."""
    if not (target_dir / MARKER).is_file():
        return {}
    try:
        data = json.loads(manifest_path(target_dir).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


# archive -> (its unpacked folder, {member name: fingerprint}) to hard-link wheel members from
Unpacked = Mapping[Path, "tuple[Path, dict[str, list[int]]]"]


def _link_unpacked(unpacked: Unpacked, dest: Path, entry: Entry) -> bool:
    """Hard-link a wheel member from its unpacked copy at `dest`, if that copy is untouched."""
    if entry.archive is None or entry.info is None or entry.archive not in unpacked:
        return False
    folder, fingerprints = unpacked[entry.archive]
    source = folder / entry.info.filename
    try:
        if fingerprint(source) != fingerprints.get(entry.info.filename):
            return False
        os.link(source, dest)
    except OSError:
        return False
    return True


def write_target_dir(entries: Sequence[Entry], target_dir: Path, unpacked: Unpacked | None = None) -> None:
    """Make `target_dir` hold exactly `entries` (plus our marker).

    Our previous target dir is updated in place from its manifest; any other is built beside
    its place and swapped in. Wheel members are hard-linked from their unpacked copies in the
    cache where possible; a copy edited since it was unpacked is never linked.
    """
    _guard_io(target_dir, lambda: _write_target_dir(entries, target_dir, unpacked or {}))


def _write_target_dir(entries: Sequence[Entry], target_dir: Path, unpacked: Unpacked) -> None:
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target_dir)
    manifest = _read_manifest(target_dir) if target_dir.is_dir() else {}
    manifest_path(target_dir).unlink(missing_ok=True)  # stale from here on until rewritten
    if manifest:
        try:
            keys = _update_in_place(entries, target_dir, manifest, unpacked)
        except OSError:
            pass  # something unexpected is in the way: rebuild it whole, below
        else:
            _write_manifest(target_dir, entries, keys)
            return
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(target_dir), dir=target_dir.parent))
    (staging / MARKER).write_text(MARKER_TEXT)
    try:
        with _held(staging):
            keys = _fill_staging(entries, staging, unpacked)
            staging.chmod(0o755)
            old = None
            if target_dir.exists():
                old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target_dir), dir=target_dir.parent))
                os.replace(target_dir, old / "old")
            os.replace(staging, target_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_manifest(target_dir, entries, keys)


def _update_in_place(
    entries: Sequence[Entry], target_dir: Path, manifest: dict[str, list[Any]], unpacked: Unpacked
) -> dict[str, str]:
    """Bring our previous target dir up to date file by file.

    A re-bundle after a source change then touches a few files instead of thousands. Every new
    or changed file is first written beside its place under a temporary name; only when all are
    written are they renamed into place and the files the bundle no longer holds removed (quick
    metadata operations). A failure while writing leaves the folder as it was; a kill during the
    renames leaves no manifest, so the next run rebuilds the folder whole.
    """
    wanted = {e.path for e in entries}
    _make_parents(target_dir, entries)
    keys: dict[str, str] = {}
    pending: list[tuple[Path, Path]] = []
    sources = _Sources()
    try:
        for entry in entries:
            key = keys[entry.path] = entry_key(entry)
            previous = manifest.get(entry.path)
            dest = target_dir / entry.path
            if previous and previous[:2] == [key, entry.executable] and _unchanged(dest, previous):
                continue
            temp = dest.with_name(f".{dest.name}.lambda-bundle-part")
            temp.unlink(missing_ok=True)
            pending.append((temp, dest))
            if not _link_unpacked(unpacked, temp, entry):
                _write_to(temp, entry, sources)
    except BaseException:
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        _remove_empty_folders(target_dir)
        raise
    finally:
        sources.close()
    for temp, dest in pending:
        os.replace(temp, dest)
    for folder, dirs, files in os.walk(target_dir):
        rel = os.path.relpath(folder, target_dir).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        for name in files:
            if prefix + name not in wanted and prefix + name != MARKER:
                os.unlink(os.path.join(folder, name))
        for name in dirs:
            if os.path.islink(os.path.join(folder, name)):
                os.unlink(os.path.join(folder, name))
    _remove_empty_folders(target_dir)
    return keys


def _unchanged(path: Path, previous: list[Any]) -> bool:
    try:
        return _target_fingerprint(path) == previous[2:]
    except FileNotFoundError:
        return False


def _remove_empty_folders(root: Path) -> None:
    """Folders left empty by removed packages, deepest first."""
    for folder, _, _ in os.walk(root, topdown=False):
        if folder != str(root):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty


def _fill_staging(entries: Sequence[Entry], staging: Path, unpacked: Unpacked) -> dict[str, str]:
    """Write (or hard-link from the unpacked cache) every entry, one thread per source archive.

    Creating thousands of small files is bound by the file system, not the CPU; a few threads
    keep it busy (zlib and file I/O release the GIL). Each thread opens its own archives.
    """
    _make_parents(staging, entries)
    groups: dict[Any, list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[entry.archive].append(entry)

    def write_group(group: list[Entry]) -> dict[str, str]:
        sources = _Sources()
        keys = {}
        try:
            for entry in group:
                keys[entry.path] = entry_key(entry)
                if not _link_unpacked(unpacked, staging / entry.path, entry):
                    _write_file(staging, entry, sources)
        finally:
            sources.close()
        return keys

    keys: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        for found in pool.map(write_group, groups.values()):
            keys.update(found)
    return keys


def _write_manifest(target_dir: Path, entries: Sequence[Entry], keys: dict[str, str]) -> None:
    """Record what each file is, once the target dir is final (its files' ctimes settled)."""
    files = {e.path: [keys[e.path], e.executable, *_target_fingerprint(target_dir / e.path)] for e in entries}
    final = manifest_path(target_dir)
    temp = final.with_name(final.name + ".part")
    temp.write_text(json.dumps({"target_dir": str(target_dir), "files": files}))
    os.replace(temp, final)


def write_zip(entries: Sequence[Entry], output: Path, epoch: int) -> ZipResult:
    """Write the deterministic ZIP at `output`, atomically."""
    with pending_zip(entries, output, epoch) as result:
        return result


@contextlib.contextmanager
def pending_zip(entries: Sequence[Entry], output: Path, epoch: int) -> Iterator[ZipResult]:
    """Write the deterministic ZIP beside `output`; rename it into place when the block ends.

    Whatever else must succeed for the bundle to be whole (the target dir) runs inside the
    block: if it fails, the new ZIP is discarded and the previous one stays at `output`.
    """
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(output)
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(output), dir=output.parent)
    except OSError as error:
        raise _io_error(output, error) from None
    temp = Path(name)
    sources = _Sources()
    try:
        with _held(temp), os.fdopen(fd, "w+b") as f:
            try:
                result = _fill_zip(f, entries, output, epoch, sources)
            except OSError as error:
                raise _io_error(output, error) from None
            yield result
            try:
                os.chmod(temp, 0o644)
                os.replace(temp, output)
            except OSError as error:
                raise _io_error(output, error) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        sources.close()


def _fill_zip(f: BinaryIO, entries: Sequence[Entry], output: Path, epoch: int, sources: _Sources) -> ZipResult:
    with DeterministicZipWriter(f, epoch=epoch) as writer:
        for entry in entries:
            try:
                _add_entry(writer, entry, sources)
            except (ValueError, ZipWriteError) as error:
                raise OutputError(f"Cannot write {entry.path!r} of {entry.owner}: {error}") from None
    f.flush()
    os.fsync(f.fileno())
    digest, size = _sha256_of(f)
    return ZipResult(output, digest, size)


def _add_entry(writer: DeterministicZipWriter, entry: Entry, sources: _Sources) -> None:
    if entry.data is not None:
        writer.add_bytes(entry.path, entry.data, executable=entry.executable)
    elif entry.file is not None:
        with entry.file.open("rb") as stream:
            writer.add_stream(entry.path, stream, executable=entry.executable)
    else:
        assert entry.archive is not None and entry.info is not None
        writer.add_from_zip(entry.path, sources.get(entry.archive), entry.info, executable=entry.executable)


def _sha256_of(f: BinaryIO) -> tuple[bytes, int]:
    f.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.digest(), size


def _guard_io(path: Path, work):  # type: ignore[no-untyped-def]
    """Turn the operating system's refusals into errors that say what to do."""
    try:
        return work()
    except OSError as error:
        raise _io_error(path, error) from None


def _io_error(path: Path, error: OSError) -> OutputError:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    return OutputError(
        f"Could not write {path}: {reason}{where}."
        " Check that the folder is writable and the disk has space."
    )
