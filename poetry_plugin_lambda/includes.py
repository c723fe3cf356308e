"""`include`: project files outside any package (a root lambda_function.py, config/, SQL files).

Globs are relative to the project root and copied to the same relative paths in the bundle.
A pattern starting with `!` removes what earlier patterns matched. Wildcards never pick up
VCS internals, bytecode, git-ignored files or the plugin's own outputs; a pattern that matches
nothing is an error, so a typo cannot silently ship a bundle without its handler.
"""

from __future__ import annotations

import subprocess
from fnmatch import fnmatchcase
from pathlib import Path
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Sequence

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
_GLOB_CHARS = frozenset("*?[")


def check_pattern(pattern: str) -> str:
    """Refuse patterns that point outside the project."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    path = PurePosixPath(body.replace("\\", "/"))
    if not body or path.is_absolute() or ".." in path.parts or (body[1:2] == ":"):
        raise ConfigError(f"include pattern {pattern!r} must be a relative path inside the project.")
    return pattern


def _skipped(rel: str) -> bool:
    parts = rel.split("/")
    return bool(VCS_DIRS.intersection(parts)) or "__pycache__" in parts or rel.endswith((".pyc", ".pyo"))


def _git_ignored(root: Path, paths: list[str]) -> set[str]:
    """The subset of `paths` that git ignores (empty when this is not a git checkout)."""
    if not paths:
        return set()
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "--no-index", "--stdin", "-z"],
            input="\0".join(paths) + "\0", capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if result.returncode not in (0, 1):  # 128: not a repository
        return set()
    return {p for p in result.stdout.split("\0") if p}


def _matches(root: Path, pattern: str, outputs: Iterable[Path]) -> list[str]:
    wildcard = bool(_GLOB_CHARS.intersection(pattern))
    found = []
    try:
        hits = list(root.glob(pattern))
    except (ValueError, NotImplementedError) as error:
        raise ConfigError(f"include pattern {pattern!r} is not a valid glob: {error}.") from None
    for path in hits:
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if wildcard and (_skipped(rel) or any(_inside(path, o) for o in outputs)):
            continue
        found.append(rel)
    if wildcard:
        ignored = _git_ignored(root, found)
        found = [f for f in found if f not in ignored]
    return sorted(found)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve() == folder or folder in path.resolve().parents


def project_files(
    root: Path, patterns: Sequence[str], owner: str, outputs: Sequence[Path] = ()
) -> list[Entry]:
    """The files `patterns` select under `root`, as bundle entries at the same relative paths."""
    selected: dict[str, None] = {}
    for pattern in patterns:
        check_pattern(pattern)
        if pattern.startswith("!"):
            for rel in [r for r in selected if fnmatchcase(r, pattern[1:])]:
                del selected[rel]
            continue
        hits = _matches(root, pattern, outputs)
        if not hits:
            raise ConfigError(
                f"include pattern {pattern!r} matches no file under {root}"
                " (VCS folders, bytecode and git-ignored files are never picked up by wildcards)."
            )
        selected.update(dict.fromkeys(hits))
    entries = []
    for rel in sorted(selected):
        path = root / rel
        mode = path.stat().st_mode
        entries.append(Entry(
            path=rel, owner=f"{owner} (include)", size=path.stat().st_size,
            executable=bool(mode & 0o111), file=path,
        ))
    return entries
