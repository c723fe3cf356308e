"""Every use of Poetry's private or version-dependent APIs, behind small functions.

Supported: Poetry 2.1 (oldest) to the newest 2.x; CI tests both ends. When Poetry moves a name,
this is the only file to change.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Collection
    from collections.abc import Iterator

    from cleo.io.io import IO
    from packaging.tags import Tag
    from packaging.utils import NormalizedName
    from poetry.config.config import Config
    from poetry.core.packages.package import Package
    from poetry.core.packages.utils.link import Link
    from poetry.poetry import Poetry
    from poetry.repositories import RepositoryPool
    from poetry.utils.authenticator import Authenticator
    from poetry.utils.env import Env


T = TypeVar("T")


def target_env(marker_env: dict[str, str], tags: list[Tag], version: tuple[int, int, int]) -> Env:
    """A Poetry `Env` describing the target instead of the host (markers, tags); never executed.

    Poetry's Transaction and Solver read only `marker_env` (and through it `version_info`) and
    `supported_tags`; everything else answers as the running interpreter, which nothing asks.
    """
    import sys

    from poetry.utils.env import Env

    markers: dict[str, Any] = {**marker_env, "version_info": (*version, "final", 0)}
    target_tags = list(tags)

    class TargetEnv(Env):
        def __init__(self) -> None:
            super().__init__(Path(sys.prefix))

        @property
        def sys_path(self) -> list[str]:
            return []

        def get_marker_env(self) -> Any:
            return dict(markers)

        def get_supported_tags(self) -> list[Tag]:
            return list(target_tags)

        def get_paths(self) -> Any:
            return {}

        def is_venv(self) -> bool:
            return False

    return TargetEnv()


def lock_status(poetry: Poetry) -> tuple[bool, bool]:
    """(poetry.lock exists, it is fresh for pyproject.toml)."""
    locker = poetry.locker
    if not locker.is_locked():
        return False, False
    # `is_fresh` parses the whole lock again; the hash it compares first is in the lock data
    # every plan reads anyway. Only a mismatch goes to Poetry (it forgives older lock hashes).
    content_hash = getattr(locker, "_content_hash", None)
    if content_hash is not None and locker.lock_data["metadata"].get("content-hash") == content_hash:
        return True, True
    return True, bool(locker.is_fresh())


def locked_packages(poetry: Poetry) -> list[Package]:
    """Every package of poetry.lock, parsed (callers parse it once per run)."""
    return list(poetry.locker.locked_repository().packages)


@dataclass(frozen=True)
class LockedData:
    """poetry.lock parsed once for a run's plans: every package, and (for lock files that record
    markers) Poetry's per-package install info, which `packages_from_lock` needs."""

    packages: list[Package]
    info: Any


def prime_pep508_parsers(folder: Path) -> None:
    """Give poetry-core its two PEP 508 parsers (markers, requirements) built once, not each run.

    poetry-core builds them (Lark, LALR) from their grammars the first time the lock's markers
    are parsed: 0.1 s of every run. Built once, each is kept under `folder` in Lark's own format
    (`Lark.save`, a pickle, read back with `Lark.load`), named by a key of its grammar's text,
    its options, Lark's version and Python's, and written atomically; an entry that cannot be
    read is rebuilt. It is a pickle in the user's own Poetry cache dir, which already holds the
    virtualenvs Poetry runs. Anything unexpected (another poetry-core's parser, an unwritable
    cache) leaves poetry-core to build its parsers itself, as it always did.
    """
    try:
        from poetry.core.version import markers
        from poetry.core.version import requirements
    except ImportError:  # pragma: no cover - a poetry-core without these modules
        return
    for module in (markers, requirements):
        parser = getattr(module, "_parser", None)
        if parser is not None and getattr(parser, "_lark", False) is None:
            try:
                parser._lark = _cached_lark(folder, Path(parser._grammar), parser._parser, parser._debug)
            except Exception:  # poetry-core builds the parser itself
                continue


@contextmanager
def schema_validators_kept(application: Any) -> Iterator[None]:
    """While this runs, the JSON-schema validators Poetry checks pyproject.toml with are read
    from the plugin's cache instead of being generated again.

    Poetry has fastjsonschema write Python for its three schemas and compile it on every run:
    0.05 s, a twentieth of a warm bundle. Generated once, each validator's code object is kept
    under `<cache-dir>/lambda-bundle/schemas`, named by a key of its schema, fastjsonschema's
    version and the bytecode's magic number, as a checked file (`atomic.read_checked`); a
    damaged or unreadable entry is generated again, as is any schema compiled with options.
    Only the name `fastjsonschema` in Poetry's two validating modules is swapped, and put back
    after. A project with its own `poetry.toml` (which may move the cache dir) is left as it is,
    as is anything this Poetry does differently (its validators are then compiled as always).
    """
    import contextlib
    import importlib

    folder = _schema_cache(application)
    if folder is None:
        yield
        return
    with contextlib.ExitStack() as swaps:
        for name in ("poetry.core.json", "poetry.json"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            compiler = getattr(module, "fastjsonschema", None)
            if compiler is not None and callable(getattr(compiler, "compile", None)):
                swaps.enter_context(_swapped(module, "fastjsonschema", _KeptValidators(compiler, folder)))
        yield


@contextmanager
def lock_parse_kept(poetry: Poetry) -> Iterator[None]:
    """While this runs, Poetry's parse of poetry.lock is read from the plugin's cache when the
    lock's bytes are the ones parsed last time.

    Poetry parses poetry.lock with tomllib, pure Python: 0.03 s for a lock of 70 packages, on
    every run. The parsed tables are kept (marshal) under `<cache-dir>/lambda-bundle/locks/`,
    one checked file per lock file (named by a key of its path, so edits replace it, never pile
    up) that holds the lock's SHA-256 before them: a lock whose bytes changed is parsed again.
    Only the name `tomllib` in Poetry's locker module is swapped, and put back after; a lock
    Poetry cannot parse fails as it always did.
    """
    import sys

    module = sys.modules.get("poetry.packages.locker")
    parser = getattr(module, "tomllib", None)
    if module is None or parser is None or not callable(getattr(parser, "loads", None)):
        yield
        return
    with _swapped(module, "tomllib", _KeptLock(parser, cache_dir(poetry.config) / "lambda-bundle" / "locks")):
        yield


@contextmanager
def _swapped(module: Any, name: str, replacement: Any) -> Iterator[None]:
    """`module.name` is `replacement` while this runs, and what it was after."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _kept(path: Path, load: Callable[[bytes], T], make: Callable[[], tuple[T, bytes | None]]) -> T:
    """A value kept in the cache as a checked file (`atomic.write_checked`): `load` makes it from
    what `path` holds; when that is missing or damaged, or `load` refuses it (raises), `make`
    gives the value and what to keep of it (None: nothing). An unwritable cache only costs the
    next run the time `make` takes."""
    import contextlib

    from poetry_plugin_lambda.atomic import read_checked
    from poetry_plugin_lambda.atomic import write_checked

    saved = read_checked(path)
    if saved is not None:
        try:
            return load(saved)
        except Exception:  # written by another version of what made it: made again
            pass
    value, keep = make()
    if keep is not None:
        with contextlib.suppress(OSError):
            write_checked(path, keep)
    return value


class _KeptLock:
    """tomllib to Poetry's locker, with `load` answered from the cache when it can be."""

    def __init__(self, module: Any, folder: Path) -> None:
        self._module, self._folder = module, folder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def load(self, file: Any) -> Any:
        import hashlib
        import marshal
        import os

        data = file.read()
        digest = hashlib.sha256(data).digest()
        where = os.path.abspath(str(getattr(file, "name", "")))
        path = self._folder / f"{hashlib.sha256(where.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.checked"

        def load(saved: bytes) -> Any:
            if saved[:32] != digest:
                raise ValueError("kept for the lock's earlier bytes")
            return marshal.loads(saved[32:])

        def make() -> tuple[Any, bytes | None]:
            parsed = self._module.loads(data.decode())  # as tomllib.load: its errors are Poetry's to word
            try:
                return parsed, digest + marshal.dumps(parsed)
            except ValueError:  # a value marshal cannot keep (a TOML date): not kept
                return parsed, None

        return _kept(path, load, make)


def _schema_cache(application: Any) -> Path | None:
    """Where the validators are kept: Poetry's cache dir as its global config and environment
    give it; None for a project whose own `poetry.toml` might say otherwise."""
    try:
        from poetry.config.config import Config
        from poetry.core.factory import Factory

        project = getattr(application, "project_directory", None) or Path.cwd()
        if (Factory.locate(Path(project)).parent / "poetry.toml").exists():
            return None
        return cache_dir(Config.create()) / "lambda-bundle" / "schemas"
    except Exception:  # no project here (Poetry says so), or another Poetry: compiled as always
        return None


class _KeptValidators:
    """fastjsonschema to Poetry's validating modules, with `compile` answered from the cache."""

    def __init__(self, module: Any, folder: Path) -> None:
        self._module, self._folder = module, folder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def compile(self, definition: Any, *args: Any, **options: Any) -> Any:
        if args or options:
            return self._module.compile(definition, *args, **options)
        try:
            return self._kept(definition)
        except Exception:  # an unexpected schema or cache: as Poetry always did
            return self._module.compile(definition)

    def _kept(self, definition: Any) -> Any:
        import hashlib
        import json
        import marshal
        from importlib.util import MAGIC_NUMBER

        key = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
        key.update(b"\0" + str(getattr(self._module, "VERSION", "")).encode() + b"\0" + MAGIC_NUMBER)
        path = self._folder / f"{key.hexdigest()[:32]}.checked"

        def load(saved: bytes) -> Any:
            name, code = marshal.loads(saved)
            namespace: dict[str, Any] = {}
            exec(code, namespace)  # the module fastjsonschema wrote for this schema
            return namespace[name]

        def make() -> tuple[Any, bytes | None]:
            validator = self._module.compile(definition)
            code = compile(self._module.compile_to_code(definition), f"<schema {path.stem}>", "exec")
            return validator, marshal.dumps((validator.__name__, code))

        return _kept(path, load, make)


def _cached_lark(folder: Path, grammar: Path, algorithm: str, debug: bool) -> Any:
    import hashlib
    import io
    import sys

    from lark import Lark
    from lark import __version__ as lark_version

    key = hashlib.sha256(f"{algorithm}\0{debug}\0{lark_version}\0{sys.version_info[:2]}".encode())
    for source in sorted(grammar.parent.glob("*.lark")):  # a grammar %imports its neighbours
        key.update(b"\0" + source.name.encode() + b"\0" + source.read_bytes())

    def make() -> tuple[Any, bytes | None]:
        built = Lark.open(grammar_filename=str(grammar), parser=algorithm, debug=debug)
        out = io.BytesIO()
        built.save(out)
        return built, out.getvalue()

    # checked: a flipped bit in a pickle that still loads would mis-parse markers
    return _kept(folder / f"{grammar.stem}-{key.hexdigest()[:32]}.checked", lambda saved: Lark.load(io.BytesIO(saved)), make)


def read_lock(poetry: Poetry) -> LockedData:
    info = poetry.locker.locked_packages() if lock_file_version_supports_markers(poetry) else None
    return LockedData(locked_packages(poetry), info)


def declared_name(poetry: Poetry) -> str | None:
    """The project's name as pyproject.toml gives it; None for a nameless non-package project.

    poetry-core makes up a placeholder name for `package-mode = false` projects without one:
    that name is not the project's, and nothing may be matched against it.
    """
    from packaging.utils import canonicalize_name

    if project_is_package(poetry):
        return str(poetry.package.name)
    data = poetry.pyproject.data
    name = data.get("project", {}).get("name") or data.get("tool", {}).get("poetry", {}).get("name")
    return str(canonicalize_name(name)) if isinstance(name, str) and name else None


def lock_file_version_supports_markers(poetry: Poetry) -> bool:
    """True for lock files (2.1+) that record each package's groups and markers."""
    return bool(poetry.locker.is_locked_groups_and_markers())


def packages_from_lock(
    poetry: Poetry,
    env: Env,
    groups: Collection[NormalizedName],
    extras: Collection[NormalizedName],
    locked: list[Package],
    info: Any = None,
) -> list[Package]:
    """The locked packages the target needs, exactly as `poetry install` would select them.

    `locked` is every package of the lock (`poetry.locker.locked_repository().packages`, read
    once by the caller), `info` what `poetry.locker.locked_packages()` gives (see `read_lock`). Lock 2.1 files are walked with their recorded markers; older ones
    (Poetry 1.8) are resolved again, but only against the packages in the lock (what
    `poetry install` does too): the index is never consulted.
    """
    from poetry.puzzle.transaction import Transaction

    if lock_file_version_supports_markers(poetry):
        transaction = Transaction(
            locked,
            info if info is not None else poetry.locker.locked_packages(),
            [],
            poetry.package,
            env.marker_env,
            set(groups),
        )
    else:
        transaction = _resolve_from_lock_only(poetry, env, groups, extras, locked)
    operations = transaction.calculate_operations(with_uninstalls=False, extras=set(extras))
    return [
        op.package
        for op in operations
        if op.job_type == "install" and not op.skipped and not op.package.is_root()
    ]


def _resolve_from_lock_only(
    poetry: Poetry, env: Env, groups: Collection[NormalizedName], extras: Collection[NormalizedName],
    locked: list[Package],
) -> Any:
    from cleo.io.null_io import NullIO
    from poetry.puzzle.solver import Solver
    from poetry.repositories import RepositoryPool

    root = poetry.package.with_dependency_groups(list(groups), only=True)
    pool = RepositoryPool.from_packages(locked, poetry.config)
    solver = Solver(root, pool, [], locked, NullIO(), active_root_extras=list(extras))
    solver.provider.load_deferred(False)
    with solver.use_environment(env):
        return solver.solve()


def _repository(pool: RepositoryPool, package: Package) -> Any:
    """The repository the lock says the package came from (as Poetry's Chooser finds it)."""
    if package.source_type:
        assert package.source_reference is not None
        return pool.repository(package.source_reference)
    if pool.has_repository("pypi"):
        return pool.repository("pypi")
    return pool.repositories[0]


def find_links(pool: RepositoryPool, package: Package) -> list[Link]:
    """The download links the package's locked source offers for its version.

    Poetry's PyPI repository asks the per-version JSON API, which mirrors and proxies often do
    not serve (404, or no files): then the source's simple page (PEP 691 JSON or PEP 503 HTML)
    is read instead. Either way only the lock's hash is trusted, never the page's.
    """
    from poetry.repositories.pypi_repository import PyPiRepository

    repository = _repository(pool, package)
    if not isinstance(repository, PyPiRepository):
        return list(repository.find_links_for_package(package))
    try:
        links = list(repository.find_links_for_package(package))
    except Exception:  # e.g. an HTML answer where JSON was asked for
        links = []
    return links or _simple_page_links(repository, package)


def _simple_page_links(repository: Any, package: Package) -> list[Link]:
    """The links of the package's version on the source's simple page (PEP 691 or PEP 503)."""
    from poetry.repositories.link_sources.html import HTMLPage
    from poetry.repositories.link_sources.json import SimpleJsonPage

    url = f"{str(repository.url).rstrip('/')}/{package.name}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    response = repository.session.get(url, raise_for_status=False, headers={"Accept": accept})
    if response.status_code != 200:
        return []
    page: Any
    if "json" in response.headers.get("Content-Type", ""):
        page = SimpleJsonPage(url, response.json())
    else:
        page = HTMLPage(url, response.text)
    return list(page.links_for_version(package.name, package.version))


def source_answer(pool: RepositoryPool, package: Package, authenticator: Authenticator) -> tuple[str, str, int | None]:
    """(source name, page URL, HTTP status) of the package's page at its source.

    Poetry reads a 401/403 as "no such package"; asking again tells a refusal from absence.
    """
    repository = _repository(pool, package)
    base = getattr(repository, "url", None)
    if not base:
        return repository.name, "", None
    url = f"{str(base).rstrip('/')}/{package.name}/"
    try:
        response = authenticator.request("get", url, raise_for_status=False)
    except Exception:
        return repository.name, url, None
    return repository.name, url, response.status_code


def make_authenticator(config: Config, io: IO, pool_size: int) -> Authenticator:
    """Poetry's authenticated session: sources' credentials, certificates, retries."""
    from poetry.utils.authenticator import Authenticator

    return Authenticator(config, io, pool_size=pool_size)


def binary_policy(config: Config) -> Callable[[str], tuple[bool, bool]]:
    """package name -> (wheels allowed, sdists allowed), as Poetry's Chooser reads
    `installer.no-binary` and `installer.only-binary`.

    Poetry 2.2+ lets a package named exactly in one setting win over `:all:` in the other;
    2.1 has no such rule (and no `has_exact_package`), and its Chooser then refuses both: the
    2.2 rule is used on every version, since it only differs where 2.1 can install nothing.
    """
    from packaging.utils import canonicalize_name
    from poetry.config.config import PackageFilterPolicy

    no_binary = PackageFilterPolicy(config.get("installer.no-binary", []))
    only_binary = PackageFilterPolicy(config.get("installer.only-binary", []))

    def decide(name: str) -> tuple[bool, bool]:
        canonical = canonicalize_name(name)
        named_no, named_only = canonical in no_binary.packages, canonical in only_binary.packages
        wheels = not named_no and (no_binary.allows(name) or named_only)
        sdists = not named_only and (only_binary.allows(name) or named_no)
        return wheels, sdists

    return decide


def max_workers(config: Config) -> int:
    from poetry_plugin_lambda.errors import ConfigError

    workers = int(getattr(config, "installer_max_workers", 1) or 1)
    if workers < 1:
        raise ConfigError(
            f"Poetry's installer.max-workers is {workers}: it must be 1 or more (`poetry config"
            " installer.max-workers 4`, or the variable POETRY_INSTALLER_MAX_WORKERS)."
        )
    return workers


def max_retries(config: Config) -> int:
    return int(config.get("requests.max-retries", 0) or 0)


def download_to_cache(
    pool: RepositoryPool,
    link: Link,
    authenticator: Authenticator,
    retries: int,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The archive behind `link` in Poetry's artifact cache, downloading it once if absent."""
    try:
        from poetry.utils.download import Downloader
    except ImportError:  # Poetry < 2.2
        from poetry.utils.helpers import Downloader  # type: ignore[no-redef,attr-defined,unused-ignore]

    def download(url: str, dest: Path) -> None:
        downloader = Downloader(url, dest, authenticator, max_retries=retries)
        total = downloader.total_size or 0
        for fetched in downloader.download_with_progress(chunk_size=65536):
            if progress is not None:
                progress(fetched, total)

    return pool.artifact_cache.get_cached_archive_for_link(
        link, strict=True, download_func=download
    )


def cached_archive(pool: RepositoryPool, link: Link) -> Path | None:
    """The cached archive for `link`, if Poetry's artifact cache has it."""
    return pool.artifact_cache.get_cached_archive_for_link(link, strict=True)


def build_project_wheel(poetry: Poetry, directory: Path, dependency: bool = False) -> Path:
    """Build the project itself into a wheel with poetry-core's own builder.

    poetry-core's "No file/folder found for package X" says what is wrong, not what to do: the
    advice is added here, where we know which project it is and whether it is the function's own.
    """
    from poetry.core.masonry.builders.wheel import WheelBuilder
    from poetry.core.masonry.utils.module import ModuleOrPackageNotFoundError

    from poetry_plugin_lambda.errors import FetchError
    from poetry_plugin_lambda.errors import first_line as error_line

    package = poetry.package
    root = Path(poetry.pyproject_path).parent
    try:
        with _no_early_epoch_warning():
            return directory / WheelBuilder.make_in(poetry, directory)
    except ModuleOrPackageNotFoundError:
        module = package.name.replace("-", "_").replace(".", "_")
        advice = (
            f"The project {package.pretty_name} at {root} is a package, but it has no folder or module"
            f" {module} (nor src/{module}) for poetry-core to build. Name the code in pyproject.toml:"
            f' `packages = [{{ include = "your_package" }}]` under [tool.poetry]'
            ' (add `from = "src"` for a src layout)'
        )
    except ValueError as error:
        cause = error_line(error).rstrip(".")
        if "is not in the subpath of" in str(error):  # a link in the package leading out of it
            raise FetchError(
                f"poetry-core cannot build {package.pretty_name}'s wheel: {cause}. A file of"
                f" the package is probably a symlink to a place outside the project {root}: copy what it"
                " points to into the project, or remove the link (`poetry build` fails the same way)."
            ) from None
        if "does not contain any element" not in str(error):
            raise FetchError(
                f"poetry-core cannot build {package.pretty_name}'s wheel: {cause}"
                " (`poetry build` fails the same way)."
            ) from None
        missing = str(error).split(" does not contain", 1)[0]
        advice = (
            f"The project {package.pretty_name} at {root} names {missing} in `packages` under"
            " [tool.poetry], and there is nothing there for poetry-core to build. Correct its"
            " `include` (and `from` for a src layout) to the folder that holds the code"
        )
    if dependency:
        raise FetchError(f"{advice}.")
    raise FetchError(
        f"{advice}; or, if the function is only files such as lambda_function.py, set"
        " `package-mode = false` under [tool.poetry] and list the files with"
        ' `include = ["lambda_function.py"]` under [tool.lambda-bundle].'
    )


@contextmanager
def _no_early_epoch_warning() -> Iterator[None]:
    """poetry-core warns, on every build, that a SOURCE_DATE_EPOCH before 1980 is raised to 1980:
    the documented behaviour of the bundle's timestamps too (`spec.source_epoch`), not news."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return "zipinfo date can't be earlier than 1980" not in record.getMessage()

    logger = logging.getLogger("poetry.core.masonry.builders.wheel")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def build_backend(project: Path) -> str | None:
    """The build backend a local project names in pyproject.toml (None when it names none)."""
    from poetry.core.pyproject.toml import PyProjectTOML

    data = PyProjectTOML(project / "pyproject.toml").data
    backend = data.get("build-system", {}).get("build-backend")
    return str(backend) if backend else None


def build_wheel_of(project: Path, directory: Path) -> Path:
    """Build the poetry-core project at `project` into a (non-editable) wheel."""
    from poetry.core.factory import Factory

    poetry = Factory().create_poetry(project)
    return build_project_wheel(poetry, directory, dependency=True)  # type: ignore[arg-type]


def packaged_folders(poetry: Poetry) -> set[Path]:
    """Every folder holding a file the project's wheel ships (its packages, what its `include`
    names), as poetry-core's builder finds them; empty when it finds none."""
    from poetry.core.masonry.utils.module import Module

    package = poetry.package
    try:
        module = Module(package.name, str(poetry.pyproject_path.parent.resolve()), package.packages, package.include)
    except Exception:  # no package folder: the build itself says so
        return set()
    folders: set[Path] = set()
    for include in module.includes:
        formats = include.formats or ["wheel"]
        if "wheel" in formats:
            folders.update(element if element.is_dir() else element.parent for element in include.elements)
    return {folder.resolve() for folder in folders}


def project_is_package(poetry: Poetry) -> bool:
    """False for Poetry 2's `package-mode = false` projects."""
    return bool(getattr(poetry, "is_package_mode", True))


def build_isolated(
    pool: RepositoryPool, source: Path, output_dir: Path, log: Callable[[str], None] | None = None
) -> Path:
    """Build an sdist or a source tree into a wheel in an isolated environment (PEP 517).

    Build requirements come from the project's sources through Poetry's own machinery; the
    host's Python runs the build, so callers must check that the wheel is pure. What the build
    tools print in-process (virtualenv's and setuptools' deprecation banners) goes to `log`
    (the caller's verbose output), never to the progress lines; a failed build's own output is
    in the exception Poetry raises.
    """
    from poetry.installation.chef import Chef
    from poetry.utils.env import EnvManager

    from poetry_plugin_lambda.quiet import captured

    chef = Chef(pool.artifact_cache, EnvManager.get_system_env(naive=True), pool)
    with captured() as output:
        try:
            return Path(chef.prepare(source, output_dir=output_dir))
        finally:
            text = output.getvalue().strip()
            if log is not None and text:
                log(text)


def build_output(error: BaseException) -> str | None:
    """What a failed isolated build's backend printed, when Poetry's error holds it.

    Poetry's `IsolatedBuildBackendError` wraps `build`'s exception around the backend's
    `CalledProcessError`, and ends its message with advice to run pip: the cause is in between.
    """
    inner = getattr(getattr(error, "exception", None), "exception", None)
    if not isinstance(inner, subprocess.CalledProcessError):
        return None
    out = inner.stderr or inner.stdout or inner.output
    if isinstance(out, bytes):
        out = out.decode("utf-8", "replace")
    return out if isinstance(out, str) and out.strip() else None


def project_python(poetry: Poetry) -> Path | None:
    """The Python of the project's existing virtualenv, if it has one (never creates one)."""
    try:
        from cleo.io.null_io import NullIO
        from poetry.utils.env import EnvManager

        env = EnvManager(poetry, io=NullIO()).get()
    except Exception:
        return None
    return Path(env.python) if env.is_venv() else None


def cache_dir(config: Config) -> Path:
    """Poetry's cache directory (`cache-dir`, POETRY_CACHE_DIR)."""
    return Path(config.get("cache-dir")).expanduser()


def git_checkout(url: str, revision: str, source_root: Path) -> Path:
    """Clone `url` at `revision` (the lock's resolved commit) with Poetry's git backend."""
    from poetry.vcs.git import Git

    repo = Git.clone(url=url, revision=revision, source_root=source_root)
    return Path(repo.path)


def git_cache_dir(pool: RepositoryPool, url: str, revision: str, subdirectory: str | None) -> Path:
    """Where Poetry's artifact cache keeps wheels built from that commit."""
    return Path(pool.artifact_cache.get_cache_directory_for_git(url, revision, subdirectory))


def link_for(url: str) -> Link:
    from poetry.core.packages.utils.link import Link

    return Link(url)


@contextmanager
def stdout_to_stderr(io: IO) -> Iterator[None]:
    """While this runs, what `io` would print on stdout goes to stderr: with `--format json`,
    stdout carries the report alone, whatever Poetry or a build prints meanwhile, at any
    verbosity (poetry-core's build lines, Poetry's debug lines). cleo keeps the two outputs in
    `IO._output` and `IO._error_output`."""
    saved = io._output
    io._output = io._error_output
    try:
        yield
    finally:
        io._output = saved


@contextmanager
def output_redacted(io: IO, redact: Callable[[str], str]) -> Iterator[None]:
    """Every line `io` prints while this runs goes through `redact`: Poetry's own lines too (its
    debug lines and its logger's warnings quote a source's URL, or a host as `user:password@`,
    with the credentials in it). cleo's outputs all print through their `_write`."""
    patched = []
    for output in {id(o): o for o in (io.output, io.error_output)}.values():
        write = getattr(output, "_write", None)
        if callable(write):

            def redacted(message: str, new_line: bool = False, _write: Callable[[str, bool], None] = write) -> None:
                _write(redact(message), new_line)

            output._write = redacted  # type: ignore[method-assign]
            patched.append(output)
    try:
        yield
    finally:
        for output in patched:
            del output._write


def known_secrets(poetry: Poetry) -> set[str]:
    """The passwords and tokens Poetry could put into a message in this run: those of its config
    (`http-basic`, `pypi-token`, and their environment variables) and those written into a
    source's URL or a locked package's (a token given as the user name counts)."""
    import os
    from urllib.parse import urlsplit

    secrets: set[str] = set()
    for name, value in os.environ.items():
        if name.startswith(("POETRY_HTTP_BASIC_", "POETRY_PYPI_TOKEN_")) and not name.endswith("_USERNAME"):
            secrets.add(value)
    config = poetry.config
    for auth in (config.get("http-basic") or {}).values():
        if isinstance(auth, dict) and isinstance(auth.get("password"), str):
            secrets.add(auth["password"])
    secrets.update(t for t in (config.get("pypi-token") or {}).values() if isinstance(t, str))
    urls = [getattr(repository, "url", None) for repository in poetry.pool.all_repositories]
    try:
        packages = poetry.locker.lock_data.get("package", []) if poetry.locker.is_locked() else []
    except Exception:  # a lock Poetry cannot read is said so later
        packages = []
    for package in packages if isinstance(packages, list) else []:
        source = package.get("source") if isinstance(package, dict) else None
        if isinstance(source, dict):
            urls.append(source.get("url"))
    for url in urls:
        if isinstance(url, str) and "@" in url:
            try:
                parts = urlsplit(url)
            except ValueError:
                continue
            secrets.update(s for s in (parts.password or parts.username,) if s)
    return secrets
