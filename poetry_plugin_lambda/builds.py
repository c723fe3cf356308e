"""Packages that come as source -> pure-Python wheels: sdists, path and git dependencies.

The host's Python runs every build, so only a pure wheel (`py3-none-any`) is accepted: a wheel
for this machine would not run on Lambda. Wheels built from a hash-checked sdist or a locked git
commit are cached in Poetry's cache beside their source, as Poetry caches its own builds.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Protocol

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.atomic import copy_atomic
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import FetchError
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.errors import cause_line
from poetry_plugin_lambda.errors import first_line
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import redact_url
from poetry_plugin_lambda.locked_files import no_wheel_error
from poetry_plugin_lambda.locked_files import verify_hash
from poetry_plugin_lambda.targets import is_pure
from poetry_plugin_lambda.targets import wheel_rank
from poetry_plugin_lambda.wheels import check_built_wheel
from poetry_plugin_lambda.wheels import required_names
from poetry_plugin_lambda.wheels import same_version

if TYPE_CHECKING:
    from collections.abc import Callable

    from poetry.core.packages.package import Package
    from poetry.poetry import Poetry

    from poetry_plugin_lambda.targets import Target


class Progress(Protocol):
    def line(self, message: str) -> None: ...


def label_of(package: Package) -> str:
    return f"{package.pretty_name} ({package.pretty_version})"


class Builder:
    """Builds one target's source packages through one Poetry project's pool and cache."""

    def __init__(
        self, poetry: Poetry, target: Target, progress: Progress, scratch: Path,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._poetry = poetry
        self._target = target
        self._progress = progress
        self._scratch = scratch
        self._log = log  # where build tools' own output goes (shown with -v)

    def _cached_build(self, folder: Path) -> Path | None:
        """An earlier build kept in the cache, checked as a fresh one is (no lock hash vouches for
        it): one that no longer matches its RECORD (truncated, a flipped bit) is removed and the
        package built again."""
        for built in sorted(folder.glob("*.whl")):
            if is_pure(built) and wheel_rank(built.name, self._target) is not None:
                try:
                    check_built_wheel(built)
                except WheelError:
                    _remove(built)
                    continue
                return built
        return None

    def from_sdist(self, package: Package, sdist: Path, why: str) -> Path:
        """Build a (hash-checked) sdist once, and cache the wheel beside it (as Poetry does);
        `why` says why the sdist, not a wheel (shown while it builds).

        Only a pure wheel can be used; a build that gave a wheel for this machine is kept too, so
        the next run says so at once instead of building again (minutes, for numpy)."""
        cached = self._cached_build(sdist.parent)
        if cached is not None:
            return cached
        for built in sorted(sdist.parent.glob(f"{package.name.replace('-', '_')}-*.whl")):
            if not is_pure(built) and _built_by_this_python(built):
                raise no_wheel_error(
                    package, self._target,
                    f"an earlier build of {sdist.name} gave {built.name}, a wheel for this machine, not"
                    f" a pure-Python one; that build is kept in Poetry's cache as {built}: delete it to"
                    " build again",
                )
        wheel = self._build(package, sdist, f" ({why}; only a pure-Python result can be used)")
        if not self._fits(wheel):
            _cache_copy(wheel, sdist.parent / wheel.name)  # the next run refuses at once
        return _cache_copy(self._checked(package, sdist, wheel), sdist.parent / wheel.name)

    def from_git(self, package: Package, listed: frozenset[str] | None = None) -> Path:
        """The lock's resolved commit, cloned and built (pure only); the wheel cached per commit."""
        assert package.source_url is not None
        revision = package.source_resolved_reference or package.source_reference
        if not revision:
            raise FetchError(f"{package.pretty_name}: poetry.lock names no git revision; run `poetry lock`.")
        url = package.source_url
        cache = compat.git_cache_dir(self._poetry.pool, url, revision, package.source_subdirectory)
        cached = self._cached_build(cache)
        if cached is not None:
            return cached
        label = label_of(package)
        self._progress.line(f"  - Cloning <c1>{label}</> at {revision[:12]}")
        try:
            checkout = compat.git_checkout(url, revision, self._scratch / "git" / package.name)
        except Exception as error:
            raise FetchError(
                f"Could not clone {label} from {redact_url(url)} at {revision}: {first_line(error)}"
            ) from None
        source = checkout / package.source_subdirectory if package.source_subdirectory else checkout
        wheel = self.build(package, source, listed)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            return wheel
        return _cache_copy(wheel, cache / wheel.name)

    def local_path(self, package: Package) -> Path:
        """A path dependency's location, relative paths taken from the project that names it."""
        assert package.source_url is not None
        path = Path(package.source_url)
        if not path.is_absolute():
            path = (package.root_dir or self._poetry.pyproject_path.parent) / path
        if package.source_subdirectory:
            path = path / package.source_subdirectory
        return path.resolve()

    def from_directory(self, package: Package, listed: frozenset[str] | None = None) -> Path:
        """A path dependency to a project: built into a real wheel, never an editable one."""
        path = self.local_path(package)
        if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file():
            raise FetchError(f"{package.pretty_name}: {path} is not a Python project to build.")
        return self.build(package, path, listed)

    def from_file(self, package: Package, listed: frozenset[str] | None = None) -> Path:
        """A path dependency to a wheel (used as is) or an sdist (built), both hash-checked."""
        path = self.local_path(package)
        if not path.is_file():
            raise FetchError(f"{package.pretty_name}: the file {path} named in poetry.lock is missing.")
        verify_hash(path, package)
        if path.suffix == ".whl":
            if wheel_rank(path.name, self._target) is None:
                raise no_wheel_error(package, self._target, f"{path.name} is for another platform")
            return path
        return self.build(package, path, listed)

    def build(self, package: Package, source: Path, listed: frozenset[str] | None = None) -> Path:
        """Build a source tree or sdist for the target: only a pure-Python wheel is accepted, and
        only as the package poetry.lock describes (its version; with `listed`, the names its lock
        entry lists as requirements, no other)."""
        wheel = self._checked(package, source, self._build(package, source))
        _check_as_locked(package, source, wheel, listed)
        return wheel

    def _fits(self, wheel: Path) -> bool:
        return is_pure(wheel) and wheel_rank(wheel.name, self._target) is not None

    def _checked(self, package: Package, source: Path, wheel: Path) -> Path:
        """A built wheel, if pure and its RECORD holds (no lock hash vouches for it)."""
        if not self._fits(wheel):
            raise no_wheel_error(
                package,
                self._target,
                f"building {source.name} gave {wheel.name}, a wheel for this machine, not a"
                " pure-Python one",
            )
        check_built_wheel(wheel)
        return wheel

    def _build(self, package: Package, source: Path, why: str = "") -> Path:
        """The wheel a source tree or sdist builds into (whatever its tags)."""
        label = label_of(package)
        self._progress.line(f"  - Building <c1>{label}</> from {source.name}{why}")
        out = self._scratch / f"build-{package.name}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir() and compat.build_backend(source) == "poetry.core.masonry.api":
                wheel = compat.build_wheel_of(source, out)  # in process: fast, offline
            else:
                wheel = compat.build_isolated(self._poetry.pool, source, out, log=self._log)
        except BundleError:
            raise
        except Exception as error:
            hint = ""
            if "installer.no-binary" in str(error):
                hint = (
                    " Poetry's installer.no-binary setting applies to build requirements too:"
                    " name packages in it instead of :all:."
                )
            output = compat.build_output(error)
            if output and self._log is not None:
                self._log(redact(output))  # the build's whole output, shown with -v
            cause = cause_line(output or "") or first_line(error)
            raise FetchError(f"Building {label} from {redact(str(source))} failed: {cause}{hint}") from None
        return wheel


def _remove(path: Path) -> None:
    """A damaged cached build (a file, or anything else under its name); best effort."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _built_by_this_python(wheel: Path) -> bool:
    """The (non-pure) wheel was built by the Python that runs builds here: building the same
    sdist again would give it again."""
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"-{tag}-" in wheel.name


def _cache_copy(wheel: Path, final: Path) -> Path:
    """The wheel copied into the cache (atomically); a read-only cache only costs a rebuild next
    time: the scratch wheel is used instead."""
    try:
        copy_atomic(wheel, final)
    except OSError:
        return wheel
    return final


def _check_as_locked(package: Package, source: Path, wheel: Path, listed: frozenset[str] | None) -> None:
    """A path (or git) dependency's build is the package poetry.lock describes: its version, and
    no requirement the lock does not list for it. Poetry's lock check covers only the project's
    own pyproject.toml, so a path dependency edited since the lock was written would otherwise
    ship its new version without its new requirements: a function that fails at import."""
    from packaging.utils import InvalidWheelFilename
    from packaging.utils import canonicalize_name
    from packaging.utils import parse_wheel_filename

    label = label_of(package)
    advice = "its source changed since poetry.lock was written. Run `poetry lock` to lock it again."
    try:
        built = str(parse_wheel_filename(wheel.name)[1])
    except InvalidWheelFilename:
        built = package.version.text  # a name no installer takes is refused when it is read
    if not same_version(built, package.version.text):
        raise FetchError(f"{label} was built from {source} as version {built}, not the locked {package.pretty_version}: {advice}")
    if listed is None:
        return
    new = sorted(required_names(wheel) - {canonicalize_name(n) for n in listed} - {package.name})
    if new:
        raise FetchError(
            f"{label} was built from {source} and now requires {', '.join(new)}, which poetry.lock"
            f" does not list for it: {advice}"
        )
