"""Advice that names the fix, through real Poetry: a missing package folder, a retired runtime,
and sdist builds that keep the build tools' banners out of the progress lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.helpers import bundle
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.noisy import noisy_sdist
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import wheel_from_installed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("advice")
    root = base / "index"
    root.mkdir()
    wheel_from_installed(root, "poetry-core")
    build_sdist(root, "docopt", "0.6.2", files={"docopt/__init__.py": "def docopt():\n    return 1\n"})
    noisy_sdist(root)
    with LoopbackIndex(root) as index:
        cache = base / "cache"
        cache.mkdir()
        project = write_project(base / "svc", "svc", dependencies={"docopt": "0.6.2", "noisy": "1.0"}, index_url=index.url,
                                requires_python=">=3.12,<3.13")
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache}


def test_sdist_build_keeps_the_build_tools_banners_out_of_the_output(world, tmp_path: Path) -> None:
    result = bundle(world["project"], world["cache"], "-o", str(tmp_path / "q.zip"))
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert not [line for line in lines if "BANNER" in line or "DEPRECATION" in line], lines
    assert any("Building noisy (1.0)" in line for line in lines)


def test_with_v_the_build_tools_output_is_shown(world, tmp_path: Path) -> None:
    fresh = tmp_path / "cache"  # an empty cache: the sdist is built again
    fresh.mkdir()
    result = bundle(world["project"], fresh, "-v", "-o", str(tmp_path / "v.zip"))
    assert result.returncode == 0, result.stderr
    assert "BANNER" in result.stdout + result.stderr or "DEPRECATION" in result.stdout + result.stderr


def test_missing_package_folder_says_what_to_write(world, tmp_path: Path) -> None:
    project = world["project"]
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text()
    pyproject.write_text(re.sub(r"^packages = .*\n", "", original, flags=re.M))
    (project / "svc").rename(project / "moved")
    try:
        result = bundle(project, world["cache"], "-o", str(tmp_path / "m.zip"))
    finally:
        (project / "moved").rename(project / "svc")
        pyproject.write_text(original)
    assert result.returncode == 1
    assert "no folder or module svc" in result.stderr and "packages = [" in result.stderr
    assert "package-mode = false" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.zip").exists()


def test_a_link_out_of_the_project_in_its_package_is_named_not_a_bug(world, tmp_path: Path) -> None:
    """poetry-core cannot build a wheel holding a symlink that leads out of the project (its
    ValueError): one line saying what it probably is and what to do."""
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    link = world["project"] / "svc" / "creds.txt"
    link.symlink_to(outside)
    try:
        result = bundle(world["project"], world["cache"], "-o", str(tmp_path / "l.zip"))
    finally:
        link.unlink()
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and "unexpectedly" not in message, message
    assert "cannot build svc's wheel" in message and "symlink" in message and str(outside) in message
    assert not (tmp_path / "l.zip").exists()


@pytest.mark.parametrize("runtime", ["python3.8", "python3.7"])
def test_retired_runtime_names_the_nearest_supported_one(world, runtime: str) -> None:
    result = bundle(world["project"], world["cache"], "--runtime", runtime)
    assert result.returncode == 1
    assert f"the {runtime} runtime is retired" in result.stderr
    assert "nearest supported runtime is python3.12" in result.stderr  # the project allows 3.12 only
