"""`include`: project files outside any package (a root lambda_function.py, config/, SQL files).

Patterns are relative to the project root and work like Poetry's own `include`: a folder's name
takes its files recursively, `*` and `?` stay inside one path segment, `**` spans folders
(`config/**`, `**/*.json`). We walk the tree ourselves and match with one segment matcher, so a
pattern selects the same files on every Python Poetry runs on (`Path.glob` changed in 3.13).
A pattern starting with `!` removes what earlier patterns matched.

Files are copied to the same relative paths in the bundle. Wildcards never pick up VCS internals,
bytecode or git-ignored files; the plugin's own output files are never picked up; a symlink is
followed only while it stays inside the project (one leading out is an error naming it); a
pattern that matches nothing is an error, so a typo cannot silently ship a bundle without its
handler.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.atomic import scratch_folder
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.target_dir import MARKER

if TYPE_CHECKING:
    from collections.abc import Iterator
    from collections.abc import Sequence

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
_NEVER_ENTERED = VCS_DIRS | {"__pycache__"}
_GLOB_CHARS = frozenset("*?[")

Segments = tuple[str, ...]


def check_pattern(pattern: str) -> str:
    """Refuse patterns that point outside the project."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    path = PurePosixPath(body.replace("\\", "/"))
    if not body or path.is_absolute() or ".." in path.parts or (body[1:2] == ":"):
        raise ConfigError(f"include pattern {pattern!r} must be a relative path inside the project.")
    return pattern


# -- matching: one implementation, the same on every Python ---------------------------------------


def segments(pattern: str) -> Segments:
    """`pattern` split into path segments (`./`, empty segments and a trailing `/` dropped)."""
    return tuple(part for part in pattern.replace("\\", "/").split("/") if part not in ("", "."))


def matches(pattern: Segments, parts: Segments) -> bool:
    """Whether the whole path `parts` matches; `**` stands for zero or more folders."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(matches(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and matches(rest, parts[1:])


def selects(pattern: Segments, parts: Segments) -> bool:
    """Whether the file `parts` is selected: it matches, or lies in a folder that matches."""
    return any(matches(pattern, parts[:end]) for end in range(len(parts), -1, -1))


def may_hold(pattern: Segments, folder: Segments) -> bool:
    """Whether something inside `folder` could be selected (so the walk must enter it)."""
    if not folder:
        return True
    if not pattern:
        return False
    if pattern[0] == "**":
        return True
    return fnmatchcase(folder[0], pattern[0]) and may_hold(pattern[1:], folder[1:])


# -- walking: our own, never leaving the project through a symlink ---------------------------------


def _named_inside(pattern: Segments, folder: Segments) -> bool:
    """Whether a pattern without wildcards names a file inside `folder` (taken as is)."""
    literal = not any(_GLOB_CHARS.intersection(part) for part in pattern)
    return literal and len(pattern) > len(folder) and pattern[: len(folder)] == folder


@dataclass(frozen=True)
class Found:
    """A file the walk found: its path under the project, the real file, or where a link escapes to."""

    rel: str
    real: Path
    escapes: bool = False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(
    root: str, folder: str, parts: Segments, pattern: Segments, prune: frozenset[str], chain: frozenset[str]
) -> Iterator[Found]:
    """Files under the real folder `folder` the pattern may select; symlinks followed only inside `root`."""
    try:
        listing = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:  # a folder the pattern reaches: what it holds cannot be left out unsaid
        shown = "/".join(parts) or "."
        raise ConfigError(
            f"include cannot read the folder {shown} ({error.strerror}), which a pattern reaches: make it"
            " readable, or narrow the pattern so that it does not reach that folder."
        ) from None
    for entry in listing:
        sub = (*parts, entry.name)
        link = entry.is_symlink()
        real = os.path.realpath(entry.path) if link else entry.path
        if link and not _inside(real, root):
            if selects(pattern, sub) or (os.path.isdir(real) and may_hold(pattern, sub)):
                yield Found("/".join(sub), Path(real), escapes=True)
            continue
        if os.path.isdir(real) if link else entry.is_dir(follow_symlinks=False):
            if entry.name in _NEVER_ENTERED and not _named_inside(pattern, sub):
                continue  # .git holds thousands of files no wildcard may pick up
            if real in prune or real in chain or not (selects(pattern, sub) or may_hold(pattern, sub)):
                continue
            if not os.path.isfile(os.path.join(real, MARKER)):  # a target dir, of any bundle or run
                yield from _walk(root, real, sub, pattern, prune, chain | {real})
        elif (os.path.isfile(real) if link else entry.is_file(follow_symlinks=False)) and selects(pattern, sub):
            yield Found("/".join(sub), Path(real))


# -- selection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """The outputs of every bundle of the run (ZIPs and target dirs), which `include` never picks
    up (their folders' other files it may); nor any folder holding a target dir's marker."""

    zips: tuple[Path, ...] = ()
    target_dirs: tuple[Path, ...] = ()

    def prune(self) -> frozenset[str]:
        return frozenset(os.path.realpath(folder) for folder in self.target_dirs)

    def owns(self, real: Path) -> bool:
        """`real` is an output, a temporary of one (see `atomic`), or inside a target dir or one
        of its temporaries (a killed run's staging folder among them)."""
        for final in (*self.zips, *self.target_dirs):
            final = Path(os.path.realpath(final))
            for part in (real, *real.parents):
                if part == final or (part.parent == final.parent and _temporary_of(part.name, final.name)):
                    return True
        return False


def _temporary_of(name: str, final: str) -> bool:
    """A temporary of `final` (`atomic.temp_prefix`), or the manifest versions before 0.2 kept."""
    return name.startswith((f".{final}.tmp-", f".{final}.new-")) or name == f".{final}.manifest.json"


def _skipped(rel: str) -> bool:
    parts = rel.split("/")
    return bool(VCS_DIRS.intersection(parts)) or "__pycache__" in parts or rel.endswith((".pyc", ".pyo"))


def _git_ignored(root: Path, paths: list[str]) -> set[str]:
    """The subset of `paths` that the project's git ignore rules ignore.

    The rules are those of the checkout (its `.gitignore` files, `.git/info/exclude`), never the
    user's global excludes file (`core.excludesFile`): the same checkout bundles the same files
    whoever builds it. A copy without `.git` (a CI artifact, a Docker context) still obeys its
    `.gitignore` files, read through an empty scratch repository. When git cannot be run and
    ignore rules exist, the files are not shipped unchecked: that is an error. Names go to git as
    the bytes on disk, so one that is not valid UTF-8 is asked about too (`_check_storable` then
    says why it cannot ship, unless git ignores it).
    """
    if not paths:
        return set()
    names = b"".join(os.fsencode(p) + b"\0" for p in paths)
    ask = ["-c", "core.excludesFile=", "check-ignore", "--no-index", "--stdin", "-z"]
    try:
        result = _git(["-C", str(root), *ask], names)
        if result.returncode == 128 and _has_ignore_files(root, paths):  # not a repository
            with scratch_folder("lambda-bundle-git") as scratch:
                _git(["init", "-q", "--bare", str(scratch.path)], b"")
                result = _git([f"--git-dir={scratch.path}", f"--work-tree={root}", *ask], names)
    except (OSError, subprocess.SubprocessError) as error:
        if not _has_ignore_files(root, paths):
            return set()
        raise ConfigError(
            f"include's wildcards leave out git-ignored files, and {root} has ignore rules, but git"
            f" cannot be run here ({error}). Install git, or name each file to ship exactly in include."
        ) from None
    if result.returncode not in (0, 1):
        return set()
    return {os.fsdecode(p) for p in result.stdout.split(b"\0") if p}


def _git(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], input=stdin, capture_output=True, timeout=60, check=False)


def _has_ignore_files(root: Path, paths: list[str]) -> bool:
    """Whether git ignore rules could apply: a `.gitignore` in the project or in a folder of
    `paths`, or the project inside a git checkout."""
    folders = {root} | {root / PurePosixPath(p).parent for p in paths}
    if any((folder / ".gitignore").is_file() for folder in folders):
        return True
    return any((folder / ".git").exists() for folder in (root, *root.parents))


def _check_readable(rel: str, real: Path) -> None:
    """Said here, naming the file: later, reading it fails while the ZIP is being written."""
    try:
        with real.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(
            f"include cannot read {rel} ({error.strerror}): make it readable, or leave it out with"
            f" '!{rel}' in include."
        ) from None


def _check_storable(rel: str) -> None:
    """A ZIP names its members in UTF-8: a file whose name is not (Python keeps its bytes as
    surrogates) cannot ship under that name."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
        raise ConfigError(
            f"include would ship {shown}, whose name is not valid UTF-8: a ZIP cannot hold it. Rename"
            " the file, or leave it out with a '!' pattern in include."
        ) from None


def _hits(root: Path, pattern: str, outputs: Outputs) -> list[Found]:
    """What one pattern selects. A file named exactly is taken as is; the rest follow the filters."""
    segs = segments(pattern)
    real_root = os.path.realpath(root)
    named = "/".join(segs) if not _GLOB_CHARS.intersection(pattern) else None
    found = list(_walk(real_root, real_root, (), segs, outputs.prune(), frozenset({real_root})))
    kept = [f for f in found if f.rel == named or not _skipped(f.rel)]
    ignored = _git_ignored(root, [f.rel for f in kept if f.rel != named])
    return [f for f in kept if f.rel not in ignored and (f.escapes or not outputs.owns(f.real))]


def project_files(
    root: Path, patterns: Sequence[str], owner: str, outputs: Outputs | None = None
) -> list[Entry]:
    """The files `patterns` select under `root`, as bundle entries at the same relative paths."""
    outputs = outputs or Outputs()
    selected: dict[str, Found] = {}
    for pattern in patterns:
        check_pattern(pattern)
        if pattern.startswith("!"):
            negated = segments(pattern[1:])
            for rel in [r for r in selected if selects(negated, tuple(r.split("/")))]:
                del selected[rel]
            continue
        hits = _hits(root, pattern, outputs)
        if not hits:
            raise ConfigError(
                f"include pattern {pattern!r} matches no file under {root}"
                " (VCS folders, bytecode, git-ignored files and the plugin's own outputs are never"
                " picked up by wildcards)."
            )
        selected.update((f.rel, f) for f in hits)
    escaping = [f for f in selected.values() if f.escapes]
    if escaping:
        first = escaping[0]
        raise ConfigError(
            f"include would ship {first.rel}, a symlink to {first.real}, which is outside the project"
            f" {root}. Copy what the function needs into the project, or leave the link out with"
            f" '!{first.rel}' in include."
        )
    entries = []
    for rel in sorted(selected):
        _check_storable(rel)
        _check_readable(rel, selected[rel].real)
        stat = selected[rel].real.stat()
        entries.append(Entry(
            path=rel, owner=f"{owner} (include)", size=stat.st_size,
            executable=bool(stat.st_mode & 0o111), file=selected[rel].real,
        ))
    return entries
