"""fetch.py in process, with real Poetry objects: a locked project, its real pool and cache."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from cleo.io.null_io import NullIO
from poetry.core.packages.package import Package

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import FetchError
from poetry_plugin_lambda.fetch import Fetcher
from poetry_plugin_lambda.plan import make_plan
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.inprocess import env_for
from tests.fixtures.inprocess import load_poetry
from tests.fixtures.inprocess import spec_for
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import wheel_from_installed

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A locked project needing a wheel-only, an sdist-only and a wheel+sdist package."""
    base = tmp_path_factory.mktemp("fetch")
    root = base / "index"
    wheel_from_installed(root, "poetry-core")  # the build backend of the sdists
    build_wheel(root, "alpha", "1.0")
    build_sdist(root, "onlysdist", "1.0")
    build_wheel(root, "both", "1.0", files={"both/__init__.py": 'SOURCE = "wheel"\n'})
    build_sdist(root, "both", "1.0", files={"both/__init__.py": 'SOURCE = "sdist"\n'})
    cache = base / "cache"
    cache.mkdir()
    with LoopbackIndex(root) as index:
        project = write_project(
            base / "svc", "svc", dependencies={"alpha": "1.0", "onlysdist": "1.0", "both": "1.0"},
            index_url=index.url, requires_python=">=3.12,<3.13",
        )
        poetry_lock(project, cache)
        yield {"project": project, "index": index}


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, message: str) -> None:
        self.lines.append(message)


def _fetcher(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    poetry = load_poetry(world["project"], tmp_path / "cache", monkeypatch)
    spec = spec_for(poetry)
    plan = make_plan(poetry, spec, env_for(spec))
    progress = Lines()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return poetry, Fetcher(poetry, spec.target, NullIO(), progress, scratch), plan, progress


def _source(wheel: Path, module: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(module).decode()


def test_wheels_from_the_source_sdists_built(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, fetcher, plan, progress = _fetcher(world, tmp_path, monkeypatch)
    artifacts = {a.name: a for a in fetcher.fetch_all(plan)}
    assert set(artifacts) == {"alpha", "both", "onlysdist"}
    assert artifacts["alpha"].wheel.name == "alpha-1.0-py3-none-any.whl"
    assert _source(artifacts["both"].wheel, "both/__init__.py") == 'SOURCE = "wheel"\n'
    assert artifacts["onlysdist"].wheel.name.endswith("-py3-none-any.whl")
    assert any("Building" in line and "onlysdist" in line for line in progress.lines)
    assert not any("Building" in line and "both" in line for line in progress.lines)
    # a verified wheel carries the SHA-256 its check computed; a wheel built here has none
    assert artifacts["alpha"].sha256 == hashlib.sha256(artifacts["alpha"].wheel.read_bytes()).hexdigest()
    assert artifacts["onlysdist"].sha256 is None
    warm = {a.name: a for a in fetcher.fetch_all(plan)}  # from the archive index: the same
    assert warm["alpha"].sha256 == artifacts["alpha"].sha256


@pytest.mark.parametrize("setting", [":all:", "onlysdist", "alpha,onlysdist"])
def test_only_binary_refuses_to_build(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    _, fetcher, plan, progress = _fetcher(world, tmp_path, monkeypatch, POETRY_INSTALLER_ONLY_BINARY=setting)
    package = next(p for p in plan.packages if p.name == "onlysdist")
    with pytest.raises(FetchError) as raised:
        fetcher.fetch(package)
    message = str(raised.value)
    assert "onlysdist" in message and "installer.only-binary" in message
    assert not any("Building" in line for line in progress.lines)  # no build backend ran
    both = next(p for p in plan.packages if p.name == "both")
    assert fetcher.fetch(both).wheel.name == "both-1.0-py3-none-any.whl"  # it has a wheel


def test_only_binary_naming_another_package_still_builds(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, fetcher, plan, _ = _fetcher(world, tmp_path, monkeypatch, POETRY_INSTALLER_ONLY_BINARY="alpha")
    package = next(p for p in plan.packages if p.name == "onlysdist")
    assert fetcher.fetch(package).wheel.name.endswith("-py3-none-any.whl")


def test_no_binary_builds_the_sdist(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, fetcher, plan, progress = _fetcher(world, tmp_path, monkeypatch, POETRY_INSTALLER_NO_BINARY="both")
    both = next(p for p in plan.packages if p.name == "both")
    assert _source(fetcher.fetch(both).wheel, "both/__init__.py") == 'SOURCE = "sdist"\n'
    assert any("Building" in line and "both" in line for line in progress.lines)


def test_no_binary_all_applies_to_build_requirements_too(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in `poetry install`: the build backend (poetry-core) would have to come from an sdist."""
    _, fetcher, plan, _ = _fetcher(world, tmp_path, monkeypatch, POETRY_INSTALLER_NO_BINARY=":all:")
    both = next(p for p in plan.packages if p.name == "both")
    with pytest.raises(FetchError) as raised:
        fetcher.fetch(both)
    message = str(raised.value)
    assert "Failed to install poetry-core" in message and "installer.no-binary" in message


def test_no_binary_without_an_sdist_names_the_setting(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, fetcher, plan, _ = _fetcher(world, tmp_path, monkeypatch, POETRY_INSTALLER_NO_BINARY="alpha")
    alpha = next(p for p in plan.packages if p.name == "alpha")
    with pytest.raises(FetchError, match=r"installer\.no-binary setting names alpha"):
        fetcher.fetch(alpha)


def test_binary_policy_matches_poetrys_chooser(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poetry.config.config import Config

    config = Config()  # not Poetry's process-wide one: later tests would see these settings
    config.merge({"installer": {"no-binary": ["both"], "only-binary": [":all:"]}})
    decide = compat.binary_policy(config)
    assert decide("both") == (False, True)  # an exact name beats :all:
    assert decide("alpha") == (True, False)


def test_max_workers_below_one_is_a_config_error() -> None:
    """Poetry hands a negative installer.max-workers through; a thread pool would refuse it."""
    from poetry.config.config import Config

    from poetry_plugin_lambda.errors import ConfigError

    config = Config()
    config.merge({"installer": {"max-workers": -3}})
    with pytest.raises(ConfigError, match="installer.max-workers is -3: it must be 1 or more"):
        compat.max_workers(config)
    config.merge({"installer": {"max-workers": 3}})
    assert compat.max_workers(config) == 3


def _pypi_like(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The project's packages as a lock from the default PyPI source records them (no source),
    fetched through Poetry's PyPI repository pointed at an index that serves only /simple/."""
    from poetry.repositories import RepositoryPool
    from poetry.repositories.pypi_repository import PyPiRepository

    poetry, fetcher, plan, progress = _fetcher(world, tmp_path, monkeypatch)
    index: LoopbackIndex = world["index"]
    pypi = PyPiRepository(url=f"http://127.0.0.1:{index.port}/", config=poetry.config, disable_cache=True)
    poetry.set_pool(RepositoryPool([pypi], config=poetry.config))
    fetcher = Fetcher(poetry, spec_for(poetry).target, NullIO(), progress, tmp_path / "scratch")
    packages = {}
    for locked in plan.packages:
        package = Package(locked.name, locked.version)
        package.files = locked.files
        packages[package.name] = package
    return fetcher, packages


def test_pypi_source_without_json_api_falls_back_to_the_simple_page(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher, packages = _pypi_like(world, tmp_path, monkeypatch)
    index: LoopbackIndex = world["index"]
    before = len(index.requests)
    assert fetcher.fetch(packages["alpha"]).wheel.name == "alpha-1.0-py3-none-any.whl"
    asked = index.requests[before:]
    assert "/pypi/alpha/1.0/json" in asked and "/simple/alpha/" in asked


def test_pypi_source_fallback_reads_a_pep_691_json_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world) -> None:
    from poetry.repositories import RepositoryPool
    from poetry.repositories.pypi_repository import PyPiRepository

    _, packages = _pypi_like(world, tmp_path, monkeypatch)
    with LoopbackIndex(tmp_path / "json-index", simple_json=True) as json_index:
        for path in world["index"].root.iterdir():
            json_index.add(path)
        poetry = load_poetry(world["project"], tmp_path / "cache", monkeypatch)
        pypi = PyPiRepository(url=f"http://127.0.0.1:{json_index.port}/", config=poetry.config, disable_cache=True)
        poetry.set_pool(RepositoryPool([pypi], config=poetry.config))
        links = compat.find_links(poetry.pool, packages["both"])
        assert sorted(link.filename for link in links) == ["both-1.0-py3-none-any.whl", "both-1.0.tar.gz"]
        assert not any("#sha256=" in link.url for link in links)  # the JSON page, not the HTML one
        assert "/simple/both/" in json_index.requests


def test_pypi_source_that_lists_nothing_says_so(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetcher, _ = _pypi_like(world, tmp_path, monkeypatch)
    ghost = Package("ghost", "1.0")
    ghost.files = [{"file": "ghost-1.0-py3-none-any.whl", "hash": "sha256:" + "0" * 64}]
    with pytest.raises(FetchError, match="listed no files for ghost"):
        fetcher.fetch(ghost)


def test_url_dependency_without_a_lock_hash_is_refused(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, fetcher, _, progress = _fetcher(world, tmp_path, monkeypatch)
    index: LoopbackIndex = world["index"]
    url = f"http://user:s3cret@127.0.0.1:{index.port}/files/alpha-1.0-py3-none-any.whl"
    package = Package("alpha", "1.0", source_type="url", source_url=url)
    with pytest.raises(FetchError, match="records no hash") as raised:
        fetcher.fetch(package)
    assert "s3cret" not in str(raised.value) and not progress.lines  # nothing downloaded


def test_a_failed_git_clone_does_not_print_the_token(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poetry's own error names the URL it was given, credentials included."""
    _, fetcher, _, progress = _fetcher(world, tmp_path, monkeypatch)
    with LoopbackIndex(tmp_path / "git", auth=("user", "other")) as server:
        url = f"http://user:s3cret@127.0.0.1:{server.port}/private.git"
        package = Package(
            "private", "1.0", source_type="git", source_url=url,
            source_reference="main", source_resolved_reference="0" * 40,
        )
        with pytest.raises(FetchError, match="Could not clone private") as raised:
            fetcher.fetch(package)
    message = str(raised.value)
    assert "s3cret" not in message and f"Failed to clone http://127.0.0.1:{server_port(url)}/private.git" in message
    assert not any("s3cret" in line for line in progress.lines)


def server_port(url: str) -> int:
    from urllib.parse import urlsplit

    return int(urlsplit(url).port or 0)


def test_then_runs_on_each_verified_artifact_in_the_worker_that_fetched_it(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    _, fetcher, plan, _ = _fetcher(world, tmp_path, monkeypatch)
    seen: list[tuple[str, bool]] = []
    artifacts = fetcher.fetch_all(plan, then=lambda a: seen.append((a.name, threading.current_thread() is threading.main_thread())))
    assert sorted(name for name, _ in seen) == sorted(a.name for a in artifacts)
    assert not any(in_main for _, in_main in seen)


def test_a_failing_then_fails_the_fetch(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poetry_plugin_lambda.errors import WheelError

    _, fetcher, plan, _ = _fetcher(world, tmp_path, monkeypatch)

    def refuse(artifact: object) -> None:
        raise WheelError("not a wheel this bundle can hold")

    with pytest.raises(WheelError, match="not a wheel this bundle can hold"):
        fetcher.fetch_all(plan, then=refuse)


def test_the_bundles_of_a_run_read_each_wheel_once(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two bundles with different file filters: one read of each wheel, each its own RECORD."""
    from collections import Counter

    from poetry_plugin_lambda import pipeline

    poetry = load_poetry(world["project"], tmp_path / "cache", monkeypatch)
    reads: Counter[str] = Counter()
    real = pipeline.parse_wheel

    def counted(wheel: Path):  # type: ignore[no-untyped-def]
        reads[wheel.name] += 1
        return real(wheel)

    monkeypatch.setattr(pipeline, "parse_wheel", counted)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shared = pipeline.SharedWork(poetry, NullIO(), Lines(), scratch, [])
    plain = spec_for(poetry)
    filtered = spec_for(poetry, **{"exclude-files": ["*/__init__.py"]})
    assembled = [pipeline._assemble(shared.prepare(spec), shared, Lines()) for spec in (plain, filtered, plain)]
    assert reads and set(reads.values()) == {1}, reads
    assert len(reads) == len(shared.prepare(plain).wheels)
    paths = [{e.path for e in a.entries} for a in assembled]
    assert paths[0] == paths[2]
    assert {p for p in paths[0] if p.endswith("/__init__.py")} and not {p for p in paths[1] if p.endswith("/__init__.py")}


def test_a_failed_isolated_builds_own_output_is_found(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poetry's build error ends with advice to run pip; what the backend printed is what says why."""
    import tarfile

    top = tmp_path / "macpkg-1.0"
    top.mkdir()
    (top / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    (top / "backend.py").write_text(
        "import sys\n\ndef get_requires_for_build_wheel(config_settings=None):\n"
        "    print('running egg_info')\n    sys.exit('error: macpkg requires macOS to build')\n"
    )
    (top / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: macpkg\nVersion: 1.0\n")
    sdist = tmp_path / "macpkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    poetry = load_poetry(world["project"], tmp_path / "cache", monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception) as caught:
        compat.build_isolated(poetry.pool, sdist, out)
    output = compat.build_output(caught.value)
    assert output is not None and "error: macpkg requires macOS to build" in output
    assert compat.build_output(RuntimeError("no build")) is None


def test_the_folders_the_projects_wheel_ships_from(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """poetry-core's own idea of the package: an output inside it would ship in the next bundle."""
    poetry = load_poetry(world["project"], tmp_path / "cache", monkeypatch)
    root = world["project"].resolve()
    folders = compat.packaged_folders(poetry)
    assert root / "svc" in folders and root not in folders
