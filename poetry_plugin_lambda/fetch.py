"""Each planned package -> a verified wheel on local disk.

Archives come through the project's Poetry pool (its sources, credentials, certificates) into
Poetry's artifact cache, chosen for the target's tags, and are checked against the lock's hash
before anything reads them. Downloads run in parallel (`installer.max-workers`).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Protocol
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from packaging.utils import parse_wheel_filename

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.archive_index import ArchiveIndex
from poetry_plugin_lambda.atomic import copy_atomic
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import FetchError
from poetry_plugin_lambda.locked_files import choose_locked_file
from poetry_plugin_lambda.locked_files import locked_sha256
from poetry_plugin_lambda.locked_files import matches_lock
from poetry_plugin_lambda.locked_files import no_wheel_error
from poetry_plugin_lambda.locked_files import verify_hash
from poetry_plugin_lambda.targets import wheel_rank

if TYPE_CHECKING:
    from cleo.io.io import IO
    from poetry.core.packages.package import Package
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.plan import Plan
    from poetry_plugin_lambda.targets import Target


class Progress(Protocol):
    def line(self, message: str) -> None: ...


@dataclass(frozen=True)
class Artifact:
    """A verified wheel for one distribution."""

    name: str
    version: str
    wheel: Path
    sha256: str | None = None  # the wheel's sha256 when the lock vouches for exactly this file


def redact(url: str) -> str:
    """A URL without user info, safe to print."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Fetcher:
    """Fetches archives for one target through one Poetry project's pool and cache."""

    def __init__(
        self, poetry: Poetry, env: Env, target: Target, io: IO, progress: Progress, scratch: Path
    ) -> None:
        self._poetry = poetry
        self._scratch = scratch
        self._env = env
        self._target = target
        self._progress = progress
        self._workers = compat.max_workers(poetry.config)
        self._authenticator = compat.make_authenticator(poetry.config, io, self._workers)
        self._retries = compat.max_retries(poetry.config)
        own_cache = compat.cache_dir(poetry.config) / "lambda-bundle"
        self._index = ArchiveIndex(own_cache / "archives")
        legacy = own_cache / "unpacked"  # version 0.1 unpacked wheels here; nothing reads them now
        if legacy.is_dir():
            shutil.rmtree(legacy, ignore_errors=True)

    def fetch_all(self, plan: Plan) -> list[Artifact]:
        if not plan.packages:
            return []
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            return list(pool.map(self.fetch, plan.packages))

    def fetch(self, package: Package) -> Artifact:
        kind = package.source_type
        if kind in (None, "", "legacy"):
            wheel = self._from_index(package)
        elif kind == "file":
            wheel = self._from_file(package)
        elif kind == "directory":
            wheel = self._from_directory(package)
        elif kind == "git":
            wheel = self._from_git(package)
        elif kind == "url":
            wheel = self._from_url(package)
        else:
            raise FetchError(
                f"{package.pretty_name} {package.pretty_version} is a {kind} dependency, which"
                " this version of poetry-plugin-lambda cannot bundle yet."
            )
        digest = locked_sha256(package, wheel.name)
        return Artifact(package.name, package.version.text, wheel, digest)

    def _from_index(self, package: Package) -> Path:
        """The lock names the files; the target's tags pick one; the source serves it."""
        label = f"{package.pretty_name} ({package.pretty_version})"
        filename = choose_locked_file(package, self._target)
        digest = locked_sha256(package, filename)
        known = self._index.lookup(digest) if digest else None
        if known is not None and known.name == filename and matches_lock(known, package):
            return known if filename.endswith(".whl") else self._build_sdist(package, known)
        try:
            links = compat.find_links(self._poetry.pool, package)
        except Exception as error:
            raise FetchError(_index_failure(label, error)) from None
        link = next((link for link in links if link.filename == filename), None)
        if link is None and not links:
            self._refused_or_absent(package, label)
        if link is None:
            raise FetchError(
                f"The source of {label} no longer offers {filename}, which poetry.lock chose."
                " Run `poetry lock` to lock what the source offers now."
            )
        cached = compat.cached_archive(self._poetry.pool, link)
        if cached is None:
            self._progress.line(f"  - Downloading <c1>{label}</>")
            try:
                cached = compat.download_to_cache(
                    self._poetry.pool, link, self._authenticator, self._retries
                )
            except Exception as error:
                raise FetchError(_index_failure(label, error, link.url)) from None
        verify_hash(cached, package)
        if digest:
            self._index.record(digest, cached)
        if filename.endswith(".whl"):
            return cached
        return self._build_sdist(package, cached)

    def _refused_or_absent(self, package: Package, label: str) -> None:
        """No links at all: say so if the source refused us (credentials), not that it lacks them."""
        source, url, status = compat.source_answer(self._poetry.pool, package, self._authenticator)
        if status in (401, 403):
            raise FetchError(
                f"The source {source!r} refused access to {label} ({redact(url)} answered"
                f" {status}): credentials are missing or wrong. Configure them with"
                f" `poetry config http-basic.{source} <user> <password>` or"
                f" POETRY_HTTP_BASIC_{_env_name(source)}_USERNAME/PASSWORD."
            )

    def _from_git(self, package: Package) -> Path:
        """The lock's resolved commit, cloned and built (pure only); the wheel cached per commit."""
        assert package.source_url is not None
        revision = package.source_resolved_reference or package.source_reference
        if not revision:
            raise FetchError(f"{package.pretty_name}: poetry.lock names no git revision; run `poetry lock`.")
        cache = compat.git_cache_dir(self._poetry.pool, package.source_url, revision, package.source_subdirectory)
        for built in sorted(cache.glob("*.whl")):
            if is_pure(built) and wheel_rank(built.name, self._target) is not None:
                return built
        label = f"{package.pretty_name} ({package.pretty_version})"
        self._progress.line(f"  - Cloning <c1>{label}</> at {revision[:12]}")
        try:
            checkout = compat.git_checkout(package.source_url, revision, self._scratch / "git" / package.name)
        except Exception as error:
            raise FetchError(
                f"Could not clone {label} from {redact(package.source_url)} at {revision}: {_first_line(error)}"
            ) from None
        source = checkout / package.source_subdirectory if package.source_subdirectory else checkout
        wheel = self._build(package, source)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            final = cache / wheel.name
            copy_atomic(wheel, final)
            return final
        except OSError:
            return wheel

    def _from_url(self, package: Package) -> Path:
        """A direct URL archive: downloaded through Poetry's cache, hash-checked, built if sdist."""
        assert package.source_url is not None
        label = f"{package.pretty_name} ({package.pretty_version})"
        link = compat.link_for(package.source_url)
        cached = compat.cached_archive(self._poetry.pool, link)
        if cached is None:
            self._progress.line(f"  - Downloading <c1>{label}</>")
            try:
                cached = compat.download_to_cache(self._poetry.pool, link, self._authenticator, self._retries)
            except Exception as error:
                raise FetchError(_index_failure(label, error, link.url)) from None
        if package.files:
            verify_hash(cached, package)
        if cached.name.endswith(".whl"):
            if wheel_rank(cached.name, self._target) is None:
                raise no_wheel_error(package, self._target, f"{cached.name} is for another platform")
            return cached
        return self._build_sdist(package, cached)

    def _build_sdist(self, package: Package, sdist: Path) -> Path:
        """No wheel fits the target: build the sdist once, and cache the pure wheel beside it."""
        for built in sorted(sdist.parent.glob("*.whl")):
            if is_pure(built) and wheel_rank(built.name, self._target) is not None:
                return built
        wheel = self._build(package, sdist)
        final = sdist.parent / wheel.name
        try:
            copy_atomic(wheel, final)  # cached beside the sdist, as Poetry caches its own builds
        except OSError:
            return wheel  # a read-only cache only costs a rebuild next time
        return final

    def _local_path(self, package: Package) -> Path:
        assert package.source_url is not None
        path = Path(package.source_url)
        if not path.is_absolute():
            path = (package.root_dir or self._poetry.pyproject_path.parent) / path
        if package.source_subdirectory:
            path = path / package.source_subdirectory
        return path.resolve()

    def _from_directory(self, package: Package) -> Path:
        """A path dependency to a project: built into a real wheel, never an editable one."""
        path = self._local_path(package)
        if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file():
            raise FetchError(f"{package.pretty_name}: {path} is not a Python project to build.")
        return self._build(package, path)

    def _from_file(self, package: Package) -> Path:
        """A path dependency to a wheel (used as is) or an sdist (built), both hash-checked."""
        path = self._local_path(package)
        if not path.is_file():
            raise FetchError(f"{package.pretty_name}: the file {path} named in poetry.lock is missing.")
        verify_hash(path, package)
        if path.suffix == ".whl":
            if wheel_rank(path.name, self._target) is None:
                raise no_wheel_error(package, self._target, f"{path.name} is for another platform")
            return path
        return self._build(package, path)

    def _build(self, package: Package, source: Path) -> Path:
        """Build a source tree or sdist for the target: only a pure-Python wheel is accepted."""
        label = f"{package.pretty_name} ({package.pretty_version})"
        self._progress.line(f"  - Building <c1>{label}</> from {source.name}")
        out = self._scratch / f"build-{package.name}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir() and compat.build_backend(source) == "poetry.core.masonry.api":
                wheel = compat.build_wheel_of(source, out)  # in process: fast, offline
            else:
                wheel = compat.build_isolated(self._poetry.pool, source, out)
        except BundleError:
            raise
        except Exception as error:
            raise FetchError(f"Building {label} from {source} failed: {_first_line(error)}") from None
        if not is_pure(wheel) or wheel_rank(wheel.name, self._target) is None:
            raise no_wheel_error(
                package,
                self._target,
                f"building {source.name} gave {wheel.name}, a wheel for this machine, not a"
                " pure-Python one",
            )
        return wheel


def is_pure(wheel: Path) -> bool:
    """True when every tag of the wheel says: no ABI, any platform."""
    tags = parse_wheel_filename(wheel.name)[3]
    return all(tag.abi == "none" and tag.platform == "any" for tag in tags)


def _first_line(error: BaseException) -> str:
    """The line of a (build) error that says what went wrong, without console markup."""
    import re

    text = re.sub(r"</?[a-z0-9=;_,]*>", "", str(error)).strip()
    if not text:
        return type(error).__name__
    lines = [line.strip(" |") for line in text.splitlines() if line.strip(" |")]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception):", line)]
    return (raised or lines)[-1]


def _env_name(source: str) -> str:
    import re

    return re.sub(r"[^A-Z0-9]", "_", source.upper())


def _index_failure(label: str, error: Exception, url: str | None = None) -> str:
    """A download or index error, said so that the user knows what to fix (no credentials)."""
    if isinstance(error, OSError) and getattr(error, "filename", None):
        return (
            f"Could not store {label} in Poetry's cache: {error.strerror or error}"
            f" ({error.filename}). Check the permissions of Poetry's cache dir"
            " (`poetry config cache-dir`), or point POETRY_CACHE_DIR at a writable folder."
        )
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if url is None:
        url = str(getattr(response, "url", "") or "")
    where = redact(url) if url else "its source"
    if status in (401, 403):
        return (
            f"Could not download {label} from {where}: the index answered {status}"
            " (credentials missing or refused). Configure them with"
            " `poetry config http-basic.<source> <user> <password>` or"
            " POETRY_HTTP_BASIC_<SOURCE>_USERNAME/PASSWORD."
        )
    if status is not None:
        return f"Could not download {label} from {where}: the index answered {status}."
    reason = _first_line(error)[:200].rstrip(".")
    return (
        f"Could not download {label} from {where}: {_strip_credentials(reason)}."
        " Check your network, proxy settings and the source's URL."
    )


def _strip_credentials(text: str) -> str:
    import re

    return re.sub(r"//[^/@\s]+@", "//", text)
