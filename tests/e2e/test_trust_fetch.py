"""Trust at the fetch edge, through a real `poetry lambda-bundle`: no dependency dropped, no
credentials shipped or printed, Poetry's binary settings obeyed, no unverifiable download."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Bundled
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import dist_infos
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import wheel_from_installed

pytestmark = pytest.mark.compat

TOKEN = "tok-9f3a7c1e55b2"
PY312 = ("--runtime", "python3.12")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("trustfetch") / "index"
    wheel_from_installed(root, "poetry-core")  # the build backend of the sdists
    build_wheel(root, "requests", "2.32.3", requires=["idna>=2.5"])
    build_wheel(root, "idna", "3.7")
    build_sdist(root, "onlysdist", "1.0")
    build_wheel(root, "both", "1.0", files={"both/__init__.py": 'SOURCE = "wheel"\n'})
    build_sdist(root, "both", "1.0", files={"both/__init__.py": 'SOURCE = "sdist"\n'})
    with LoopbackIndex(root) as served:
        yield served


@pytest.fixture
def private(tmp_path: Path):
    """A server that wants basic auth: user `user`, password TOKEN."""
    with LoopbackIndex(tmp_path / "private", auth=("user", TOKEN)) as served:
        yield served


def _cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    return cache


def _no_token_anywhere(result: Bundled, *folders: Path) -> None:
    assert TOKEN not in result.stdout + result.stderr
    for folder in folders:
        for name, data in dir_files(folder, ignore=()).items():
            assert TOKEN.encode() not in data, name


def test_a_dependency_named_like_the_project_folder_ships(index: LoopbackIndex, tmp_path: Path) -> None:
    """A nameless `package-mode = false` project in a folder `requests/` still bundles requests."""
    project = tmp_path / "requests"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.poetry]\npackage-mode = false\n'
        '[tool.poetry.dependencies]\npython = ">=3.12,<3.13"\nrequests = "2.32.3"\n'
        f'[[tool.poetry.source]]\nname = "loopback"\nurl = "{index.url}"\npriority = "primary"\n'
        '[tool.lambda-bundle]\ninclude = ["lambda_function.py"]\n'
    )
    (project / "lambda_function.py").write_text("import requests\n")
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    result = bundle(project, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert {"requests-2.32.3.dist-info", "idna-3.7.dist-info"} <= dist_infos(Path(result.report["zip"]))
    assert ("requests", "2.32.3") in {(p["name"], p["version"]) for p in result.report["packages"]}


@pytest.mark.parametrize("removed", ["idna", "requests"])
@pytest.mark.parametrize("lock_version", ["2.1", "2.0"])
def test_a_package_missing_from_the_lock_is_refused_in_one_line(
    index: LoopbackIndex, tmp_path: Path, removed: str, lock_version: str
) -> None:
    """A lock edited by hand or merged badly: Poetry's walk of a 2.1 lock skips a requirement it
    has no package for, which would ship a bundle without it (a direct dependency too)."""
    import tomlkit

    project = write_project(tmp_path / "svc", "svc", dependencies={"requests": "2.32.3"}, index_url=index.url,
                            requires_python=">=3.12,<3.13")
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    lock = tomlkit.parse((project / "poetry.lock").read_text())
    lock["package"] = [p for p in lock["package"] if p["name"] != removed]
    lock["metadata"]["lock-version"] = lock_version
    (project / "poetry.lock").write_text(tomlkit.dumps(lock))
    result = bundle(project, cache, *PY312)
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert removed in message and "poetry lock" in message, message
    assert not (project / "dist").exists() and not (project / "build").exists()


def _edit_requests(lock: Any, edit: str) -> None:
    requests = next(p for p in lock["package"] if p["name"] == "requests")
    if edit == "package marker":
        requests["markers"] = "python_version >>> '3'"
    elif edit == "dependency marker":
        requests["dependencies"]["idna"] = {"version": ">=2.5", "markers": "foo_bar == '1'"}
    elif edit == "version":
        requests["version"] = "not a version!!"
    elif edit == "constraint":
        requests["dependencies"]["idna"] = ">=>=1,,"
    elif edit == "python-versions":
        requests["python-versions"] = ">>>3"
    elif edit == "file without hash":
        del requests["files"][0]["hash"]
    elif edit == "files a string":
        requests["files"] = "x"
    else:
        del requests["files"]


@pytest.mark.parametrize("edit", [
    "package marker", "dependency marker", "version", "constraint", "python-versions",
    "file without hash", "files a string", "no files",
])  # fmt: skip
def test_a_lock_poetry_cannot_parse_is_refused_in_one_line(index: LoopbackIndex, tmp_path: Path, edit: str) -> None:
    """A lock edited by hand or merged badly, which Poetry's parsers (or the files list) refuse:
    one line that says so and how to fix it, not the message for a bug of ours."""
    import tomlkit

    project = write_project(tmp_path / "svc", "svc", dependencies={"requests": "2.32.3"}, index_url=index.url,
                            requires_python=">=3.12,<3.13")
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    lock = tomlkit.parse((project / "poetry.lock").read_text())
    _edit_requests(lock, edit)
    (project / "poetry.lock").write_text(tomlkit.dumps(lock))
    result = bundle(project, cache, *PY312)
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "unexpectedly" not in message, message
    assert message.startswith("poetry.lock cannot be read: ") and message.endswith("Run `poetry lock` to write it again."), message
    assert not (project / "dist").exists() and not (project / "build").exists()


def test_a_locked_version_that_is_not_the_files_is_refused(index: LoopbackIndex, tmp_path: Path) -> None:
    """The lock says idna 9.9 and lists idna-3.7's wheel (its hash right): the report would name a
    version the bundle does not ship."""
    import tomlkit

    project = write_project(tmp_path / "svc", "svc", dependencies={"requests": "2.32.3"}, index_url=index.url,
                            requires_python=">=3.12,<3.13")
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    lock = tomlkit.parse((project / "poetry.lock").read_text())
    for package in lock["package"]:
        if package["name"] == "idna":
            package["version"] = "9.9"
    (project / "poetry.lock").write_text(tomlkit.dumps(lock))
    result = bundle(project, cache, *PY312)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "poetry.lock gives idna version 9.9, but the file it lists for it, idna-3.7-py3-none-any.whl, is version 3.7" in result.stderr
    assert not (project / "dist").exists()


# A password may hold an @ that was not percent-encoded: the host is after the last one. Both
# hold TOKEN, so any piece of either that leaks is found.
PASSWORDS = [TOKEN, f"p@ss-{TOKEN}"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_url_dependency_credentials_never_ship(index: LoopbackIndex, tmp_path: Path, password: str) -> None:
    with LoopbackIndex(tmp_path / "private", auth=("user", password)) as private:
        wheel = private.add(build_wheel(tmp_path / "built", "privwheel", "1.0"))
        port = private.port
        url = f"http://user:{password}@127.0.0.1:{port}/files/{wheel.name}?a=1&private_token={TOKEN}"
        project = write_project(
            tmp_path / "svc", "svc", dependencies={"privwheel": {"url": url}},
            index_url=index.url, requires_python=">=3.12,<3.13",
        )
        cache = _cache(tmp_path)
        poetry_lock(project, cache)
        result = bundle(project, cache, "--format", "json", "-vvv")
    assert result.returncode == 0, result.stderr
    assert result.report["zip"]  # stdout is the JSON report alone, even with -vvv (else it fails to parse)
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    metadata = files["svc-0.1.0.dist-info/METADATA"].decode()
    # the project's own wheel still says where privwheel comes from, without the credentials
    assert f"privwheel @ http://127.0.0.1:{port}/files/{wheel.name}?a=1&private_token=***" in metadata
    assert "privwheel/__init__.py" in files
    _no_token_anywhere(result, Path(result.report["target_dir"]))
    for name, data in files.items():
        assert TOKEN.encode() not in data, name


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("where", ["url dependency", "source"])
def test_credentials_in_urls_are_never_printed_even_with_vvv(
    index: LoopbackIndex, tmp_path: Path, where: str, password: str
) -> None:
    """Poetry's own lines (its debug lines, its logger's warnings, its network errors) quote a
    source's URL or a host as `user:password@host`: no line printed carries the password, at any
    verbosity, when the server is down or refuses it."""
    with LoopbackIndex(tmp_path / "private", auth=("user", password)) as private:
        wheel = private.add(build_wheel(tmp_path / "built", "privwheel", "1.0"))
        secret_url = private.url.replace("http://", f"http://user:{password}@")
        if where == "url dependency":
            url = f"http://user:{password}@127.0.0.1:{private.port}/files/{wheel.name}"
            project = write_project(tmp_path / "svc", "svc", dependencies={"privwheel": {"url": url}},
                                    index_url=index.url, requires_python=">=3.12,<3.13")
        else:
            project = write_project(tmp_path / "svc", "svc", dependencies={"privwheel": "1.0"},
                                    index_url=secret_url, requires_python=">=3.12,<3.13")
        poetry_lock(project, _cache(tmp_path))
    for verbosity in ("-v", "-vv", "-vvv"):  # the server is down; every run has an empty cache
        result = bundle(project, tmp_path / f"cold{verbosity}", verbosity)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "privwheel" in result.stderr
        _no_token_anywhere(result)


def _lie_in_record(wheel: Path, member: str) -> None:
    """Rewrite `wheel` so that its RECORD gives `member` another file's hash."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        items = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in items:
            if info.filename.endswith("/RECORD"):
                lines = data.decode().splitlines()
                data = "\n".join(
                    f"{member},sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0" if line.startswith(f"{member},") else line
                    for line in lines
                ).encode() + b"\n"
            zf.writestr(info, data)


def test_a_wheel_whose_record_lies_is_refused_and_a_true_one_checked_once(tmp_path: Path) -> None:
    """The lock's hash says the wheel is the file that was locked; its RECORD must also say the
    truth about its files, or the bundle's RECORD would ship the lie. Each wheel file is held to
    its RECORD once: the fact is kept in the cache by its sha256."""
    root = tmp_path / "index"
    build_wheel(root, "honest", "1.0")
    _lie_in_record(build_wheel(root, "liar", "1.0"), "liar/__init__.py")
    with LoopbackIndex(root) as served:
        project = write_project(tmp_path / "svc", "svc", dependencies={"honest": "1.0", "liar": "1.0"},
                                index_url=served.url, requires_python=">=3.12,<3.13")
        cache = _cache(tmp_path)
        poetry_lock(project, cache)
        result = bundle(project, cache, *PY312)
        assert result.returncode == 1, result.stdout + result.stderr
        message = result.stderr.strip()
        assert "\n" not in message and message.startswith("liar-1.0-py3-none-any.whl: liar/__init__.py does not match"), message
        assert not (project / "dist").exists()
        assert len(list((cache / "lambda-bundle" / "archives").glob("*/*.parsed"))) == 1  # honest's
        result = bundle(project, cache, *PY312, "--exclude", "liar")
        assert result.returncode == 0, result.stderr


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                        "PATH": "/usr/bin:/bin"})


def test_a_failed_git_clone_does_not_print_the_token(index: LoopbackIndex, private: LoopbackIndex, tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    (upstream / "gitdep").mkdir(parents=True)
    (upstream / "gitdep" / "__init__.py").write_text("")
    (upstream / "pyproject.toml").write_text(
        '[project]\nname = "gitdep"\nversion = "1.0"\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    subprocess.run(["git", "init", "-q", "-b", "main", str(upstream)], check=True)
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-q", "-m", "v1")
    project = write_project(
        tmp_path / "svc", "svc", dependencies={"gitdep": {"git": f"file://{upstream}", "branch": "main"}},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    # The lock now names a private remote, with a token the server refuses.
    lock = project / "poetry.lock"
    remote = f"http://user:wrong-{TOKEN}@127.0.0.1:{private.port}/gitdep.git"
    text = lock.read_text()
    changed = re.sub(r'url = "file://[^"]*upstream"', f'url = "{remote}"', text)
    assert changed != text
    lock.write_text(changed)
    result = bundle(project, cache, "-v")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Could not clone gitdep" in result.stderr
    assert f"127.0.0.1:{private.port}/gitdep.git" in result.stderr
    _no_token_anywhere(result)


@pytest.fixture
def binaries(index: LoopbackIndex, tmp_path: Path) -> tuple[Path, Path]:
    project = write_project(
        tmp_path / "svc", "svc", dependencies={"onlysdist": "1.0", "both": "1.0"},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    return project, cache


@pytest.mark.parametrize("setting", [":all:", "onlysdist"])
def test_only_binary_refuses_an_sdist_only_dependency(binaries: tuple[Path, Path], setting: str) -> None:
    project, cache = binaries
    result = bundle(project, cache, extra_env={"POETRY_INSTALLER_ONLY_BINARY": setting})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "onlysdist" in result.stderr and "installer.only-binary" in result.stderr
    assert "Building" not in result.stdout + result.stderr  # no build backend ran
    assert not (project / "dist" / "lambda").exists()


def test_no_binary_builds_the_named_package_from_its_sdist(binaries: tuple[Path, Path]) -> None:
    project, cache = binaries
    wheel = bundle(project, cache, "--format", "json")
    assert wheel.returncode == 0, wheel.stderr
    assert zip_files(Path(wheel.report["zip"]))["both/__init__.py"] == b'SOURCE = "wheel"\n'
    built = bundle(project, cache, "--format", "json", extra_env={"POETRY_INSTALLER_NO_BINARY": "both"})
    assert built.returncode == 0, built.stderr
    assert re.search(r"Building both \(1\.0\)", built.stderr)
    assert zip_files(Path(built.report["zip"]))["both/__init__.py"] == b'SOURCE = "sdist"\n'


def test_url_dependency_without_a_lock_hash_is_refused(index: LoopbackIndex, tmp_path: Path) -> None:
    wheel = index.add(build_wheel(tmp_path / "built", "urlwheel", "3.0"))
    url = index.url.replace("/simple/", f"/files/{wheel.name}")
    project = write_project(
        tmp_path / "svc", "svc", dependencies={"urlwheel": {"url": url}},
        index_url=index.url, requires_python=">=3.12,<3.13",
    )
    cache = _cache(tmp_path)
    poetry_lock(project, cache)
    lock = project / "poetry.lock"
    text = lock.read_text()
    without_hash = re.sub(r'files = \[\n    \{file = "urlwheel[^\n]*\n\]', "files = []", text)
    assert without_hash != text
    lock.write_text(without_hash)
    before = len(index.requests)
    result = bundle(project, cache)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "poetry.lock records no hash for urlwheel (3.0)" in result.stderr and "poetry lock" in result.stderr
    assert not [r for r in index.requests[before:] if r.startswith("/files/")]  # nothing downloaded
