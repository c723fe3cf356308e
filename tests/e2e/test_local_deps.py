"""Path, git, file and URL dependencies; extras; the shared-library story of a monorepo."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.helpers import bundle
from tests.e2e.helpers import dist_infos
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.interpreters import run_handler
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import wheel_from_installed

SERVICE_HANDLER = '''\
from importlib.resources import files

import myco_shared


def handler(event, context):
    template = files("myco_shared").joinpath("templates/email.txt").read_text()
    return {"greeting": myco_shared.greet(event["name"]), "template": template.strip()}
'''


def _shared_library(root: Path) -> Path:
    """A sibling library in src layout, with package data and its own registry dependency."""
    lib = root / "libs" / "myco-shared"
    pkg = lib / "src" / "myco_shared"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import tinydep\n\ndef greet(name):\n    return f'hello {name} ({tinydep.hello()})'\n")
    (pkg / "templates" / "email.txt").write_text("Dear customer\n")
    (lib / "pyproject.toml").write_text(
        '[project]\nname = "myco-shared"\nversion = "1.2.3"\nrequires-python = ">=3.9"\n'
        'dependencies = ["tinydep>=1"]\n'
        '[tool.poetry]\npackages = [{include = "myco_shared", from = "src"}]\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    return lib


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("localdeps") / "index"
    root.mkdir()
    wheel_from_installed(root, "poetry-core")
    build_wheel(root, "tinydep", "1.0")
    build_wheel(root, "extrapkg", "1.0")
    build_wheel(root, "pytest", "8.0.0")
    with LoopbackIndex(root) as served:
        yield served


def _lock(project: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    poetry_lock(project, cache)
    return cache


def test_monorepo_service_with_a_develop_path_dependency(index: LoopbackIndex, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _shared_library(repo)
    service = write_project(
        repo / "services" / "billing", "billing",
        dependencies={"myco-shared": {"path": "../../libs/myco-shared", "develop": True},
                      "extrapkg": {"version": "1.0", "optional": True}},
        groups={"dev": {"pytest": "^8"}},
        extras={"fancy": ["extrapkg"]},
        index_url=index.url, requires_python=">=3.12,<3.13", handler_source=SERVICE_HANDLER,
    )
    cache = _lock(service, tmp_path)
    result = bundle(service, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert {"myco_shared/__init__.py", "myco_shared/templates/email.txt", "tinydep/__init__.py",
            "billing/handler.py"} <= set(files)
    assert not [n for n in files if n.endswith(".pth") or n.startswith("pytest")]
    assert "extrapkg/__init__.py" not in files
    for name, data in files.items():
        assert str(repo).encode() not in data, name  # no absolute path of this machine
    python = find_python("3.12")
    if python is not None:
        unzipped = tmp_path / "unzipped"
        with zipfile.ZipFile(result.report["zip"]) as zf:
            zf.extractall(unzipped)
        assert run_handler(python, unzipped, "billing.handler") == (
            '{"greeting": "hello test (tinydep 1.0)", "template": "Dear customer"}'
        )
    extra = bundle(service, cache, "-E", "fancy", "--format", "json", "-o", str(tmp_path / "fancy.zip"))
    assert extra.returncode == 0, extra.stderr
    assert "extrapkg/__init__.py" in zip_files(Path(extra.report["zip"]))


@pytest.mark.parametrize("edit", ["new requirement", "new version"])
def test_a_path_dependency_edited_since_the_lock_is_refused(index: LoopbackIndex, tmp_path: Path, edit: str) -> None:
    """Poetry's lock check covers only the project's own pyproject.toml: a sibling library that
    gained a requirement (or a version) since the lock was written must not ship without it."""
    repo = tmp_path / "repo"
    lib = _shared_library(repo)
    service = write_project(
        repo / "services" / "billing", "billing", dependencies={"myco-shared": {"path": "../../libs/myco-shared"}},
        index_url=index.url, requires_python=">=3.12,<3.13", handler_source=SERVICE_HANDLER,
    )
    cache = _lock(service, tmp_path)
    first = bundle(service, cache, "--format", "json")
    assert first.returncode == 0, first.stderr
    pyproject = lib / "pyproject.toml"
    if edit == "new requirement":
        pyproject.write_text(pyproject.read_text().replace('"tinydep>=1"', '"tinydep>=1", "extrapkg>=1"'))
        expected = "myco-shared (1.2.3) was built from"
        detail = "now requires extrapkg, which poetry.lock does not list for it"
    else:
        pyproject.write_text(pyproject.read_text().replace('version = "1.2.3"', 'version = "1.3.0"'))
        expected = "myco-shared (1.2.3) was built from"
        detail = "as version 1.3.0, not the locked 1.2.3"
    before = Path(first.report["zip"]).read_bytes()
    result = bundle(service, cache)
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert expected in message and detail in message and "poetry lock" in message, message
    assert Path(first.report["zip"]).read_bytes() == before  # the previous outputs are left as they were


def test_shared_library_kept_in_a_group_ships_with_with(index: LoopbackIndex, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _shared_library(repo)
    service = write_project(
        repo / "svc", "svc", dependencies={},
        groups={"dev": {"pytest": "^8", "myco-shared": {"path": "../libs/myco-shared", "develop": True}}},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _lock(service, tmp_path)
    plain = bundle(service, cache, "--format", "json", "-o", str(tmp_path / "plain.zip"))
    assert plain.returncode == 0, plain.stderr
    assert "myco_shared-1.2.3.dist-info" not in dist_infos(Path(plain.report["zip"]))
    with_dev = bundle(service, cache, "--with", "dev", "--format", "json", "-o", str(tmp_path / "dev.zip"))
    assert with_dev.returncode == 0, with_dev.stderr
    assert {"myco_shared-1.2.3.dist-info", "tinydep-1.0.dist-info"} <= dist_infos(Path(with_dev.report["zip"]))
    only = bundle(service, cache, "--only", "dev", "--layout", "layer", "--format", "json", "-o", str(tmp_path / "only.zip"))
    assert only.returncode == 0, only.stderr
    unknown = bundle(service, cache, "--with", "nope")
    assert unknown.returncode == 1 and "group 'nope'" in unknown.stderr


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                               "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_git_dependency_with_tag_and_subdirectory(index: LoopbackIndex, tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    _shared_library(upstream)
    subprocess.run(["git", "init", "-q", "-b", "main", str(upstream)], check=True)
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-q", "-m", "v1")
    _git(upstream, "tag", "v1.2.3")
    service = write_project(
        tmp_path / "svc", "svc",
        dependencies={"myco-shared": {"git": f"file://{upstream}", "tag": "v1.2.3", "subdirectory": "libs/myco-shared"}},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _lock(service, tmp_path)
    result = bundle(service, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert "myco_shared/templates/email.txt" in files and "tinydep/__init__.py" in files
    assert ("myco-shared", "1.2.3") in {(p["name"], p["version"]) for p in result.report["packages"]}
    again = bundle(service, cache, "--format", "json", "-o", str(tmp_path / "again.zip"))
    assert again.returncode == 0 and "Cloning" not in again.stderr  # built once per commit
    assert again.report["sha256"] == result.report["sha256"]


def test_wheel_sdist_and_url_dependencies(index: LoopbackIndex, tmp_path: Path) -> None:
    files_dir = tmp_path / "artifacts"
    wheel = build_wheel(files_dir, "localwheel", "1.0")
    sdist = build_sdist(files_dir, "localsdist", "2.0")
    urlwheel = index.add(build_wheel(tmp_path / "u", "urlwheel", "3.0"))
    url = index.url.replace("/simple/", f"/files/{urlwheel.name}")
    service = write_project(
        tmp_path / "svc", "svc",
        dependencies={"localwheel": {"path": str(wheel)}, "localsdist": {"path": str(sdist)},
                      "urlwheel": {"url": url}},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _lock(service, tmp_path)
    result = bundle(service, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    names = dist_infos(Path(result.report["zip"]))
    assert {"localwheel-1.0.dist-info", "localsdist-2.0.dist-info", "urlwheel-3.0.dist-info"} <= names
    # a wheel file changed after locking is refused
    build_wheel(files_dir, "localwheel", "1.0", files={"localwheel/__init__.py": "CHANGED = 1\n"})
    changed = bundle(service, cache, "-o", str(tmp_path / "changed.zip"))
    assert changed.returncode == 1 and "Hash mismatch for localwheel 1.0" in changed.stderr
