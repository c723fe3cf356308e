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
from pathlib import Path
from typing import TYPE_CHECKING
from typing import TypeVar

from poetry_plugin_lambda.atomic import Cancelled
from poetry_plugin_lambda.errors import OutputError
from poetry_plugin_lambda.errors import os_error
from poetry_plugin_lambda.target_dir import MARKER
from poetry_plugin_lambda.target_dir import Swap
from poetry_plugin_lambda.target_dir import stage_target_dir
from poetry_plugin_lambda.zip_output import ZipResult
from poetry_plugin_lambda.zip_output import stage_zip

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Sequence
    from concurrent.futures import Future

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.atomic import Staged

T = TypeVar("T")

__all__ = ["MARKER", "ZipResult", "check_outputs", "write_outputs"]


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


def write_outputs(entries: Sequence[Entry], output: Path, target_dir: Path, epoch: int) -> ZipResult:
    """Write the ZIP at `output` and the same files under `target_dir`: both, or neither."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as background:
        # Both are bound by the file system more than the CPU: write them side by side.
        staging_dir = background.submit(_stage_dir, entries, target_dir, cancel)
        try:
            staged_zip, result = _stage(lambda: stage_zip(entries, output, epoch, cancel), output)
        except Cancelled:
            staging_dir.result()  # the target dir failed first: its error is the one to report
            raise
        except BaseException:
            cancel.set()
            _discard_quietly(staging_dir)
            raise
        try:
            staged_dir = staging_dir.result()
        except BaseException:
            staged_zip.discard()
            raise
    with staged_zip:
        try:
            swap = _stage(lambda: Swap(staged_dir), target_dir)
        except BaseException:
            staged_dir.discard()
            raise
        try:
            _stage(staged_zip.commit, output)
        except BaseException:
            swap.undo()
            raise
        swap.finish()
    _remove_legacy_manifest(target_dir)
    return result


def _stage_dir(entries: Sequence[Entry], target_dir: Path, cancel: threading.Event) -> Staged:
    try:
        return _stage(lambda: stage_target_dir(entries, target_dir, cancel), target_dir)
    except BaseException:
        cancel.set()  # the ZIP would be discarded: stop writing it
        raise


def _stage(work: Callable[[], T], path: Path) -> T:
    """Run `work`; the operating system's refusals become errors that name `path` and the cause."""
    try:
        return work()
    except OSError as error:
        raise os_error(error, f"write {path}") from None


def _discard_quietly(future: Future[Staged]) -> None:
    """The other output failed first: wait for this one to stop, and remove what it staged."""
    with contextlib.suppress(BaseException):  # Cancelled, or its own failure: not the one to report
        future.result().discard()


def _remove_legacy_manifest(target_dir: Path) -> None:
    """Versions before 0.2 kept a manifest beside the target dir; it describes nothing now."""
    legacy = target_dir.parent / f".{target_dir.name}.manifest.json"
    with contextlib.suppress(OSError):
        legacy.unlink(missing_ok=True)
