"""The function's world as the handler check models it: Lambda's folders, sys.path and variables.

A scratch folder stands for the execution environment's file system: `task/` is /var/task (the
written ZIP, extracted), `opt/` is /opt (the layers, extracted in order, a later one overwriting
an earlier one as Lambda does), `runtime/` is /var/runtime (the runtime's SDK) and `tmp/` is
/tmp. The child interpreter sees those folders on sys.path in Lambda's order, then its own
standard library, and Lambda's environment variables; nothing of this machine's site-packages,
user site, virtualenv or PYTHONPATH. `task/`, `opt/` and `runtime/` are made read-only, as on
Lambda, and being copies they shield the target dir and the project from import-time writes.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.target_dir import MARKER
from poetry_plugin_lambda.zipread import BrokenZip
from poetry_plugin_lambda.zipread import parsing_zip

if TYPE_CHECKING:
    from collections.abc import Iterator
    from collections.abc import Mapping

# What the check sets when your environment does not (documented in docs/checking-handlers.md).
DEFAULT_REGION = "us-east-1"
DEFAULT_MEMORY_SIZE = "128"
ELF_MAGIC = b"\x7fELF"
ELF_MACHINES = {62: "x86_64", 183: "arm64"}
# This machine's interpreter needs its libraries; they go after Lambda's folders.
_HOST_LIBRARY_PATH = "LD_LIBRARY_PATH"


@dataclass(frozen=True)
class LambdaRoot:
    """The scratch stand-in for /var/task, /opt, /var/runtime and /tmp."""

    base: Path

    @property
    def task(self) -> Path:
        return self.base / "task"

    @property
    def opt(self) -> Path:
        return self.base / "opt"

    @property
    def runtime(self) -> Path:
        return self.base / "runtime"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    def create(self) -> LambdaRoot:
        for folder in (self.task, self.opt, self.runtime, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def sys_path(self, python_version: str) -> list[str]:
        """Lambda's order: the function, the layers, the runtime's SDK (the stdlib comes after)."""
        layer = self.opt / "python"
        return [
            str(self.task),
            str(layer),
            str(layer / "lib" / f"python{python_version}" / "site-packages"),
            str(self.runtime),
        ]

    def freeze(self) -> None:
        """Deny writes to the function, layers and SDK, as Lambda's read-only file system does."""
        for top in (self.task, self.opt, self.runtime):
            for path in _walk(top):
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    continue
                path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def thaw(self) -> None:
        """Make the scratch folder removable again."""
        for path in _walk(self.base):
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode):
                path.chmod(mode | stat.S_IWUSR)


def _walk(top: Path) -> Iterator[Path]:
    yield top
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            yield Path(folder) / name


def extract_zip(archive: Path, dest: Path, what: str) -> None:
    """Unzip `archive` into `dest` (member names are sanitised by zipfile: nothing lands outside).

    zipfile writes every member as a plain file (a symlink member too) and inflates no member past
    the size its central directory declares, so no link is made in the scratch and none is
    followed (`add_layer` makes none either). OSError (a full disk, an unreadable file) is left
    to the caller.
    """
    try:
        with parsing_zip(), zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    except BrokenZip as error:
        raise ConfigError(f"{what} {archive} cannot be read as a ZIP: {error}.") from None


def add_layer(layer: Path, opt: Path) -> None:
    """A layer ZIP or a layer's target dir, merged into /opt over the layers before it.

    A folder is copied as plain files and folders (`check_layer_path` refused any link in it
    before bundling; one that appeared since is read, never recreated): a link in /opt would
    let a later layer write through it, outside the scratch.
    """
    if layer.is_dir():
        shutil.copytree(layer, opt, symlinks=False, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
    else:
        extract_zip(layer, opt, "The layer")


def check_layer_path(path: Path, where: str) -> Path:
    """A layer given to the check must be a ZIP or a folder (a layer's target dir)."""
    if path.is_dir():
        _refuse_links(path, where)
        return path
    if not path.is_file():
        what = "is not a file or a folder" if os.path.lexists(path) else "does not exist"
        raise ConfigError(f"{where}: the layer {path} {what}. Give a layer ZIP or a layer's target dir.")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{where}: {path} is not a ZIP. Give a layer ZIP or a layer's target dir.")
    return path


def _refuse_links(layer: Path, where: str) -> None:
    """A layer's target dir holds plain files and folders only; a link in one given to the check
    would be copied into the scratch /opt, where a later layer would write through it."""
    for folder, dirs, files in os.walk(layer):
        for name in (*dirs, *files):
            path = Path(folder) / name
            if path.is_symlink():
                raise ConfigError(
                    f"{where}: the layer folder {layer} holds a symlink ({path}); a layer's target dir"
                    " never does. Give the layer's ZIP or the target dir bundling wrote."
                )


def layer_notes(opt: Path, python_version: str) -> list[str]:
    """What Lambda would not see of the layers: modules outside `python/`."""
    stray = sorted(p.name for p in opt.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists())
    if not stray:
        return []
    return [
        f"the layers hold {', '.join(stray[:3])} outside python/: Lambda does not put them on"
        f" sys.path (only /opt/python and /opt/python/lib/python{python_version}/site-packages)."
    ]


def elf_machines(*tops: Path) -> set[str]:
    """The CPUs of the ELF objects (extensions, shared libraries) under `tops`."""
    found: set[str] = set()
    for top in tops:
        for folder, _dirs, files in os.walk(top):
            for name in files:
                path = Path(folder) / name
                if path.is_symlink():
                    continue
                with path.open("rb") as f:
                    head = f.read(20)
                if head[:4] == ELF_MAGIC and len(head) == 20:
                    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
                    found.add(ELF_MACHINES.get(machine, f"machine {machine}"))
    return found


def lambda_environ(
    root: LambdaRoot,
    runtime_name: str,
    function_name: str,
    handler: str,
    python: Path,
    user_env: Mapping[str, str],
) -> dict[str, str]:
    """Lambda's environment variables, pointing at the scratch folders; no credentials.

    Nothing else of `user_env` passes (no PYTHONPATH, PYTHONHOME, AWS profile or keys), except
    the region (AWS_REGION, AWS_DEFAULT_REGION), AWS_LAMBDA_FUNCTION_NAME and
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE, and the host's library path, which this machine's
    interpreter may need to start.
    """
    region = user_env.get("AWS_REGION") or user_env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    name = user_env.get("AWS_LAMBDA_FUNCTION_NAME") or function_name
    library_path = [
        str(root.runtime), str(root.runtime / "lib"), str(root.task), str(root.task / "lib"),
        str(root.opt / "lib"),
    ]
    if user_env.get(_HOST_LIBRARY_PATH):
        library_path.append(user_env[_HOST_LIBRARY_PATH])
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,  # Lambda sets both to the function's region
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": user_env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or DEFAULT_MEMORY_SIZE,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "handler-check",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime_name}",
        "LAMBDA_TASK_ROOT": str(root.task),
        "LAMBDA_RUNTIME_DIR": str(root.runtime),
        "_HANDLER": handler,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": os.pathsep.join([str(root.opt / "bin"), str(python.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LD_LIBRARY_PATH": os.pathsep.join(library_path),
        "TMPDIR": str(root.tmp),
        "HOME": str(root.tmp),
        # Not Lambda's, but keep this machine's AWS profile and instance metadata out of the check.
        "AWS_CONFIG_FILE": str(root.tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root.tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
