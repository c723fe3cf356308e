"""plan.py in process, with real Poetry objects: a fixture project, a real lock, real Packages."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.tags import Tag
from poetry.core.packages.dependency import Dependency
from poetry.core.packages.package import Package

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import LockError
from poetry_plugin_lambda.plan import apply_exclusions
from poetry_plugin_lambda.plan import check_lock
from poetry_plugin_lambda.plan import make_plan
from tests.e2e.helpers import build_core_wheels
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.inprocess import env_for
from tests.fixtures.inprocess import load_poetry
from tests.fixtures.inprocess import spec_for
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel


def nameless_project(root: Path, index_url: str, dependencies: dict[str, str]) -> Path:
    """A `package-mode = false` project without a name (poetry-core then makes one up)."""
    root.mkdir(parents=True)
    deps = "".join(f'{name} = "{spec}"\n' for name, spec in dependencies.items())
    (root / "pyproject.toml").write_text(
        "[tool.poetry]\npackage-mode = false\n"
        f'[tool.poetry.dependencies]\npython = ">=3.12,<3.13"\n{deps}'
        f'[[tool.poetry.source]]\nname = "loopback"\nurl = "{index_url}"\npriority = "primary"\n'
    )
    return root

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """One index and two locked projects: a package, and a non-package one in a folder `requests`."""
    base = tmp_path_factory.mktemp("plan")
    build_core_wheels(base / "index")
    build_wheel(base / "index", "extrapkg", "1.0")
    cache = base / "cache"
    cache.mkdir()
    with LoopbackIndex(base / "index") as index:
        svc = write_project(
            base / "svc", "svc",
            dependencies={"requests": "^2.32", "aws-requests-auth": "0.4.3",
                          "extrapkg": {"version": "1.0", "optional": True}},
            groups={"dev": {"pytest": "^8"}}, extras={"fancy": ["extrapkg"]},
            index_url=index.url, requires_python=">=3.12,<3.13",
        )
        named_like_dep = nameless_project(base / "requests", index.url, {"requests": "^2.32"})
        poetry_lock(svc, cache)
        poetry_lock(named_like_dep, cache)
        yield {"svc": svc, "requests": named_like_dep, "cache": cache}


def _plan(project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, **cli):
    poetry = load_poetry(project, cache, monkeypatch)
    spec = spec_for(poetry, **cli)
    check_lock(poetry)
    return make_plan(poetry, spec, env_for(spec))


def _names(plan) -> list[str]:
    return [p.name for p in plan.packages]


def test_main_group_for_the_target(world, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(world["svc"], world["cache"], monkeypatch)
    # win-inet-pton is for Windows only, pytest is in dev, extrapkg is an extra not asked for
    assert _names(plan) == ["aws-requests-auth", "certifi", "charset-normalizer", "idna", "requests", "urllib3"]
    assert plan.warnings == ()


def test_groups_and_extras(world, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(world["svc"], world["cache"], monkeypatch, **{"with": ["dev"], "extras": ["fancy"]})
    assert {"pytest", "iniconfig", "extrapkg"} <= set(_names(plan))
    assert "colorama" not in _names(plan)  # a Windows marker, evaluated for Linux


def test_exclude_drops_what_only_the_excluded_package_needs(world, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(world["svc"], world["cache"], monkeypatch, exclude=["requests"])
    assert _names(plan) == ["aws-requests-auth"]
    assert plan.warnings == (
        "requests is excluded, but aws-requests-auth needs it: it must come from the Lambda runtime or a layer.",
    )


def test_a_dependency_named_like_the_non_package_project_folder_is_planned(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    poetry = load_poetry(world["requests"], world["cache"], monkeypatch)
    assert not compat.project_is_package(poetry)
    assert compat.declared_name(poetry) is None  # poetry-core's placeholder is not a name
    spec = spec_for(poetry, include=["lambda_function.py"])
    assert spec.project.name == "requests"  # the folder's name
    plan = make_plan(poetry, spec, env_for(spec))
    assert _names(plan) == ["certifi", "charset-normalizer", "idna", "requests", "urllib3"]


def test_missing_and_stale_lock(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "svc"
    project.mkdir()
    (project / "pyproject.toml").write_text((world["svc"] / "pyproject.toml").read_text())
    (project / "svc").mkdir()
    (project / "svc" / "__init__.py").write_text("")
    with pytest.raises(LockError, match="No poetry.lock"):
        check_lock(load_poetry(project, world["cache"], monkeypatch))
    (project / "poetry.lock").write_text((world["svc"] / "poetry.lock").read_text())
    check_lock(load_poetry(project, world["cache"], monkeypatch))
    text = (project / "pyproject.toml").read_text().replace('aws-requests-auth = "0.4.3"\n', "")
    (project / "pyproject.toml").write_text(text)
    with pytest.raises(LockError, match="out of date"):
        check_lock(load_poetry(project, world["cache"], monkeypatch))


@pytest.mark.parametrize("lock", ["garbage = = =\n", '[[package]]\nname = "x"\n'])
def test_unreadable_lock_is_a_clear_error(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: str) -> None:
    project = tmp_path / "svc"
    project.mkdir()
    (project / "pyproject.toml").write_text((world["svc"] / "pyproject.toml").read_text())
    (project / "poetry.lock").write_text(lock)
    with pytest.raises(LockError, match="poetry.lock cannot be read: .* Run `poetry lock`"):
        check_lock(load_poetry(project, world["cache"], monkeypatch))


def test_target_env_describes_the_target_not_the_host(world, monkeypatch: pytest.MonkeyPatch) -> None:
    poetry = load_poetry(world["svc"], world["cache"], monkeypatch)
    env = env_for(spec_for(poetry, runtime="python3.12", architecture="arm64"))
    assert env.marker_env["platform_machine"] == "aarch64"
    assert env.marker_env["sys_platform"] == "linux"
    assert env.marker_env["python_version"] == "3.12"
    assert tuple(env.version_info[:2]) == (3, 12)
    assert Tag("cp312", "cp312", "manylinux_2_17_aarch64") in env.supported_tags
    assert all("x86_64" not in tag.platform for tag in env.supported_tags)


# apply_exclusions on its own ------------------------------------------------------------------


def _pkg(name: str, *requires: str) -> Package:
    package = Package(name, "1.0")
    for requirement in requires:
        package.add_dependency(Dependency.create_from_pep_508(requirement))
    return package


LINUX = {"sys_platform": "linux", "python_version": "3.12", "platform_machine": "x86_64"}


def _exclude(packages: list[Package], roots: list[str], exclude: set[str], locked: set[str] = frozenset()):
    requires = {(p.name, p.version): p.requires for p in packages}
    root_deps = [Dependency.create_from_pep_508(r) for r in roots]
    return apply_exclusions(packages, root_deps, frozenset(exclude), LINUX, requires, frozenset(locked))


def test_exclusions_keep_what_another_root_still_needs() -> None:
    packages = [_pkg("boto3", "botocore"), _pkg("botocore", "jmespath"), _pkg("jmespath"), _pkg("app", "jmespath")]
    plan = _exclude(packages, ["boto3", "app"], {"boto3"})
    assert {p.name for p in plan.packages} == {"jmespath", "app"}
    assert plan.warnings == ()


def test_exclusions_follow_markers_and_requested_extras() -> None:
    packages = [
        _pkg("psycopg", 'psycopg-binary; extra == "binary"', 'tzdata; sys_platform == "win32"'),
        _pkg("psycopg-binary"),
        _pkg("tzdata"),
    ]
    plan = _exclude(packages, ["psycopg[binary]"], set())
    assert {p.name for p in plan.packages} == {"psycopg", "psycopg-binary"}
    plain = _exclude(packages, ["psycopg"], set())
    assert {p.name for p in plain.packages} == {"psycopg"}


def test_excluding_a_package_others_need_warns() -> None:
    packages = [_pkg("requests", "urllib3"), _pkg("urllib3")]
    plan = _exclude(packages, ["requests"], {"urllib3"})
    assert [p.name for p in plan.packages] == ["requests"]
    assert plan.warnings and "urllib3 is excluded, but requests needs it" in plan.warnings[0]


def test_excluding_an_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"reqests \(did you mean requests\?\)"):
        _exclude([_pkg("requests")], ["requests"], {"reqests"})
    # a locked package this target does not need may be named (one list for every runtime)
    plan = _exclude([_pkg("requests")], ["requests"], {"pywin32"}, locked={"requests", "pywin32"})
    assert [p.name for p in plan.packages] == ["requests"]
