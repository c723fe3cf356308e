"""What poetry.lock says about a package's files: which one fits the target, and its hash.

The lock is the authority: the target's tags choose among the files it lists, and every archive
is checked against the hash it records before anything reads it.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from packaging.utils import parse_wheel_filename

from poetry_plugin_lambda.digests import file_digest
from poetry_plugin_lambda.errors import FetchError
from poetry_plugin_lambda.targets import wheel_rank

if TYPE_CHECKING:
    from pathlib import Path

    from poetry.core.packages.package import Package

    from poetry_plugin_lambda.targets import Target

SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


def verify_hash(archive: Path, package: Package) -> str | None:
    """The archive's hash must be one poetry.lock recorded for that file name.

    Returns the archive's SHA-256 (hex) when that is the hash checked, so nothing hashes the
    verified archive again (`--compile` keys its memos by it); None for another algorithm.
    """
    name = archive.name
    known = [f["hash"] for f in package.files if f.get("file") == name]
    label = f"{package.pretty_name} {package.pretty_version}"
    if not known:
        raise FetchError(
            f"poetry.lock records no hash for {name} ({label}), so it cannot be verified."
            " Run `poetry lock` to record it."
        )
    by_type: dict[str, set[str]] = {}
    for entry in known:
        kind, _, value = entry.partition(":")
        by_type.setdefault(kind, set()).add(value)
    kind = "sha256" if "sha256" in by_type else sorted(by_type)[0]
    if kind not in hashlib.algorithms_available:
        raise FetchError(f"poetry.lock records only {kind or 'unnamed'} hashes for {name}; cannot verify it.")
    actual = file_digest(archive, kind)
    if actual not in by_type[kind]:
        expected = ", ".join(f"{kind}:{v}" for v in sorted(by_type[kind]))
        if package.source_type in ("file", "directory"):  # the user's own file, not a download
            fix = f"{archive} changed after locking: if the change is meant, run `poetry lock`."
        else:
            fix = f"The file changed after locking or the cache is corrupt: delete {archive} or run `poetry lock`."
        raise FetchError(
            f"Hash mismatch for {label}: {archive} has {kind}:{actual}, but poetry.lock expects {expected}. {fix}"
        )
    return actual if kind == "sha256" else None


def locked_sha256(package: Package, filename: str) -> str | None:
    """The sha256 the lock records for `filename`, if any."""
    for entry in package.files:
        if entry.get("file") == filename and str(entry.get("hash", "")).startswith("sha256:"):
            return str(entry["hash"]).split(":", 1)[1]
    return None


def matches_lock(archive: Path, package: Package) -> tuple[bool, str | None]:
    """(the archive matches the lock, its SHA-256 when that is the hash checked)."""
    try:
        return True, verify_hash(archive, package)
    except FetchError:
        return False, None


def wheel_tags(package: Package) -> list[str]:
    tags: list[str] = []
    for f in package.files:
        name = f.get("file", "")
        if name.endswith(".whl"):
            try:
                tags.extend(str(t) for t in parse_wheel_filename(name)[3])
            except ValueError:
                continue
    return sorted(set(tags))


def choose_locked_file(
    package: Package, target: Target, wheels: bool = True, sdists: bool = True
) -> str:
    """The locked wheel with the target's best tag (the order of `packaging.tags`), else an sdist.

    `wheels` and `sdists` say what Poetry's `installer.no-binary` and `installer.only-binary`
    allow for this package (`compat.binary_policy`), as `poetry install` applies them.
    """
    ranked = []
    for entry in package.files:
        name = entry.get("file", "")
        rank = wheel_rank(name, target) if name.endswith(".whl") else None
        if rank is not None:
            ranked.append((rank, name))
    if ranked and wheels:
        return min(ranked)[1]
    sdists_locked = sorted(f["file"] for f in package.files if f.get("file", "").endswith(SDIST_SUFFIXES))
    label = f"{package.pretty_name} {package.pretty_version}"
    if sdists_locked and not sdists:
        raise FetchError(
            f"No wheel of {label} fits {target.describe()}, and Poetry's installer.only-binary"
            f" setting forbids building {package.pretty_name} from its source archive"
            f" {sdists_locked[0]}. Pin a version that publishes wheels for this target, or allow"
            f" the build: remove {package.pretty_name} (or :all:) from installer.only-binary"
            " (`poetry config installer.only-binary`, POETRY_INSTALLER_ONLY_BINARY)."
        )
    if sdists_locked:
        return sdists_locked[0]
    if ranked:
        raise FetchError(
            f"Poetry's installer.no-binary setting names {package.pretty_name}, but poetry.lock"
            f" lists no source archive of {label} to build. Remove {package.pretty_name} from"
            " installer.no-binary (`poetry config installer.no-binary`,"
            " POETRY_INSTALLER_NO_BINARY), or pin a version that publishes an sdist."
        )
    raise no_wheel_error(package, target, "and no source archive to build")


def no_wheel_error(package: Package, target: Target, cause: str) -> FetchError:
    """No locked wheel fits: the tags the lock has (the target's Python and architecture first),
    and, when its wheels for them only need a newer glibc than the runtime's, that."""
    tags = sorted(wheel_tags(package), key=lambda t: (not _near(t, target), t))
    shown = ", ".join(tags[:12]) + (" …" if len(tags) > 12 else "") if tags else "none"
    glibc = _glibc_needed(tags, target)
    newer = (
        f" Its wheels for {target.describe()} need glibc {glibc[0]}.{glibc[1]} or newer"
        f" (manylinux_{glibc[0]}_{glibc[1]}); the {target.runtime.name} runtime has glibc"
        f" {target.runtime.glibc[0]}.{target.runtime.glibc[1]}."
        if glibc else ""
    )
    return FetchError(
        f"No wheel of {package.pretty_name} {package.pretty_version} fits {target.describe()}"
        f" ({cause}). Wheel tags in the lock: {shown}.{newer} Pin a version that publishes wheels for"
        " this target, or choose another runtime or architecture (or build the wheel in a Linux"
        " image for the runtime and depend on it as a file)."
    )


def _near(tag: str, target: Target) -> bool:
    """A tag for the target's CPython (or the stable ABI, or any Python) on Linux for its
    architecture, or for any platform."""
    interpreter, abi, platform = tag.split("-", 2)
    python = interpreter in (target.runtime.interpreter, "py3") or (abi == "abi3" and interpreter.startswith("cp3"))
    return python and (platform == "any" or ("linux" in platform and platform.endswith(target.machine)))


def _glibc_needed(tags: list[str], target: Target) -> tuple[int, int] | None:
    """The oldest glibc the lock's manylinux wheels for the target's Python and architecture
    need, when that is newer than the runtime's (None otherwise)."""
    needed = []
    for tag in tags:
        if not _near(tag, target):
            continue
        match = _MANYLINUX.fullmatch(tag.split("-", 2)[2])
        if match and match.group(3) == target.machine:
            needed.append((int(match.group(1)), int(match.group(2))))
    oldest = min(needed, default=None)
    return oldest if oldest is not None and oldest > target.runtime.glibc else None


_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
