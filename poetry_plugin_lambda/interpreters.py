"""Find a CPython of the target's minor version on this machine (for --compile, --check-handler).

Never another minor version: bytecode's magic number and a handler check are only meaningful
for the exact `python3.X` the Lambda runtime runs. For the handler check, a virtualenv's
interpreter is replaced by its base interpreter: the check must not see what a venv installed.

Why not `findpython` (a Poetry dependency): it runs every interpreter it finds to learn its
version (6.5 s here, for three pyenv links), where we look only where `python3.X` of one version
can be and ask one candidate at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
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


def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def managed(version: str) -> list[Path]:
    """The `python3.X` interpreters pyenv and uv installed, newest patch release first."""
    found = sorted(_pyenv_root().glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    uv_dir = os.environ.get("UV_PYTHON_INSTALL_DIR") or Path(
        os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    ) / "uv" / "python"
    return found + sorted(Path(uv_dir).glob(f"cpython-{version}.*/bin/python{version}"), reverse=True)


def candidates(version: str) -> list[Path]:
    """Where a `python3.X` may live: PATH, pyenv, uv's managed Pythons (then the project's env)."""
    found: list[Path] = []
    on_path = _on_path(f"python{version}")
    if on_path:
        found.append(on_path)
    found += managed(version)
    return found


def _on_path(name: str) -> Path | None:
    """The first `name` on PATH that is not a pyenv shim: a shim starts a shell script that may
    only say the version is not selected (0.15 s), and pyenv's versions are looked at anyway."""
    shims = (_pyenv_root() / "shims").resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or Path(folder).resolve() == shims:
            continue
        found = shutil.which(name, path=folder)
        if found:
            return Path(found)
    return None


def find_interpreter(
    version: str,
    project_python: Callable[[], Path | None] | None = None,
    version_of: Callable[[Path], str | None] = interpreter_version,
) -> Path | None:
    """The first candidate that really is CPython `version` (`version_of` says), else the
    project's env's Python.

    Finding the project's env costs Poetry a few hundred milliseconds, so `project_python` is a
    function, called only when no other place has the version.
    """
    for candidate in candidates(version):
        if candidate.exists() and version_of(candidate) == version:
            return candidate
    last = project_python() if project_python is not None else None
    if last is not None and last.exists() and version_of(last) == version:
        return last
    return None


def require_interpreter(
    version: str,
    explicit: Path | None,
    why: str,
    project_python: Callable[[], Path | None] | None = None,
    version_of: Callable[[Path], str | None] = interpreter_version,
) -> Path:
    """An interpreter for `why`, or an error that says which version is needed and how to get one.
    `version_of` answers for each interpreter looked at (by default, by running it)."""
    if explicit is not None:
        actual = version_of(explicit)
        if actual != version:
            what = f"CPython {actual}" if actual else "not a CPython interpreter that runs here"
            raise ConfigError(
                f"--compile-with {explicit} is {what}; {why} needs CPython {version}, the"
                " target runtime's version."
            )
        return explicit
    found = find_interpreter(version, project_python, version_of)
    if found is None:
        raise ConfigError(
            f"{why} needs a CPython {version} interpreter (the target runtime's version), and"
            f" none was found (looked for python{version} on PATH, in pyenv and in uv's managed"
            f" Pythons). Install one (e.g. `uv python install {version}` or"
            f" `pyenv install {version}`) or pass --compile-with /path/to/python{version}."
        )
    return found


_DESCRIBE = (
    "import json, platform, sys; print(json.dumps({'implementation': sys.implementation.name,"
    " 'version': '%d.%d' % sys.version_info[:2], 'executable': sys.executable,"
    " 'prefix': sys.prefix, 'base_prefix': sys.base_prefix,"
    " 'base_executable': getattr(sys, '_base_executable', sys.executable),"
    " 'machine': platform.machine()}))"
)


@dataclass(frozen=True)
class Interpreter:
    """What a probe learnt of one interpreter: the real executable (not a shim) and its CPU."""

    executable: Path
    version: str
    machine: str
    is_venv: bool
    base_candidates: tuple[Path, ...]


def describe(python: Path) -> Interpreter | None:
    """Run `python` once (site enabled, so a venv shows itself); None if it is not CPython."""
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", _DESCRIBE],
            capture_output=True, text=True, timeout=30, check=False,
        )
        facts = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if out.returncode != 0 or facts.get("implementation") != "cpython" or not facts.get("executable"):
        return None
    version = str(facts["version"])
    executable = Path(facts["executable"])
    is_venv = facts["prefix"] != facts["base_prefix"]
    base = Path(facts["base_prefix"]) / "bin"
    candidates = [Path(facts["base_executable"]), base / f"python{version}", base / "python3"]
    return Interpreter(
        executable=executable,
        version=version,
        machine=str(facts.get("machine", "")),
        is_venv=is_venv,
        base_candidates=tuple(c for c in candidates if c != executable),
    )


def base_interpreter(python: Path, version: str | None = None) -> Interpreter | None:
    """`python` itself, or for a virtualenv's interpreter, the base interpreter it was made from.

    None when `python` is not CPython (of `version`, when given) or its base cannot be found.
    """
    found = describe(python)
    if found is None or (version is not None and found.version != version):
        return None
    if not found.is_venv:
        return found
    for candidate in found.base_candidates:
        if candidate.exists():
            base = describe(candidate)
            if base is not None and not base.is_venv and base.version == found.version:
                return base
    return None


def check_candidates(version: str, preferred: list[Path], fallback: list[Path]) -> list[Path]:
    """Where to look for the check's interpreter: `preferred`, pyenv, uv, the system, PATH, `fallback`.

    Installed interpreters come before PATH, where an activated virtualenv would come first.
    """
    found = list(preferred)
    found += managed(version)
    found += [Path(f"/usr/local/bin/python{version}"), Path(f"/usr/bin/python{version}")]
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    return found + fallback


def find_check_interpreter(
    version: str, preferred: list[Path], fallback: list[Path] | None = None
) -> Interpreter | None:
    """A CPython `version` for the handler check, never a virtualenv's (its base instead)."""
    seen: set[Path] = set()
    for candidate in check_candidates(version, preferred, fallback or []):
        if candidate in seen or not candidate.exists():
            continue
        seen.add(candidate)
        found = base_interpreter(candidate, version)
        if found is not None:
            return found
    return None
