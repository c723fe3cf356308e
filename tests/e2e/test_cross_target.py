"""Cross-target: wheels chosen for the target's tags, sdists built only when pure, per-runtime pins."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.e2e.helpers import bundle
from tests.e2e.helpers import dist_infos
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import wheel_from_installed


def _native_sdist(dest: Path, name: str, version: str) -> Path:
    """A poetry-core sdist with a build script: it builds a wheel tagged for the host."""
    top = f"{name}-{version}"
    files = {
        f"{top}/pyproject.toml": (
            f'[tool.poetry]\nname = "{name}"\nversion = "{version}"\ndescription = ""\n'
            'authors = ["x <x@example.invalid>"]\n'
            f'packages = [{{include = "{name}"}}]\n'
            '[tool.poetry.build]\nscript = "build.py"\ngenerate-setup-file = false\n'
            '[tool.poetry.dependencies]\npython = ">=3.8"\n'
            '[build-system]\nrequires = ["poetry-core>=1.0.0"]\n'
            'build-backend = "poetry.core.masonry.api"\n'
        ),
        f"{top}/build.py": "def build(setup_kwargs=None):\n    pass\n\nif __name__ == '__main__':\n    build()\n",
        f"{top}/{name}/__init__.py": "X = 1\n",
        f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    return _tar(dest, top, files)


def _failing_sdist(dest: Path, name: str, version: str) -> Path:
    """An sdist whose (in-tree) build backend fails the way a macOS-only package does on Linux."""
    top = f"{name}-{version}"
    files = {
        f"{top}/pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        f"{top}/backend.py": (
            "import sys\n\n\ndef get_requires_for_build_wheel(config_settings=None):\n"
            "    print('running egg_info')\n"
            f"    sys.exit('error: {name} requires macOS to build')\n\n\n"
            "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
            "    raise SystemExit(1)\n"
        ),
        f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    return _tar(dest, top, files)


def _tar(dest: Path, top: str, files: dict[str, str]) -> Path:
    path = dest / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("cross")
    root = base / "index"
    root.mkdir()
    wheel_from_installed(root, "poetry-core")
    build_sdist(root, "docopt", "0.6.2", files={"docopt/__init__.py": "def docopt():\n    return 'pure sdist'\n"})
    _native_sdist(root, "nativepkg", "1.0")
    _failing_sdist(root, "macpkg", "1.0")
    build_wheel(root, "multi", "1.0", files={"multi/__init__.py": "V = '1.0'\n"})
    build_wheel(root, "multi", "2.0", files={"multi/__init__.py": "V = '2.0'\n"}, requires_python=">=3.10")
    # wheels that no Lambda target may use
    build_wheel(root, "exotic", "1.0", tag="cp312-cp312-musllinux_1_2_x86_64")
    build_wheel(root, "exotic", "1.0", tag="cp313-cp313t-manylinux_2_17_x86_64")
    build_wheel(root, "exotic", "1.0", tag="cp312-cp312-manylinux_2_39_x86_64")
    build_wheel(root, "exotic", "1.0", tag="cp312-cp312-macosx_11_0_arm64")
    build_wheel(root, "exotic", "1.0", tag="cp312-cp312-win_amd64")
    build_wheel(root, "exotic", "1.0", tag="cp312-cp312-linux_x86_64")
    with LoopbackIndex(root) as index:
        yield {"index": index, "base": base}


def _project(world, tmp_path: Path, deps: dict, requires_python: str = ">=3.9,<3.14") -> tuple[Path, Path]:
    cache = tmp_path / "cache"
    cache.mkdir()
    project = write_project(tmp_path / "svc", "svc", dependencies=deps, index_url=world["index"].url,
                            requires_python=requires_python)
    poetry_lock(project, cache)
    return project, cache


def test_pure_sdist_is_built_once_and_bundled(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"docopt": "0.6.2"})
    first = bundle(project, cache, "--runtime", "python3.12", "--format", "json")
    assert first.returncode == 0, first.stderr
    assert "Building docopt" in first.stderr
    files = zip_files(Path(first.report["zip"]))
    assert b"pure sdist" in files["docopt/__init__.py"]
    assert "docopt-0.6.2.dist-info/METADATA" in files
    second = bundle(project, cache, "--runtime", "python3.12", "--arch", "arm64", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert "Building docopt" not in second.stderr  # the built wheel is cached beside the sdist
    (built,) = (cache / "artifacts").rglob("docopt-0.6.2-py3-none-any.whl")
    for damage in (built.read_bytes()[:-30], b""):  # truncated, emptied: built again, never used
        built.write_bytes(damage)
        again = bundle(project, cache, "--runtime", "python3.12", "--format", "json", "-o", "dist/again.zip")
        assert again.returncode == 0, again.stderr
        assert "Building docopt" in again.stderr
        assert zip_files(Path(again.report["zip"])) == files


def test_native_sdist_is_refused_with_the_tags_and_what_to_do(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"nativepkg": "1.0"})
    result = bundle(project, cache, "--runtime", "python3.12")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for needle in ("nativepkg 1.0", "python3.12 x86_64", "a wheel for this machine", "Wheel tags in the lock: none", "Pin a version"):
        assert needle in result.stderr, result.stderr
    assert "Building nativepkg (1.0) from nativepkg-1.0.tar.gz (no wheel in the lock fits python3.12 x86_64" in result.stdout
    assert not list(project.rglob("*.zip"))
    again = bundle(project, cache, "--runtime", "python3.12")  # said at once: the build is not made again
    assert again.returncode == 1
    assert "Building nativepkg" not in again.stdout, again.stdout
    for needle in ("an earlier build of nativepkg-1.0.tar.gz gave nativepkg-1.0-cp", "delete it to build again", "Pin a version"):
        assert needle in again.stderr, again.stderr


def test_a_failed_build_shows_its_own_error_not_poetrys_advice(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"macpkg": "1.0"})
    result = bundle(project, cache, "--runtime", "python3.12")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "failed: error: macpkg requires macOS to build" in result.stderr, result.stderr
    assert "pip wheel" not in result.stderr
    verbose = bundle(project, cache, "--runtime", "python3.12", "-v")  # -v: the build's whole output
    assert "running egg_info" in verbose.stdout + verbose.stderr


def test_each_runtime_gets_the_version_locked_for_its_python(world, tmp_path: Path) -> None:
    deps = {"multi": [{"version": "1.0", "python": "<3.10"}, {"version": "2.0", "python": ">=3.10"}]}
    project, cache = _project(world, tmp_path, deps)
    old = bundle(project, cache, "--runtime", "python3.9", "--format", "json")
    new = bundle(project, cache, "--runtime", "python3.12", "--format", "json")
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert "multi-1.0.dist-info" in dist_infos(Path(old.report["zip"]))
    assert "multi-2.0.dist-info" in dist_infos(Path(new.report["zip"]))


def test_wheels_for_other_platforms_are_never_chosen(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"exotic": "1.0"})
    result = bundle(project, cache, "--runtime", "python3.12")
    assert result.returncode == 1
    assert "No wheel of exotic 1.0 fits python3.12 x86_64" in result.stderr
    assert "cp312-cp312-musllinux_1_2_x86_64" in result.stderr  # the tags the lock has are listed
    assert not list(project.rglob("*.zip"))


def test_requires_python_excluding_the_runtime_fails_before_any_download(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"multi": "2.0"}, requires_python=">=3.12,<3.14")
    index: LoopbackIndex = world["index"]
    before = len(index.requests)
    result = bundle(project, cache, "--runtime", "python3.11")
    assert result.returncode == 1
    assert "excludes the python3.11 runtime" in result.stderr
    assert index.requests[before:] == []


def test_runtime_defaults_to_the_only_one_the_project_allows(world, tmp_path: Path) -> None:
    project, cache = _project(world, tmp_path, {"multi": "2.0"}, requires_python=">=3.13,<3.14")
    result = bundle(project, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.report["runtime"] == "python3.13"
    with zipfile.ZipFile(result.report["zip"]) as zf:
        assert "multi/__init__.py" in zf.namelist()
