"""Each planned package -> a verified wheel on local disk.

Archives come through the project's Poetry pool (its sources, credentials, certificates) into
Poetry's artifact cache, chosen for the target's tags, and are checked against the lock's hash
before anything reads them. Downloads run in parallel (`installer.max-workers`).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Protocol
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from packaging.utils import parse_wheel_filename

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import FetchError
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


def redact(url: str) -> str:
    """A URL without user info, safe to print."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def verify_hash(archive: Path, package: Package, lock_name: str | None = None) -> None:
    """The archive's hash must be one poetry.lock recorded for that file name."""
    name = lock_name or archive.name
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
        raise FetchError(f"poetry.lock records only {kind} hashes for {name}; cannot verify it.")
    actual = compat.file_hash(archive, kind)
    if actual not in by_type[kind]:
        expected = ", ".join(f"{kind}:{v}" for v in sorted(by_type[kind]))
        raise FetchError(
            f"Hash mismatch for {label}: {archive} has {kind}:{actual}, but poetry.lock expects"
            f" {expected}. The file changed after locking or the cache is corrupt: delete"
            f" {archive} (if it is a cached download) or run `poetry lock`."
        )


def _wheel_tags(package: Package) -> list[str]:
    tags = []
    for f in package.files:
        name = f.get("file", "")
        if name.endswith(".whl"):
            try:
                tags.extend(str(t) for t in parse_wheel_filename(name)[3])
            except ValueError:
                continue
    return sorted(set(tags))


def choose_locked_file(package: Package, target: Target) -> str:
    """The locked wheel with the target's best tag (the order of `packaging.tags`)."""
    ranked = []
    for entry in package.files:
        name = entry.get("file", "")
        rank = wheel_rank(name, target) if name.endswith(".whl") else None
        if rank is not None:
            ranked.append((rank, name))
    if ranked:
        return min(ranked)[1]
    sdists = [f["file"] for f in package.files if not f.get("file", "").endswith(".whl")]
    cause = f"only the source archive {sdists[0]} could be built" if sdists else "no file fits"
    raise _no_wheel_error(package, target, cause)


def _no_wheel_error(package: Package, target: Target, cause: str) -> FetchError:
    tags = _wheel_tags(package)
    shown = ", ".join(tags[:12]) + (" …" if len(tags) > 12 else "") if tags else "none"
    return FetchError(
        f"No wheel of {package.pretty_name} {package.pretty_version} fits {target.describe()}"
        f" ({cause}). Wheel tags in the lock: {shown}. Pin a version that publishes wheels for"
        " this target, or choose another runtime or architecture."
    )


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
        else:
            raise FetchError(
                f"{package.pretty_name} {package.pretty_version} is a {kind} dependency, which"
                " this version of poetry-plugin-lambda cannot bundle yet."
            )
        return Artifact(package.name, package.version.text, wheel)

    def _from_index(self, package: Package) -> Path:
        """The lock names the files; the target's tags pick one; the source serves it."""
        label = f"{package.pretty_name} ({package.pretty_version})"
        filename = choose_locked_file(package, self._target)
        try:
            links = compat.find_links(self._poetry.pool, package)
        except Exception as error:
            raise FetchError(_index_failure(label, error)) from None
        link = next((link for link in links if link.filename == filename), None)
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
        return cached

    def _local_path(self, package: Package) -> Path:
        assert package.source_url is not None
        path = Path(package.source_url)
        if not path.is_absolute():
            path = (package.root_dir or self._poetry.pyproject_path.parent) / path
        if package.source_subdirectory:
            path = path / package.source_subdirectory
        return path.resolve()

    def _from_directory(self, package: Package) -> Path:
        """Build a path dependency into a real wheel (never an editable one), for the target."""
        path = self._local_path(package)
        if not (path / "pyproject.toml").is_file():
            raise FetchError(f"{package.pretty_name}: {path} has no pyproject.toml to build from.")
        self._progress.line(f"  - Building <c1>{package.pretty_name} ({package.pretty_version})</> from {path}")
        out = self._scratch / f"build-{package.name}"
        out.mkdir(parents=True, exist_ok=True)
        wheel = build_local_project(path, out)
        check_wheel_fits(wheel, self._env, self._target)
        return wheel

    def _from_file(self, package: Package) -> Path:
        path = self._local_path(package)
        if not path.is_file():
            raise FetchError(f"{package.pretty_name}: the file {path} named in poetry.lock is missing.")
        if path.suffix != ".whl":
            raise FetchError(
                f"{package.pretty_name} {package.pretty_version} is an sdist file dependency,"
                " which this version of poetry-plugin-lambda cannot bundle yet."
            )
        verify_hash(path, package)
        return path


def build_local_project(path: Path, out: Path) -> Path:
    """Build a local project with poetry-core, in process (no network, no isolation needed)."""
    backend = compat.build_backend(path)
    if backend not in (None, "poetry.core.masonry.api"):
        raise FetchError(
            f"{path} builds with {backend!r}; this version of poetry-plugin-lambda builds"
            " local projects that use poetry-core only."
        )
    try:
        return compat.build_wheel_of(path, out)
    except BundleError:
        raise
    except Exception as error:
        raise FetchError(f"Building {path} failed: {error}") from None


def check_wheel_fits(wheel: Path, env: Env, target: Target) -> None:
    """A built wheel must be installable on the target: never ship a binary built for the host."""
    tags = parse_wheel_filename(wheel.name)[3]
    supported = set(env.supported_tags)
    if not any(tag in supported for tag in tags):
        raise FetchError(
            f"{wheel.name} was built for this machine ({', '.join(sorted(map(str, tags)))}),"
            f" not for {target.describe()}. Only pure-Python local projects can be built here;"
            " publish wheels for the target and depend on those instead."
        )


def _index_failure(label: str, error: Exception, url: str | None = None) -> str:
    """A download or index error, said so that the user knows what to fix (no credentials)."""
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
    reason = str(error).split("\n")[0][:200] if str(error) else type(error).__name__
    return (
        f"Could not download {label} from {where}: {_strip_credentials(reason)}."
        " Check your network, proxy settings and the source's URL."
    )


def _strip_credentials(text: str) -> str:
    import re

    return re.sub(r"//[^/@\s]+@", "//", text)
