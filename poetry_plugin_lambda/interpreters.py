"""Find a CPython of the target's minor version on this machine (for --compile, --check-handler).

Never another minor version: bytecode's magic number and a handler check are only meaningful
for the exact `python3.X` the Lambda runtime runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

_PROBE = "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])"


def interpreter_version(python: Path) -> str | None:
    """'3.12' for a CPython 3.12 executable, None for anything else (or nothing runnable)."""
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", _PROBE],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0] != "cpython":
        return None
    return parts[1]


def candidates(version: str) -> list[Path]:
    """Where a `python3.X` may live: PATH, pyenv, uv's managed Pythons (then the project's env)."""
    found: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    uv_dir = os.environ.get("UV_PYTHON_INSTALL_DIR") or Path(
        os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    ) / "uv" / "python"
    found += sorted(Path(uv_dir).glob(f"cpython-{version}.*/bin/python{version}"), reverse=True)
    return found


def find_interpreter(version: str, project_python: Callable[[], Path | None] | None = None) -> Path | None:
    """The first candidate that really is CPython `version`, else the project's env's Python.

    Finding the project's env costs Poetry a few hundred milliseconds, so `project_python` is a
    function, called only when no other place has the version.
    """
    for candidate in candidates(version):
        if candidate.exists() and interpreter_version(candidate) == version:
            return candidate
    last = project_python() if project_python is not None else None
    if last is not None and last.exists() and interpreter_version(last) == version:
        return last
    return None


def require_interpreter(
    version: str, explicit: Path | None, why: str, project_python: Callable[[], Path | None] | None = None
) -> Path:
    """An interpreter for `why`, or an error that says which version is needed and how to get one."""
    if explicit is not None:
        actual = interpreter_version(explicit)
        if actual != version:
            what = f"CPython {actual}" if actual else "not a CPython interpreter that runs here"
            raise ConfigError(
                f"--compile-with {explicit} is {what}; {why} needs CPython {version}, the"
                " target runtime's version."
            )
        return explicit
    found = find_interpreter(version, project_python)
    if found is None:
        raise ConfigError(
            f"{why} needs a CPython {version} interpreter (the target runtime's version), and"
            f" none was found (looked for python{version} on PATH, in pyenv and in uv's managed"
            f" Pythons). Install one (e.g. `uv python install {version}` or"
            f" `pyenv install {version}`) or pass --compile-with /path/to/python{version}."
        )
    return found
