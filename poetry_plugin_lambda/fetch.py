"""Each planned package -> a verified wheel on local disk.

Archives come through the project's Poetry pool (its sources, credentials, certificates) into
Poetry's artifact cache, chosen for the target's tags and Poetry's `installer.no-binary` /
`installer.only-binary` settings, and are checked against the lock's hash before anything
reads them. Downloads run in parallel (`installer.max-workers`). Source packages are built by
`builds.Builder`.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.utils import InvalidWheelFilename
from packaging.utils import parse_wheel_filename

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.archive_index import ArchiveIndex
from poetry_plugin_lambda.builds import Builder
from poetry_plugin_lambda.builds import Progress
from poetry_plugin_lambda.builds import label_of
from poetry_plugin_lambda.errors import FetchError
from poetry_plugin_lambda.errors import download_failure
from poetry_plugin_lambda.errors import env_name
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import redact_url
from poetry_plugin_lambda.locked_files import choose_locked_file
from poetry_plugin_lambda.locked_files import locked_sha256
from poetry_plugin_lambda.locked_files import matches_lock
from poetry_plugin_lambda.locked_files import no_wheel_error
from poetry_plugin_lambda.locked_files import verify_hash
from poetry_plugin_lambda.targets import wheel_rank
from poetry_plugin_lambda.wheels import same_version

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Mapping
    from pathlib import Path

    from cleo.io.io import IO
    from poetry.core.packages.package import Package
    from poetry.core.packages.utils.link import Link
    from poetry.poetry import Poetry

    from poetry_plugin_lambda.plan import Plan
    from poetry_plugin_lambda.targets import Target

__all__ = ["Artifact", "Fetcher", "Progress"]


@dataclass(frozen=True)
class Artifact:
    """A verified wheel for one distribution; `sha256` is the wheel's SHA-256 when it was checked
    against the lock with it (None for wheels built here)."""

    name: str
    version: str
    wheel: Path
    sha256: str | None = None


class Fetcher:
    """Fetches archives for one target through one Poetry project's pool and cache."""

    def __init__(self, poetry: Poetry, target: Target, io: IO, progress: Progress, scratch: Path) -> None:
        self._poetry = poetry
        self._target = target
        self._progress = progress
        self._builder = Builder(poetry, target, progress, scratch, log=_verbose_log(io))
        self._binary = compat.binary_policy(poetry.config)
        self._workers = compat.max_workers(poetry.config)
        self._authenticator = compat.make_authenticator(poetry.config, io, self._workers)
        self._retries = compat.max_retries(poetry.config)
        own_cache = compat.cache_dir(poetry.config) / "lambda-bundle"
        self._index = ArchiveIndex(own_cache.parent)
        self._listed: Mapping[str, frozenset[str]] = {}  # the plan's (`Plan.listed`)
        legacy = own_cache / "unpacked"  # version 0.1 unpacked wheels here; nothing reads them now
        if legacy.is_dir():
            shutil.rmtree(legacy, ignore_errors=True)

    def fetch_all(self, plan: Plan, then: Callable[[Artifact], object] | None = None) -> list[Artifact]:
        """Every package's artifact, in the plan's order; `then`, if given, runs on each artifact in
        the worker that fetched it, as soon as it is verified (so reading one wheel overlaps the
        hash checks and downloads of the others)."""
        if not plan.packages:
            return []
        self._listed = plan.listed

        def fetch(package: Package) -> Artifact:
            artifact = self.fetch(package)
            if then is not None:
                then(artifact)
            return artifact

        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            return list(pool.map(fetch, plan.packages))

    def fetch(self, package: Package) -> Artifact:
        kind = package.source_type
        sha256 = None
        if kind in (None, "", "legacy"):
            wheel, sha256 = self._from_index(package)
        elif kind == "file":
            wheel = self._builder.from_file(package, self._listed.get(package.name))
        elif kind == "directory":
            wheel = self._builder.from_directory(package, self._listed.get(package.name))
        elif kind == "git":
            wheel = self._builder.from_git(package, self._listed.get(package.name))
        elif kind == "url":
            wheel, sha256 = self._from_url(package)
        else:
            raise FetchError(
                f"{package.pretty_name} {package.pretty_version} is a {kind} dependency, which"
                " this version of poetry-plugin-lambda cannot bundle yet."
            )
        return Artifact(package.name, package.version.text, wheel, sha256)

    def _from_index(self, package: Package) -> tuple[Path, str | None]:
        """The lock names the files; the target's tags pick one; the source serves it. Returns the
        wheel, and its SHA-256 when the lock checked it with that (not for a built sdist)."""
        label = label_of(package)
        wheels, sdists = self._binary(package.name)
        filename = choose_locked_file(package, self._target, wheels, sdists)
        if filename.endswith(".whl"):
            _check_locked_version(package, filename)
        digest = locked_sha256(package, filename)
        known = self._index.lookup(digest) if digest else None
        if known is not None and known.name == filename:
            matches, sha256 = matches_lock(known, package)
            if matches:
                return self._wheel_of(package, known, sha256)
        try:
            links = compat.find_links(self._poetry.pool, package)
        except Exception as error:
            raise FetchError(download_failure(label, error)) from None
        link = next((link for link in links if link.filename == filename), None)
        if link is None and not links:
            self._refused_or_absent(package, label, filename)
        if link is None:
            raise FetchError(
                f"The source of {label} no longer offers {filename}, which poetry.lock chose."
                " Run `poetry lock` to lock what the source offers now."
            )
        cached = self._download(package, link)
        sha256 = verify_hash(cached, package)
        if digest:
            self._index.record(digest, cached)
        return self._wheel_of(package, cached, sha256)

    def _wheel_of(self, package: Package, archive: Path, sha256: str | None) -> tuple[Path, str | None]:
        """A verified wheel as it is; a verified sdist built into a wheel (which has no lock hash).
        Either way, of the version the lock names (the report and the bundle must agree)."""
        if archive.name.endswith(".whl"):
            return archive, sha256
        wheels_allowed, _ = self._binary(package.name)
        why = f"no wheel in the lock fits {self._target.describe()}" if wheels_allowed else "installer.no-binary names it"
        wheel = self._builder.from_sdist(package, archive, why)
        _check_locked_version(package, wheel.name)
        return wheel, None

    def _download(self, package: Package, link: Link) -> Path:
        """The archive behind `link`, from Poetry's artifact cache or downloaded into it."""
        cached = compat.cached_archive(self._poetry.pool, link)
        if cached is not None:
            return cached
        label = label_of(package)
        self._progress.line(f"  - Downloading <c1>{label}</>")
        try:
            return compat.download_to_cache(self._poetry.pool, link, self._authenticator, self._retries)
        except Exception as error:
            raise FetchError(download_failure(label, error, link.url_without_fragment)) from None

    def _refused_or_absent(self, package: Package, label: str, filename: str) -> None:
        """No links at all: a refusal (credentials) or a source that lists nothing."""
        source, url, status = compat.source_answer(self._poetry.pool, package, self._authenticator)
        if status in (401, 403):
            raise FetchError(
                f"The source {source!r} refused access to {label} ({redact_url(url)} answered"
                f" {status}): credentials are missing or wrong. Configure them with"
                f" `poetry config http-basic.{source} <user> <password>` or"
                f" POETRY_HTTP_BASIC_{env_name(source)}_USERNAME/PASSWORD."
            )
        where = f" ({redact_url(url)})" if url else ""
        raise FetchError(
            f"The source {source!r}{where} listed no files for {label}, so {filename}, which"
            " poetry.lock chose, cannot be downloaded. Check that the source (or the mirror or"
            f" proxy in front of it) still serves {package.pretty_name}, or run `poetry lock`"
            " against the sources you use now."
        )

    def _from_url(self, package: Package) -> tuple[Path, str | None]:
        """A direct URL archive: downloaded through Poetry's cache, hash-checked, built if sdist.

        A URL can serve other bytes tomorrow: without a hash in the lock it is refused.
        """
        assert package.source_url is not None
        if not package.files:
            raise FetchError(
                f"poetry.lock records no hash for {label_of(package)}, a URL dependency"
                f" ({redact_url(package.source_url)}), so what the URL serves cannot be verified."
                " Run `poetry lock` (Poetry 1.2 or newer records it) to record the hash."
            )
        cached = self._download(package, compat.link_for(package.source_url))
        sha256 = verify_hash(cached, package)
        if cached.name.endswith(".whl") and wheel_rank(cached.name, self._target) is None:
            raise no_wheel_error(package, self._target, f"{cached.name} is for another platform")
        return self._wheel_of(package, cached, sha256)


def _verbose_log(io: IO) -> Callable[[str], None]:
    """Build tools' own output (deprecation banners and the like): on stderr, only with -v."""
    from cleo.formatters.formatter import Formatter
    from cleo.io.outputs.output import Verbosity

    def log(text: str) -> None:
        io.write_error_line(Formatter.escape(redact(text.rstrip())), verbosity=Verbosity.VERBOSE)

    return log


def _check_locked_version(package: Package, wheel: str) -> None:
    """The wheel (by its file name) is of the version poetry.lock gives the package: the report
    names that version, and the bundle must ship it."""
    try:
        version = str(parse_wheel_filename(wheel)[1])
    except InvalidWheelFilename:
        return  # refused when it is read, with the reason
    if not same_version(version, package.version.text):
        raise FetchError(
            f"poetry.lock gives {package.pretty_name} version {package.pretty_version}, but the file it"
            f" lists for it, {wheel}, is version {version}: the lock is inconsistent (edited by"
            " hand?). Run `poetry lock` to write it again."
        )
