"""Write every bundle's two outputs so that they always agree: stage both, then commit both.

Each bundle's ZIP (`zip_output`) and target dir (`target_dir`) are staged complete beside their
final places, filled in one pass over the source archives: every member is read once (its
local header checked against the central directory), copied as its compressed bytes into each
ZIP that holds it, at the place the ZIP's layout gives it, and inflated once (its CRC checked)
into a new file of each target dir that holds it; a wheel with an unpacked copy in the cache
(`unpacked.Unpacked`) gives its bytes from there instead, held to the same size and CRC
(inflated from the wheel if they fail). So the two outputs of a bundle are written
from the same bytes, and the bundles of one run share the reading and inflating. The pass runs
one thread per core, one archive at a time each (largest first; an archive up to 16 MiB read in
one system call, and a worker's members that follow each other in a ZIP written in one); with
thousands of files, one thread beside a helper process that creates most of the target dirs'
files from the unpacked copies (`copy_writer`, `_Share`). A bundle that fails stops alone, its
staged outputs removed.

Only when both outputs of a bundle are complete are they committed: the target dir is swapped
in, then the ZIP renamed over the previous one; if that rename fails the target dir swap is
undone. Any failure before leaves both outputs as they were, and the error names the path and
the cause. A Ctrl-C during the commits is held until they are done (`interrupts.held`), so it
never leaves a target dir swapped in without its ZIP. The paths the user gave are checked
first, before any work is done.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import TypeVar

from poetry_plugin_lambda.atomic import Cancelled
from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.copy_writer import CopyWriter
from poetry_plugin_lambda.copy_writer import available
from poetry_plugin_lambda.errors import Interrupted
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.errors import os_error
from poetry_plugin_lambda.interrupts import held
from poetry_plugin_lambda.sources import Inflater
from poetry_plugin_lambda.sources import as_archive_members
from poetry_plugin_lambda.sources import corrupt
from poetry_plugin_lambda.sources import inflated
from poetry_plugin_lambda.sources import is_deflated_member
from poetry_plugin_lambda.sources import unreadable
from poetry_plugin_lambda.target_dir import MARKER
from poetry_plugin_lambda.target_dir import StagedTargetDir
from poetry_plugin_lambda.target_dir import Swap
from poetry_plugin_lambda.target_dir import file_mode
from poetry_plugin_lambda.target_dir import folders_of
from poetry_plugin_lambda.target_dir import nested
from poetry_plugin_lambda.target_dir import write_all
from poetry_plugin_lambda.zip_output import StagedZip
from poetry_plugin_lambda.zip_output import ZipResult
from poetry_plugin_lambda.zip_output import lay_out
from poetry_plugin_lambda.zipread import CHUNK
from poetry_plugin_lambda.zipread import RawSource
from poetry_plugin_lambda.zipread import ZipWriteError

if TYPE_CHECKING:
    import zipfile
    from collections.abc import Callable
    from collections.abc import Collection
    from collections.abc import Iterator
    from collections.abc import Mapping
    from collections.abc import Sequence

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.copy_writer import CopiedFile
    from poetry_plugin_lambda.unpacked import Unpacked

T = TypeVar("T")

__all__ = ["MARKER", "OutputJob", "ZipResult", "check_outputs", "write_all_outputs", "write_outputs"]

_WORKERS = min(4, os.cpu_count() or 2)  # inflating and system calls let go of the GIL; more threads only wait for it
_RUN_LIMIT = 1 << 20  # members gathered into one write of the ZIP, at most (about) this many bytes
_PER_FILE = 16 << 10  # what creating a file costs, in bytes written, when ordering the work
_HELPER_FROM = 2000  # files: fewer are all written by this process (starting the helper costs ~20 ms)
# Of the target dirs' work given to the helper; this process also lays out, writes and completes the ZIPs.
# Measured by when each side finishes (journaled ext4, both benchmark projects, plain and --compile):
# with 0.68 the helper's last file lands about when this process has completed its ZIPs; 0.6 left
# the helper idle for 35 to 200 ms of each run. (Wall-clock sweeps could not tell them apart.)
_HELPER_SHARE = 0.68


def check_outputs(
    output: Path, target_dir: Path, project_root: Path, cache_dir: Path | None = None, packaged: Collection[Path] = ()
) -> None:
    """Refuse outputs that could destroy the user's files, before any work is done; `packaged`:
    the folders whose files the project's wheel ships (an output there would ship next time)."""
    try:
        _check_places(output, target_dir, project_root, cache_dir, packaged)
        _check_replaceable(output, target_dir)
    except OSError as error:
        raise os_error(error, "check the outputs") from None


def _check_places(
    output: Path, target_dir: Path, project_root: Path, cache_dir: Path | None, packaged: Collection[Path]
) -> None:
    """Where the outputs are: never a folder the user keeps, never inside a target dir or the
    project's package."""
    home = Path.home().resolve()
    protected = {Path("/"), home, project_root, Path.cwd().resolve()}
    if target_dir in protected or target_dir in project_root.parents:
        raise OutputError(
            f"Refusing to use {target_dir} as the target dir: it is the project, its parent,"
            " your home or the current folder. Choose a folder of its own, such as build/lambda."
        )
    if cache_dir is not None and (nested(target_dir, cache_dir) or target_dir in cache_dir.parents):
        raise OutputError(
            f"Refusing to use {target_dir} as the target dir: Poetry's cache ({cache_dir}) would be"
            " in it or hold it, and a run replaces its target dir whole. Choose a folder of its own,"
            " such as build/lambda."
        )
    if nested(output, target_dir):
        raise OutputError(f"The output {output} must not be inside the target dir {target_dir}.")
    for path in (output, target_dir):
        for folder in path.parents:
            if (folder / MARKER).is_file():
                raise OutputError(
                    f"Refusing to write {path}: it is inside {folder}, the target dir of another"
                    f" bundle (it holds {MARKER}), which its runs replace whole. Choose a path"
                    " outside it."
                )
        for folder in packaged:
            if nested(path, folder) and folder != project_root:
                raise OutputError(
                    f"Refusing to write {path}: it is inside {folder}, a folder of the project's"
                    " package, whose files the project's wheel ships (the next bundle would hold"
                    " this one). Choose a path outside the package, such as dist/lambda or build/lambda."
                )


def _check_replaceable(output: Path, target_dir: Path) -> None:
    """What is at the outputs' places now may be replaced: checked before any work is done, and
    again just before each output is put in place (something may have appeared meanwhile)."""
    if target_dir.is_symlink():
        raise OutputError(
            f"The target dir {target_dir} is a symlink; give the folder itself (a run replaces the"
            " target dir whole, so it never follows a link)."
        )
    if target_dir.exists():
        if not target_dir.is_dir():
            raise OutputError(f"The target dir {target_dir} exists and is not a folder.")
        if not (target_dir / MARKER).is_file() and any(target_dir.iterdir()):
            raise OutputError(
                f"Refusing to replace {target_dir}: it is not empty and was not created by"
                " poetry lambda-bundle. Remove it yourself or choose another --target-dir."
            )
    if output.is_symlink() or output.exists():
        if output.is_dir() and not output.is_symlink():
            raise OutputError(f"The output {output} is a folder; give a .zip file path.")
        if output.is_symlink() or not output.is_file():
            raise OutputError(f"Refusing to replace {output}: it is not a regular file.")
        with output.open("rb") as f:
            if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                raise OutputError(f"Refusing to overwrite {output}: it is not a ZIP file.")


@dataclass(frozen=True)
class OutputJob:
    """One bundle's two outputs to write: its entries, its ZIP path and target dir, its epoch."""

    entries: Sequence[Entry]
    output: Path
    target_dir: Path
    epoch: int


def write_outputs(
    entries: Sequence[Entry], output: Path, target_dir: Path, epoch: int, unpacked: Mapping[Path, Unpacked] | None = None
) -> ZipResult:
    """Write the ZIP at `output` and the same files under `target_dir`: both, or neither;
    `unpacked`: the wheels' unpacked copies, by wheel."""
    result = write_all_outputs([OutputJob(entries, output, target_dir, epoch)], unpacked)[0]
    if isinstance(result, BaseException):
        raise result
    return result


def write_all_outputs(jobs: Sequence[OutputJob], unpacked: Mapping[Path, Unpacked] | None = None) -> list[ZipResult | Exception]:
    """Each job's ZIP and target dir, both or neither; a job that fails leaves the others be.

    Every job's outputs are staged, filled in one pass (a member several jobs hold is read and
    inflated once), completed, and then each job whose two outputs are both complete is
    committed. Its error is returned in a failed job's place.
    """
    bundles = [_Bundle(job) for job in jobs]
    shares: list[_Share] = []  # the helper process's share of the files, once it is started
    unpacked = unpacked or {}
    try:
        members = _by_archive(bundles)  # the wheels' (and memos') members: staging adds its own
        share = _Share.start(bundles, members, unpacked, shares)  # first: it makes the folders meanwhile
        for bundle in bundles:
            bundle.stage()
        if share is not None:
            share.folders_made()
        _fill(bundles, _staged_members(members, bundles), unpacked, share)
        for bundle in bundles:
            bundle.complete_zip()
        for started in shares:
            started.collect()  # the files the helper wrote, and the ones it left
        for bundle in bundles:
            bundle.complete_dir()
    except BaseException:  # interrupted, or a bug: remove everything that was staged
        for started in shares:
            started.stop()  # first: it writes no more into what is removed
        for bundle in bundles:
            bundle.fail(Cancelled())
            bundle.discard()
        raise
    finally:
        for started in shares:
            started.stop()
    with held() as interrupt:  # renames and the previous target dirs' removal: not cut in two
        results = [bundle.commit() for bundle in bundles]
    if interrupt.interrupted:
        raise Interrupted("the report and the handler checks were not made")
    return results


class _Bundle:
    """One job's outputs being staged, and the first error that stopped them."""

    def __init__(self, job: OutputJob) -> None:
        self.job = job
        self.entries: list[Entry] = list(job.entries)  # as archive members once staged (same order)
        self.error: Exception | None = None
        self._scratch: Staged | None = None  # the job's generated and project files, deflated
        self._zip: StagedZip | None = None
        self._dir: StagedTargetDir | None = None
        self._result: ZipResult | None = None  # both complete: the ZIP's facts and the staged folder
        self._staged_dir: Staged | None = None
        self.staged: list[int] = []  # the entries staging made members of its scratch archive
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        return self.error is None

    @property
    def staged_dir(self) -> StagedTargetDir:
        assert self._dir is not None
        return self._dir

    def fail(self, error: Exception) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def stage(self) -> None:
        """Its entries as archive members, its ZIP laid out, both outputs' temporaries created.

        The target dir's folders (system calls, no GIL held) are made on a thread of their own
        while this one lays out the ZIP (Python), unless the helper process makes them (its
        target dir is staged already: `stage_dir`); a ZIP error is this job's error even if the
        folders failed too, and folders made for a failed job are discarded with it.
        """
        job = self.job
        if not self.live:
            return
        with ThreadPoolExecutor(max_workers=1) as aside:
            folders = None
            if self._dir is None:
                folders = aside.submit(_on_disk, lambda: StagedTargetDir(job.target_dir, job.entries), job.target_dir)
            try:
                self.entries = _on_disk(lambda: self._members(job.entries), job.output)
                layout = lay_out(self.entries, job.epoch)
                self._zip = _on_disk(lambda: StagedZip(job.output, layout), job.output)
            except Exception as error:  # returned as this job's outcome
                self.fail(error)
            finally:  # kept even when interrupted, so that discarding the job removes them
                try:
                    if folders is not None:
                        self._dir = folders.result()
                except Exception as error:
                    self.fail(error)

    def stage_dir(self) -> bool:
        """Its target dir's temporary created, without its folders (the helper makes them);
        False if that failed (this job's error then)."""
        try:
            self._dir = _on_disk(lambda: StagedTargetDir(self.job.target_dir, self.job.entries, folders=False), self.job.target_dir)
        except Exception as error:  # returned as this job's outcome
            self.fail(error)
            return False
        return True

    def _members(self, entries: Sequence[Entry]) -> list[Entry]:
        if all(is_deflated_member(entry) for entry in entries):
            return list(entries)
        self._scratch = Staged(self.job.output)  # beside the output: removed by the next run if killed
        with os.fdopen(os.dup(self._scratch.fd), "w+b", buffering=CHUNK) as scratch:
            members, self.staged = as_archive_members(entries, scratch, self._scratch.path)
        return members

    def put(self, index: int, raw: bytes, data: bytes, runs: _ZipRuns) -> None:
        """Member `index`, small enough to hold: its compressed bytes into the ZIP (with the
        members before it in the ZIP, when they came just before), its bytes into a new file of
        the target dir."""
        zip_file, target, entry = self._zip, self._dir, self.entries[index]
        assert zip_file is not None and target is not None
        layout = zip_file.layout
        if runs.write(self, layout.offsets[index], layout.heads[index], raw) and self.error is None:
            try:
                target.write(entry.path, data, entry.executable)
            except OSError as error:
                self.fail(os_error(error, f"write {self.job.target_dir}"))

    def put_zip(self, index: int, raw: bytes, runs: _ZipRuns) -> None:
        """Member `index` into the ZIP only: the helper writes its file (`copy_writer`)."""
        zip_file = self._zip
        assert zip_file is not None
        layout = zip_file.layout
        runs.write(self, layout.offsets[index], layout.heads[index], raw)

    def write_file(self, index: int, data: bytes) -> None:
        """Member `index`'s file in the target dir, holding `data`."""
        target, entry = self._dir, self.entries[index]
        assert target is not None
        self.attempt(lambda: target.write(entry.path, data, entry.executable), self.job.target_dir)

    def write_zip(self, offset: int, data: bytes) -> bool:
        """`data` at `offset` of the staged ZIP; False if this job has failed, or fails now."""
        zip_file = self._zip
        assert zip_file is not None
        return self.attempt(lambda: zip_file.write_at(offset, data), self.job.output)

    def open_member(self, index: int) -> _Open | None:
        """Member `index`, written in pieces: its local header written and its file created."""
        zip_file, target, entry = self._zip, self._dir, self.entries[index]
        assert zip_file is not None and target is not None
        layout = zip_file.layout
        if not self.attempt(lambda: zip_file.write_at(layout.offsets[index], layout.heads[index]), self.job.output):
            return None
        fds: list[int] = []
        if not self.attempt(lambda: fds.append(target.create(entry.path, entry.executable)), self.job.target_dir):
            return None
        return _Open(self, zip_file, fds[0], zip_file.member_start(index))

    def attempt(self, work: Callable[[], object], path: Path) -> bool:
        """Run `work` unless this job has failed; False if it has (a refusal of the operating
        system fails it, naming `path`)."""
        if not self.live:
            return False
        try:
            work()
        except OSError as error:
            self.fail(os_error(error, f"write {path}"))
            return False
        return True

    def complete_zip(self) -> None:
        """The ZIP complete: its central directory written, synced and hashed (while the
        helper may still be writing files of the target dir)."""
        if not self.live:
            return
        assert self._zip is not None
        try:
            self._result = _on_disk(self._zip.finish, self.job.output)
        except Exception as error:  # returned as this job's outcome
            self.fail(error)

    def complete_dir(self) -> None:
        """The target dir complete, every file written: its marker written."""
        if not self.live:
            return
        assert self._dir is not None
        try:
            self._staged_dir = _on_disk(self._dir.finish, self.job.target_dir)
        except Exception as error:  # returned as this job's outcome
            self.fail(error)

    def commit(self) -> ZipResult | Exception:
        """Put both staged outputs in place, or neither; the error that stopped them otherwise."""
        self._discard_scratch()
        if self.error is not None:
            self.discard()
            return self.error
        job, zip_file, staged_dir, result = self.job, self._zip, self._staged_dir, self._result
        assert zip_file is not None and staged_dir is not None and result is not None
        try:
            _on_disk(lambda: _still_replaceable(job), job.target_dir)
            swap = _on_disk(lambda: Swap(staged_dir), job.target_dir)
        except Exception as error:
            self.discard()
            return error
        try:
            _on_disk(zip_file.commit, job.output)
        except Exception as error:
            swap.undo()
            zip_file.discard()
            return error
        swap.finish()
        _remove_legacy_manifest(job.target_dir)
        return result

    def discard(self) -> None:
        """Remove whatever was staged (nothing of a committed output)."""
        for staged in (self._zip, self._dir):
            if staged is not None:
                with contextlib.suppress(OSError):
                    staged.discard()
        self._discard_scratch()

    def _discard_scratch(self) -> None:
        if self._scratch is not None:
            with contextlib.suppress(OSError):
                self._scratch.discard()
            self._scratch = None


def _still_replaceable(job: OutputJob) -> None:
    """The outputs' places, checked again just before they are replaced."""
    try:
        _check_replaceable(job.output, job.target_dir)
    except OutputError as error:
        raise OutputError(f"{error} It appeared while the bundle was being built: neither output was replaced.") from None


class _ZipRuns:
    """One worker's small members bound for consecutive places of a job's ZIP, gathered into one
    positioned write (a wheel's members mostly keep their order in the ZIP, which is sorted by
    path). A run is written when the next member does not follow it, when it reaches
    `_RUN_LIMIT`, and when the worker leaves the archive (`flush`)."""

    def __init__(self) -> None:
        self._runs: dict[_Bundle, _Run] = {}

    def write(self, bundle: _Bundle, offset: int, head: bytes, raw: bytes) -> bool:
        """Add a member's local header and raw bytes at `offset`; False if the job has failed."""
        run = self._runs.get(bundle)
        if run is None or run.end != offset:
            if run is not None and not self._write(bundle):
                return False
            if not bundle.live:
                return False
            run = self._runs[bundle] = _Run(offset)
        run.pieces += (head, raw)
        run.end = offset + len(head) + len(raw)
        return run.end - run.start < _RUN_LIMIT or self._write(bundle)

    def flush(self) -> None:
        for bundle in list(self._runs):
            self._write(bundle)

    def _write(self, bundle: _Bundle) -> bool:
        run = self._runs.pop(bundle)
        return bundle.write_zip(run.start, b"".join(run.pieces))


class _Run:
    """Members for the ZIP from `start` to `end`, not yet written."""

    def __init__(self, start: int) -> None:
        self.start = self.end = start
        self.pieces: list[bytes] = []


class _Open:
    """A member being written in pieces into one job's outputs: the ZIP from its raw bytes, a new
    file from its inflated bytes."""

    def __init__(self, bundle: _Bundle, zip_file: StagedZip, fd: int, offset: int) -> None:
        self.bundle, self.zip_file, self.fd, self.offset = bundle, zip_file, fd, offset

    def raw(self, chunk: bytes) -> None:
        if self.bundle.attempt(lambda: self.zip_file.write_at(self.offset, chunk), self.bundle.job.output):
            self.offset += len(chunk)

    def inflated(self, piece: bytes) -> None:
        self.bundle.attempt(lambda: write_all(self.fd, piece), self.bundle.job.target_dir)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


if TYPE_CHECKING:
    _Targets = list[tuple[_Bundle, int]]  # the jobs holding a member, and its index in each


def _fill(bundles: Sequence[_Bundle], members: _Members, unpacked: Mapping[Path, Unpacked], share: _Share | None) -> None:
    """Every member of every live job written into both its outputs, one thread per core, each
    thread one archive at a time (largest first, so the last to finish is a small one); with
    a helper process (`share`), one thread, and the files of the helper's share only into the
    ZIPs: those files are the target dirs' only once it is done (`_Share.collect`)."""
    if not all(bundle.live for bundle in bundles):  # failed while staged: the others' members only
        members = _by_archive(bundles)
    ordered = _heaviest_first(members)
    delegated = share.delegated if share is not None else {}
    with ThreadPoolExecutor(max_workers=1 if share is not None else _WORKERS) as pool:
        futures = [
            pool.submit(_fill_archive, archive, group, unpacked.get(archive), delegated.get(archive))
            for archive, group in ordered
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for bundle in bundles:
                bundle.fail(Cancelled())  # the others stop at their next member
            raise


if TYPE_CHECKING:
    _Members = dict[Path, dict[int, _Targets]]  # by archive and header offset: the jobs' entries


def _by_archive(bundles: Sequence[_Bundle]) -> _Members:
    """The live jobs' deflated archive members, by archive and header offset: the jobs holding
    each member and its index in each. (Before a job is staged, its other entries are not
    members yet: `_staged_members` adds them; staging keeps every entry's index.)"""
    groups: _Members = {}
    for bundle in bundles:
        if bundle.live:
            for index, entry in enumerate(bundle.entries):
                if is_deflated_member(entry):
                    assert entry.archive is not None and entry.info is not None
                    groups.setdefault(entry.archive, {}).setdefault(entry.info.header_offset, []).append((bundle, index))
    return groups


def _staged_members(groups: _Members, bundles: Sequence[_Bundle]) -> _Members:
    """`groups`, with the entries that staging made members of each job's scratch archive."""
    for bundle in bundles:
        if bundle.live:
            for index in bundle.staged:
                entry = bundle.entries[index]
                assert entry.archive is not None and entry.info is not None
                groups.setdefault(entry.archive, {}).setdefault(entry.info.header_offset, []).append((bundle, index))
    return groups


def _heaviest_first(groups: _Members) -> list[tuple[Path, dict[int, _Targets]]]:
    return sorted(groups.items(), key=lambda group: (-_weight(group[1]), str(group[0])))


class _Share:
    """The helper's share of the target dirs' files (`copy_writer`): the small members of the
    largest archives with an unpacked copy, up to `_HELPER_SHARE` of the work. This process
    writes those members into the ZIPs, their compressed bytes held to the CRC-32 they had when
    the copy was made (`_zip_member`), and writes their files only if the helper leaves them."""

    def __init__(self, unpacked: Mapping[Path, Unpacked]) -> None:
        self.unpacked = unpacked
        self.helper: CopyWriter | None = None
        self.roots: list[_Bundle] = []  # the staged target dirs, by their number in the job
        self.members: list[tuple[Path, zipfile.ZipInfo, _Bundle, int]] = []  # each file's member
        self.delegated: dict[Path, dict[int, int]] = {}  # by archive: header offset -> raw CRC-32

    @classmethod
    def start(
        cls, bundles: Sequence[_Bundle], members: _Members, unpacked: Mapping[Path, Unpacked], shares: list[_Share]
    ) -> _Share | None:
        """The share, its jobs' target dirs staged and its helper started, before the ZIPs are
        laid out (the helper makes every folder of those target dirs meanwhile, then its files);
        the share is in `shares` before the helper starts, so a run that stops stops it too.
        None when there are too few files for one (or no interpreter to run it)."""
        if not available():
            return None
        if sum(len(archive) for archive in members.values()) < _HELPER_FROM:
            return None
        picked = _pick(_heaviest_first(members), unpacked)
        if sum(len(targets) for _, _, chosen in picked for *_, targets in chosen) < _HELPER_FROM:
            return None
        share = cls(unpacked)
        share.roots = [bundle for bundle in bundles if bundle.live and bundle.stage_dir()]
        if not share.roots:
            return None
        number = {bundle: at for at, bundle in enumerate(share.roots)}
        copies: list[bytes] = []
        files: list[CopiedFile] = []
        for archive, copy, chosen in picked:
            for offset, start, raw_crc, info, targets in chosen:
                for bundle, index in targets:
                    if bundle in number:
                        entry = bundle.entries[index]
                        files.append((number[bundle], os.fsencode(entry.path), file_mode(entry.executable), len(copies), start, info.file_size, info.CRC))
                        share.members.append((archive, info, bundle, index))
                share.delegated.setdefault(archive, {})[offset] = raw_crc
            copies.append(os.fsencode(copy.path))
        roots = [(os.fsencode(bundle.staged_dir.staged.path), bundle.staged_dir.staged.fd) for bundle in share.roots]
        folders = [[os.fsencode(folder) for folder in folders_of(bundle.job.entries)] for bundle in share.roots]
        shares.append(share)
        with held() as interrupt:  # a Ctrl-C never leaves a helper started but unknown
            share.helper = CopyWriter(roots, folders, copies, files)
        interrupt.reraise()
        return share

    def folders_made(self) -> None:
        """Wait until the helper has made the target dirs' folders (it has had the time the ZIPs
        took to lay out); its refusals fail their jobs. If it made no answer (it never
        started, or died first), this process makes them."""
        assert self.helper is not None
        made = self.helper.folders()
        for number, bundle in enumerate(self.roots):
            staged = bundle.staged_dir
            if made is None:
                bundle.attempt(functools.partial(staged.make_folders, bundle.job.entries), bundle.job.target_dir)
            elif number in made.errors:
                bundle.fail(os_error(made.errors[number], f"write {bundle.job.target_dir}"))
            else:
                staged.exact = made.exact[number]

    def collect(self) -> None:
        """Wait for the helper: its refusals fail their jobs, the files it left are written here."""
        assert self.helper is not None
        outcome = self.helper.wait()
        if outcome.stopped is not None:  # what it wrote is unknown: the jobs it wrote into fail
            for bundle in dict.fromkeys(bundle for _, _, bundle, _ in self.members):
                bundle.fail(OutputError(f"Could not write {bundle.job.target_dir}: {outcome.stopped}. Run again."))
            return
        for number, error in outcome.errors.items():
            bundle = self.roots[number]
            bundle.fail(os_error(error, f"write {bundle.job.target_dir}"))
        left: dict[Path, list[tuple[zipfile.ZipInfo, _Bundle, int]]] = {}
        for number in outcome.missed:
            archive, info, bundle, index = self.members[number]
            left.setdefault(archive, []).append((info, bundle, index))
        for archive, members in left.items():
            _write_left(archive, members, self.unpacked.get(archive))

    def stop(self) -> None:
        if self.helper is not None:
            self.helper.stop()


if TYPE_CHECKING:
    _Picked = list[tuple[Path, Unpacked, list[tuple[int, int, int, zipfile.ZipInfo, _Targets]]]]


def _pick(ordered: Sequence[tuple[Path, dict[int, _Targets]]], unpacked: Mapping[Path, Unpacked]) -> _Picked:
    """The helper's share: by archive (heaviest first) and while it is under `_HELPER_SHARE` of
    the target dirs' work, each member the archive's unpacked copy holds that is small enough
    to be read whole: (header offset, start in the copy, raw CRC-32, member, its jobs)."""
    limit, given = _HELPER_SHARE * sum(_files_work(members) for _, members in ordered), 0
    picked: _Picked = []
    for archive, members in ordered:
        copy = unpacked.get(archive)
        if copy is None or given >= limit:
            continue
        chosen = []
        for offset, targets in members.items():
            info = targets[0][0].entries[targets[0][1]].info
            assert info is not None
            start, raw_crc = copy.offsets.get(offset, (-1, 0))
            if start < 0 or info.compress_size > CHUNK or info.file_size > CHUNK:
                continue  # not in the copy, or streamed: written here
            chosen.append((offset, start, raw_crc, info, targets))
            given += (info.file_size + _PER_FILE) * len(targets)
        if chosen:
            picked.append((archive, copy, chosen))
    return picked


def _write_left(archive: Path, members: list[tuple[zipfile.ZipInfo, _Bundle, int]], unpacked: Unpacked | None) -> None:
    """The files the helper left: from the archive's unpacked copy where it holds them true (the
    helper never started), inflated from the archive otherwise (the copy failed its check)."""
    try:
        source = RawSource.open(archive)
    except OSError as error:
        for _, bundle, _ in members:
            bundle.fail(os_error(error, f"read {archive}"))
        return
    copy = _Copy.open(unpacked)
    try:
        for info, bundle, index in members:
            if not bundle.live:
                continue
            try:
                raw = source.raw_bytes(info)
                data = copy.data(info, raw) if copy is not None else None
                if data is None:
                    data = inflated(archive, info, raw)
            except ZipWriteError as error:
                bundle.fail(unreadable(archive, info, error))
                continue
            except WheelError as error:
                bundle.fail(error)
                continue
            bundle.write_file(index, data)
    finally:
        source.close()
        if copy is not None:
            copy.source.close()


def _weight(members: dict[int, _Targets]) -> int:
    total = 0
    for targets in members.values():
        bundle, index = targets[0]
        info = bundle.entries[index].info
        assert info is not None
        total += info.compress_size + info.file_size + _PER_FILE
    return total


def _files_work(members: dict[int, _Targets]) -> int:
    """What an archive's files cost the target dirs, in bytes: a file in each target dir that
    holds a member (the measure of the helper's share)."""
    total = 0
    for targets in members.values():
        bundle, index = targets[0]
        info = bundle.entries[index].info
        assert info is not None
        total += (info.file_size + _PER_FILE) * len(targets)
    return total


def _fill_archive(
    archive: Path, members: dict[int, _Targets], unpacked: Unpacked | None, delegated: dict[int, int] | None
) -> None:
    try:
        source = RawSource.whole(archive)
    except OSError as error:
        _fail_all([t for targets in members.values() for t in targets], os_error(error, f"read {archive}"))
        return
    copy = _Copy.open(unpacked) if not delegated or len(delegated) < len(members) else None
    runs = _ZipRuns()
    try:
        for offset, targets in members.items():
            live = targets if len(targets) == 1 and targets[0][0].error is None else [t for t in targets if t[0].live]
            if not live:
                continue
            raw_crc = delegated.get(offset) if delegated else None
            if raw_crc is not None:
                _zip_member(source, archive, live, runs, raw_crc)
            else:
                _fill_member(source, archive, live, runs, copy)
        runs.flush()
    finally:
        source.close()
        if copy is not None:
            copy.source.close()


class _Copy:
    """An archive's unpacked copy, read like the archive (whole when small). A member comes from
    it only when the archive's compressed bytes for it are the ones checked when the copy was
    made (their CRC-32), and the copy's bytes have the member's size and CRC."""

    def __init__(self, source: RawSource, offsets: dict[int, tuple[int, int]]) -> None:
        self.source, self.offsets = source, offsets

    @classmethod
    def open(cls, unpacked: Unpacked | None) -> _Copy | None:
        if unpacked is None:
            return None
        try:
            return cls(RawSource.whole(unpacked.path), unpacked.offsets)
        except OSError:  # gone or unreadable: the wheel's members are inflated
            return None

    def data(self, info: zipfile.ZipInfo, raw: bytes) -> bytes | None:
        """The bytes of the member whose compressed bytes are `raw`, if `raw` is what was checked
        and the copy holds them whole and true to the member's CRC."""
        start, raw_crc = self.offsets.get(info.header_offset, (-1, -1))
        if start < 0 or zlib.crc32(raw) != raw_crc:
            return None
        try:
            data = self.source.pread(info.file_size, start)
        except OSError:
            return None
        return data if len(data) == info.file_size and zlib.crc32(data) == info.CRC else None

    def pieces(self, info: zipfile.ZipInfo) -> tuple[int, Iterator[bytes]] | None:
        """A large member's bytes in pieces, if the copy holds them whole and true to the
        member's CRC (read once to check that), with the CRC-32 its compressed bytes had when
        they were checked. The CRC is checked again as they come: should the copy change
        meanwhile, its last piece fails the bundle instead of being written."""
        start, raw_crc = self.offsets.get(info.header_offset, (-1, -1))
        if start < 0 or self._crc(info, start) != info.CRC:
            return None
        return raw_crc, self._pieces(info, start)

    def _crc(self, info: zipfile.ZipInfo, start: int) -> int | None:
        """The CRC of the member's bytes in the copy; None if it holds fewer, or cannot be read."""
        crc = done = 0
        try:
            for piece in self._read(info, start):
                crc, done = zlib.crc32(piece, crc), done + len(piece)
        except OSError:
            return None
        return crc if done == info.file_size else None

    def _pieces(self, info: zipfile.ZipInfo, start: int) -> Iterator[bytes]:
        crc = done = 0
        try:
            for piece in self._read(info, start):
                crc, done = zlib.crc32(piece, crc), done + len(piece)
                if done == info.file_size and crc != info.CRC:
                    break
                yield piece
        except OSError as error:
            raise WheelError(f"{info.filename}: the unpacked copy in the cache cannot be read ({error}). Run again.") from None
        if done != info.file_size or crc != info.CRC:
            raise WheelError(f"{info.filename}: the unpacked copy in the cache changed while it was read. Run again.")

    def _read(self, info: zipfile.ZipInfo, start: int) -> Iterator[bytes]:
        """The member's bytes in the copy, in pieces of at most `CHUNK`; fewer if the copy ends."""
        done = 0
        while done < info.file_size:
            piece = self.source.pread(min(CHUNK, info.file_size - done), start + done)
            if not piece:
                return
            done += len(piece)
            yield piece


def _zip_member(source: RawSource, archive: Path, targets: _Targets, runs: _ZipRuns, raw_crc: int) -> None:
    """A member whose files the helper writes, into the ZIPs only: its compressed bytes held to
    the CRC-32 they had when its unpacked copy was made (the copy's bytes are the helper's to
    check), so the ZIP and the file come from the same member."""
    bundle, index = targets[0]
    info = bundle.entries[index].info
    assert info is not None
    try:
        raw = source.raw_bytes(info)
    except ZipWriteError as error:
        _fail_all(targets, unreadable(archive, info, error))
        return
    if zlib.crc32(raw) != raw_crc:  # changed since it was checked: its file may not match it
        _fail_all(targets, corrupt(archive, info))
        return
    for bundle, index in targets:
        bundle.put_zip(index, raw, runs)


def _fill_member(source: RawSource, archive: Path, targets: _Targets, runs: _ZipRuns, copy: _Copy | None) -> None:
    """One member into every job that holds it: read once, inflated once (or copied)."""
    bundle, index = targets[0]
    info = bundle.entries[index].info
    assert info is not None
    if info.compress_size > CHUNK or info.file_size > CHUNK:
        _fill_large_member(source, archive, info, targets, copy.pieces(info) if copy is not None else None)
        return
    try:
        raw = source.raw_bytes(info)
    except ZipWriteError as error:
        _fail_all(targets, unreadable(archive, info, error))
        return
    data = copy.data(info, raw) if copy is not None else None
    try:
        if data is None:
            data = inflated(archive, info, raw)
    except WheelError as error:  # a bad source fails every job holding it
        _fail_all(targets, error)
        return
    for bundle, index in targets:
        bundle.put(index, raw, data, runs)


def _fill_large_member(
    source: RawSource, archive: Path, info: zipfile.ZipInfo, targets: _Targets, copied: tuple[int, Iterator[bytes]] | None
) -> None:
    """A member too large to hold, streamed: each raw chunk copied into the ZIPs and inflated
    into the files as it comes; or, `copied`, its bytes from the archive's unpacked copy, once
    its raw chunks proved to be the ones checked (their CRC-32)."""
    opened = [member for bundle, index in targets if (member := bundle.open_member(index)) is not None]
    inflater = Inflater(archive, info) if copied is None else None
    raw_crc = 0
    try:
        for chunk in source.raw_chunks(info):
            for member in opened:
                member.raw(chunk)
            if inflater is None:
                raw_crc = zlib.crc32(chunk, raw_crc)
            for piece in inflater.feed(chunk) if inflater is not None else ():
                for member in opened:
                    member.inflated(piece)
            if not any(member.bundle.live for member in opened):
                return
        if inflater is not None:
            inflater.finish()
        elif copied is not None:
            checked, pieces = copied
            if raw_crc != checked:  # not the bytes checked: inflating them would have failed too
                raise corrupt(archive, info)
            for piece in pieces:
                for member in opened:
                    member.inflated(piece)
    except ZipWriteError as error:
        _fail_all(targets, unreadable(archive, info, error))
    except WheelError as error:  # a bad source fails every job holding it
        _fail_all(targets, error)
    finally:
        for member in opened:
            member.close()


def _fail_all(targets: _Targets, error: Exception) -> None:
    for bundle, _ in targets:
        bundle.fail(error)


def _on_disk(work: Callable[[], T], path: Path) -> T:
    """Run `work`; the operating system's refusals become errors that name `path` and the cause."""
    try:
        return work()
    except OSError as error:
        raise os_error(error, f"write {path}") from None


def _remove_legacy_manifest(target_dir: Path) -> None:
    """Versions before 0.2 kept a manifest beside the target dir; it describes nothing now."""
    legacy = target_dir.parent / f".{target_dir.name}.manifest.json"
    with contextlib.suppress(OSError):
        legacy.unlink(missing_ok=True)
