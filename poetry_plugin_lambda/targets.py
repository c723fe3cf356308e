"""The Lambda runtime table and everything derived from a target: tags and marker environment.

A new runtime is one line in `RUNTIMES`. The tag list is what a strict installer for that runtime
accepts (CPython ABI, abi3 of this and older versions, pure Python; manylinux up to the runtime's
glibc plus the legacy aliases), in `packaging.tags` priority order. musllinux, free-threaded ABIs,
`linux_*` host builds, macOS and Windows tags never appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from packaging.tags import Tag
from packaging.tags import compatible_tags
from packaging.tags import cpython_tags

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True)
class Runtime:
    """A Lambda Python runtime: its identifier, CPython version and the glibc of its OS."""

    name: str
    python: tuple[int, int, int]
    glibc: tuple[int, int]
    os: str

    @property
    def python_version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def interpreter(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"


# One line per runtime. The patch version only feeds `python_full_version` markers: Lambda keeps
# runtimes on a recent patch release, so a recent one is closer to the truth than ".0".
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("python3.9", (3, 9, 23), (2, 26), "Amazon Linux 2"),
        Runtime("python3.10", (3, 10, 18), (2, 26), "Amazon Linux 2"),
        Runtime("python3.11", (3, 11, 13), (2, 26), "Amazon Linux 2"),
        Runtime("python3.12", (3, 12, 11), (2, 34), "Amazon Linux 2023"),
        Runtime("python3.13", (3, 13, 5), (2, 34), "Amazon Linux 2023"),
        Runtime("python3.14", (3, 14, 0), (2, 34), "Amazon Linux 2023"),
    )
}

# Python runtimes Lambda has deprecated and this plugin no longer builds for: the date of
# Lambda's deprecation (no more security patches; creating and then updating functions is blocked).
RETIRED_RUNTIMES: dict[str, str] = {
    "python2.7": "2021-07-15",
    "python3.6": "2022-07-18",
    "python3.7": "2023-12-04",
    "python3.8": "2024-10-14",
}

# Lambda's architecture names -> the machine name wheels and markers use.
ARCHITECTURES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
DEFAULT_ARCHITECTURE = "x86_64"

# manylinux's legacy aliases: the glibc version each one stands for.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Target:
    """What a bundle is built for: a runtime and an architecture (Lambda's name)."""

    runtime: Runtime
    architecture: str

    @property
    def machine(self) -> str:
        return ARCHITECTURES[self.architecture]

    def describe(self) -> str:
        return f"{self.runtime.name} {self.architecture}"


def platform_tags(glibc: tuple[int, int], machine: str) -> list[str]:
    """manylinux platform tags from the runtime's glibc down to the oldest for the machine."""
    oldest_minor = 5 if machine == "x86_64" else 17
    tags: list[str] = []
    for minor in range(glibc[1], oldest_minor - 1, -1):
        tags.append(f"manylinux_{glibc[0]}_{minor}_{machine}")
        legacy = _LEGACY_MANYLINUX.get((glibc[0], minor))
        if legacy is not None and (machine == "x86_64" or legacy == "manylinux2014"):
            tags.append(f"{legacy}_{machine}")
    return tags


@cache
def supported_tags(target: Target) -> tuple[Tag, ...]:
    """Every tag the target accepts, most preferred first (the order of `packaging.tags`)."""
    version = target.runtime.python[:2]
    platforms = platform_tags(target.runtime.glibc, target.machine)
    interpreter = target.runtime.interpreter

    def generate() -> Iterator[Tag]:
        yield from cpython_tags(version, abis=[interpreter], platforms=platforms)
        yield from compatible_tags(version, interpreter=interpreter, platforms=platforms)

    return tuple(dict.fromkeys(generate()))


def marker_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values as the target's interpreter reports them (not the host's)."""
    full = ".".join(str(part) for part in target.runtime.python)
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": target.machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": target.runtime.python_version,
        "sys_platform": "linux",
    }


@cache
def tag_priority(target: Target) -> dict[Tag, int]:
    """Tag -> rank (0 is best), for choosing among a release's wheels."""
    return {tag: rank for rank, tag in enumerate(supported_tags(target))}


def wheel_rank(filename: str, target: Target) -> int | None:
    """The rank of the best tag of wheel `filename` for the target, or None if none fits (or the
    name is not a valid wheel file name)."""
    from packaging.utils import InvalidWheelFilename
    from packaging.utils import parse_wheel_filename

    parts = filename[:-4].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return None
    rank = _best_rank("-".join(parts[-3:]), target)  # a lock lists many wheels; few fit
    if rank is None:
        return None
    try:
        parse_wheel_filename(filename)  # the rest of the name is valid too
    except InvalidWheelFilename:
        return None
    return rank


@cache
def _best_rank(tags: str, target: Target) -> int | None:
    """The best rank among a wheel name's (compressed) tag set `tags`, e.g. `cp312-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64`."""
    from packaging.tags import parse_tag

    try:
        parsed = parse_tag(tags)
    except ValueError:  # packaging 26.3+ (`InvalidTag`): not a wheel name's tags
        return None
    priority = tag_priority(target)
    ranks = [priority[tag] for tag in parsed if tag in priority]
    return min(ranks) if ranks else None


def is_pure(wheel: Path) -> bool:
    """True when every tag of the wheel says: no ABI, any platform (it runs on any target)."""
    from packaging.utils import parse_wheel_filename

    tags = parse_wheel_filename(wheel.name)[3]
    return all(tag.abi == "none" and tag.platform == "any" for tag in tags)
