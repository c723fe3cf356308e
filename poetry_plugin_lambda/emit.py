"""Write both outputs of a bundle so that they always agree: stage both, then commit both.

The ZIP (`zip_output`) and the target dir (`target_dir`) are written side by side, each complete
beside its final place. Only when both are complete are they committed: the target dir is
swapped in, then the ZIP renamed over the previous one; if that rename fails the target dir swap
is undone. Any failure before leaves both outputs as they were, and the error names the path
and the cause. The paths the user gave are checked first, before any work is done.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import TypeVar

from poetry_plugin_lambda.atomic import Cancelled
from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.errors import os_error
from poetry_plugin_lambda.target_dir import MARKER
from poetry_plugin_lambda.target_dir import Swap
from poetry_plugin_lambda.target_dir import stage_target_dirs
from poetry_plugin_lambda.zip_output import ZipResult
from poetry_plugin_lambda.zip_output import stage_zip

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Sequence
    from concurrent.futures import Future

    from poetry_plugin_lambda.assemble import Entry

T = TypeVar("T")

__all__ = ["MARKER", "OutputJob", "ZipResult", "check_outputs", "write_all_outputs", "write_outputs"]


def check_outputs(output: Path, target_dir: Path, project_root: Path) -> None:
    """Refuse outputs that could destroy the user's files, before any work is done."""
    try:
        _check_outputs(output, target_dir, project_root)
    except OSError as error:
        raise os_error(error, "check the outputs") from None


def _check_outputs(output: Path, target_dir: Path, project_root: Path) -> None:
    home = Path.home().resolve()
    protected = {Path("/"), home, project_root, Path.cwd().resolve()}
    if target_dir in protected or target_dir in project_root.parents:
        raise OutputError(
            f"Refusing to use {target_dir} as the target dir: it is the project, its parent,"
            " your home or the current folder. Choose a folder of its own, such as build/lambda."
        )
    if target_dir.is_symlink() or target_dir.exists():
        if target_dir.is_symlink() or not target_dir.is_dir():
            raise OutputError(f"The target dir {target_dir} exists and is not a folder.")
        if not (target_dir / MARKER).is_file() and any(target_dir.iterdir()):
            raise OutputError(
                f"Refusing to replace {target_dir}: it is not empty and was not created by"
                " poetry lambda-bundle. Remove it yourself or choose another --target-dir."
            )
    if output == target_dir or target_dir in output.parents:
        raise OutputError(f"The output {output} must not be inside the target dir {target_dir}.")
    if output.is_symlink() or output.exists():
        if output.is_dir():
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


def write_outputs(entries: Sequence[Entry], output: Path, target_dir: Path, epoch: int) -> ZipResult:
    """Write the ZIP at `output` and the same files under `target_dir`: both, or neither."""
    result = write_all_outputs([OutputJob(entries, output, target_dir, epoch)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def write_all_outputs(jobs: Sequence[OutputJob]) -> list[ZipResult | Exception]:
    """Each job's ZIP and target dir, both or neither; a job that fails leaves the others be.

    The target dirs are staged together in the background (a member that several bundles hold
    is read and inflated once), the ZIPs one after the other beside them; then each job whose
    two outputs are both staged is committed. Its error is returned in a failed job's place.
    """
    cancels = [threading.Event() for _ in jobs]
    zips: list[tuple[Staged, ZipResult] | Exception] = []
    with ThreadPoolExecutor(max_workers=1) as background:
        # Both are bound by the file system more than the CPU: write them side by side.
        staging_dirs = background.submit(_stage_dirs, jobs, cancels)
        try:
            for job, cancel in zip(jobs, cancels):
                zips.append(_stage_zip(job, cancel))
            dirs = staging_dirs.result()
        except BaseException:  # interrupted, or a bug: stop everything and remove what was staged
            for cancel in cancels:
                cancel.set()
            for staged in zips:
                if not isinstance(staged, Exception):
                    staged[0].discard()
            _discard_quietly(staging_dirs)
            raise
    return [_commit(job, staged_zip, staged_dir) for job, staged_zip, staged_dir in zip(jobs, zips, dirs)]


def _stage_zip(job: OutputJob, cancel: threading.Event) -> tuple[Staged, ZipResult] | Exception:
    try:
        return _stage(lambda: stage_zip(job.entries, job.output, job.epoch, cancel), job.output)
    except Exception as error:  # returned as this job's outcome
        cancel.set()  # its target dir would be discarded: stop writing it
        return error


def _stage_dirs(jobs: Sequence[OutputJob], cancels: Sequence[threading.Event]) -> list[Staged | Exception]:
    staged = stage_target_dirs([(job.entries, job.target_dir, cancel) for job, cancel in zip(jobs, cancels)])
    return [
        os_error(result, f"write {job.target_dir}") if isinstance(result, OSError) else result
        for job, result in zip(jobs, staged)
    ]


def _commit(
    job: OutputJob, staged_zip: tuple[Staged, ZipResult] | Exception, staged_dir: Staged | Exception
) -> ZipResult | Exception:
    """Put both staged outputs in place, or neither; the error that stopped them otherwise."""
    if isinstance(staged_zip, Exception):
        if not isinstance(staged_dir, Exception):
            staged_dir.discard()
        elif isinstance(staged_zip, Cancelled):
            return staged_dir  # the target dir failed first: its error is the one to report
        return staged_zip
    zip_file, result = staged_zip
    if isinstance(staged_dir, Exception):
        zip_file.discard()
        return staged_dir
    with zip_file:
        try:
            swap = _stage(lambda: Swap(staged_dir), job.target_dir)
        except Exception as error:
            staged_dir.discard()
            return error
        try:
            _stage(zip_file.commit, job.output)
        except Exception as error:
            swap.undo()
            return error
        swap.finish()
    _remove_legacy_manifest(job.target_dir)
    return result


def _stage(work: Callable[[], T], path: Path) -> T:
    """Run `work`; the operating system's refusals become errors that name `path` and the cause."""
    try:
        return work()
    except OSError as error:
        raise os_error(error, f"write {path}") from None


def _discard_quietly(future: Future[list[Staged | Exception]]) -> None:
    """Interrupted: wait for the target dirs to stop, and remove what they staged."""
    with contextlib.suppress(BaseException):  # Cancelled, or their own failures: not the ones to report
        for staged in future.result():
            if isinstance(staged, Staged):
                staged.discard()


def _remove_legacy_manifest(target_dir: Path) -> None:
    """Versions before 0.2 kept a manifest beside the target dir; it describes nothing now."""
    legacy = target_dir.parent / f".{target_dir.name}.manifest.json"
    with contextlib.suppress(OSError):
        legacy.unlink(missing_ok=True)
