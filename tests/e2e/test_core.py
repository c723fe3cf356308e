"""The core issue end to end: a project like a real service, bundled through a real `poetry`."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import tomlkit

from tests.e2e.helpers import HANDLER
from tests.e2e.helpers import build_core_wheels
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import dist_infos
from tests.e2e.helpers import elf_machine
from tests.e2e.helpers import write_devlib
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.interpreters import run_handler
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project

pytestmark = pytest.mark.compat

MAIN_DIST_INFOS = {
    "aws_requests_auth-0.4.3.dist-info",
    "certifi-2024.2.2.dist-info",
    "charset_normalizer-3.3.2.dist-info",
    "idna-3.7.dist-info",
    "requests-2.32.3.dist-info",
    "urllib3-2.2.1.dist-info",
    "service-0.1.0.dist-info",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A served index and a locked service (main: requests, aws-requests-auth; dev: boto3,
    pytest, a relative path dependency), locked once for the module."""
    base = tmp_path_factory.mktemp("core")
    index_root = base / "index"
    index_root.mkdir()
    build_core_wheels(index_root)
    with LoopbackIndex(index_root) as index:
        repo = base / "repo"
        write_devlib(repo)
        write_project(
            repo / "service",
            "service",
            dependencies={
                "requests": "^2.32",
                "aws-requests-auth": "^0.4",
                "tomli": {"version": "^2", "python": "<3.11"},
            },
            groups={"dev": {"boto3": "^1.34", "pytest": "^8", "devlib": {"path": "../devlib", "develop": True}}},
            index_url=index.url,
            handler_source=HANDLER,
        )
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(repo / "service", cache)
        yield {"repo": repo, "index": index, "cache": cache}


@pytest.fixture
def service(world, tmp_path: Path) -> Path:
    """A private copy of the locked repository for one test."""
    repo = tmp_path / "repo"
    shutil.copytree(world["repo"], repo)
    return repo / "service"


def test_bundle_holds_exactly_the_locked_main_packages_for_the_target(world, service: Path) -> None:
    result = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = result.report
    out = Path(report["zip"])
    assert out == service / "dist" / "lambda" / "service-0.1.0-python3.11-x86_64.zip"
    assert dist_infos(out) == MAIN_DIST_INFOS

    files = zip_files(out)
    names = list(files)
    assert names == sorted(names)
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n or n.startswith("bin/")]
    assert not [n for n in names if ".data/" in n]
    so = files["charset_normalizer/md.cpython-311-x86_64-linux-gnu.so"]
    assert elf_machine(so) == 62
    assert b"macOS" not in files["charset_normalizer/__init__.py"]
    for name, data in files.items():
        if name.endswith("RECORD"):
            assert str(service.parent) not in data.decode()

    target_dir = Path(report["target_dir"])
    assert target_dir == service / "build" / "lambda" / "python3.11-x86_64"
    assert dir_files(target_dir) == files

    digest = hashlib.sha256(out.read_bytes()).digest()
    assert report["sha256"] == digest.hex()
    assert report["code_sha256"] == base64.b64encode(digest).decode()
    assert report["size"] == out.stat().st_size
    with zipfile.ZipFile(out) as zf:
        assert report["unzipped_size"] == sum(i.file_size for i in zf.infolist())
        assert zf.testzip() is None
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 in (0o100644, 0o100755)
    assert (report["runtime"], report["architecture"], report["layout"]) == ("python3.11", "x86_64", "bundle")
    assert {(p["name"], p["version"]) for p in report["packages"]} == {
        ("aws-requests-auth", "0.4.3"), ("certifi", "2024.2.2"), ("charset-normalizer", "3.3.2"),
        ("idna", "3.7"), ("requests", "2.32.3"), ("urllib3", "2.2.1"), ("service", "0.1.0"),
    }
    assert report["warnings"] == []

    python = find_python("3.11")
    if python is None:
        pytest.skip("no python3.11 to run the handler with")
    unzipped = service.parent / "unzipped"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unzipped)
    output = run_handler(python, unzipped, "service.handler")
    assert '"charset": "native"' in output and '"requests": "2.32.3"' in output


def test_bundle_is_byte_identical_after_touching_every_source(world, service: Path, tmp_path: Path) -> None:
    first = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert first.returncode == 0, first.stderr
    later = 2_000_000_000
    for path in service.parent.rglob("*"):
        if path.is_file():
            os.utime(path, (later, later))
    fresh_cache = tmp_path / "fresh-cache"
    fresh_cache.mkdir()
    second = bundle(service, fresh_cache, "--runtime", "python3.11", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert first.report["sha256"] == second.report["sha256"]


def test_text_output_names_the_target(world, service: Path) -> None:
    result = bundle(service, world["cache"], "--runtime", "python3.11", "--arch", "arm64")
    assert result.returncode == 0, result.stderr
    assert "python3.11 arm64" in result.stdout
    assert "sha256:" in result.stdout
    out = service / "dist" / "lambda" / "service-0.1.0-python3.11-arm64.zip"
    files = zip_files(out)
    assert elf_machine(files["charset_normalizer/md.cpython-311-aarch64-linux-gnu.so"]) == 183


def test_older_runtime_gets_its_marker_dependencies(world, service: Path) -> None:
    result = bundle(service, world["cache"], "--runtime", "python3.10", "--format", "json")
    assert result.returncode == 0, result.stderr
    names = dist_infos(Path(result.report["zip"]))
    assert "tomli-2.0.1.dist-info" in names
    # no cp310 wheel of charset-normalizer: the pure one is chosen
    assert zip_files(Path(result.report["zip"]))["charset_normalizer/__init__.py"].find(b"pure") > 0


def test_with_group_adds_the_dev_group_and_builds_the_path_dependency(world, service: Path) -> None:
    result = bundle(service, world["cache"], "--runtime", "python3.11", "--with", "dev", "--format", "json")
    assert result.returncode == 0, result.stderr
    names = dist_infos(Path(result.report["zip"]))
    assert {"boto3-1.34.0.dist-info", "devlib-0.1.0.dist-info", "pytest-8.0.0.dist-info"} <= names
    assert "colorama-0.4.6.dist-info" not in names
    files = zip_files(Path(result.report["zip"]))
    assert not [n for n in files if n.endswith(".pth")]


def test_config_table_is_used_and_cli_wins(world, service: Path) -> None:
    pyproject = service / "pyproject.toml"
    doc = tomlkit.parse(pyproject.read_text())
    doc["tool"]["lambda-bundle"] = {"runtime": "python3.11", "architecture": "arm64", "output": "out/fn.zip"}
    pyproject.write_text(tomlkit.dumps(doc))
    result = bundle(service, world["cache"], "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.report["zip"] == str(service / "out" / "fn.zip")
    assert result.report["architecture"] == "arm64"
    result = bundle(service, world["cache"], "--arch", "x86_64", "--format", "json")
    assert result.report["architecture"] == "x86_64"


def test_lock_written_by_poetry_1_8_gives_the_same_bundle(world, service: Path) -> None:
    modern = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert modern.returncode == 0, modern.stderr
    lock = service / "poetry.lock"
    doc = tomlkit.parse(lock.read_text())
    for package in doc["package"]:
        for key in ("groups", "markers"):
            if key in package:
                del package[key]
    doc["metadata"]["lock-version"] = "2.0"
    lock.write_text(tomlkit.dumps(doc))
    old = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert old.returncode == 0, old.stderr
    assert old.report["sha256"] == modern.report["sha256"]


# -- failures: a message naming the cause, no traceback, an earlier ZIP untouched ----------------


def _earlier_zip(world, service: Path) -> tuple[Path, bytes]:
    result = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = Path(result.report["zip"])
    return out, out.read_bytes()


def _assert_failed(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_missing_lock(world, service: Path) -> None:
    out, before = _earlier_zip(world, service)
    (service / "poetry.lock").unlink()
    _assert_failed(bundle(service, world["cache"], "--runtime", "python3.11"), "No poetry.lock", "poetry lock")
    assert out.read_bytes() == before


def test_stale_lock(world, service: Path) -> None:
    out, before = _earlier_zip(world, service)
    pyproject = service / "pyproject.toml"
    doc = tomlkit.parse(pyproject.read_text())
    doc["tool"]["poetry"]["dependencies"]["idna"] = "^3"
    pyproject.write_text(tomlkit.dumps(doc))
    _assert_failed(bundle(service, world["cache"], "--runtime", "python3.11"), "out of date", "poetry lock")
    assert out.read_bytes() == before


def test_unknown_config_key(world, service: Path) -> None:
    out, before = _earlier_zip(world, service)
    pyproject = service / "pyproject.toml"
    doc = tomlkit.parse(pyproject.read_text())
    doc["tool"]["lambda-bundle"] = {"runtim": "python3.11"}
    pyproject.write_text(tomlkit.dumps(doc))
    _assert_failed(bundle(service, world["cache"]), "'runtim'", "Did you mean 'runtime'")
    doc["tool"]["lambda-bundle"] = {"runtime": 3.11}
    pyproject.write_text(tomlkit.dumps(doc))
    _assert_failed(bundle(service, world["cache"]), "runtime must be a non-empty string")
    assert out.read_bytes() == before


def test_bad_runtime(world, service: Path) -> None:
    out, before = _earlier_zip(world, service)
    _assert_failed(bundle(service, world["cache"], "--runtime", "python2.7"), "python2.7", "python3.12")
    _assert_failed(bundle(service, world["cache"], "--arch", "ppc64le", "--runtime", "python3.11"), "ppc64le")
    assert out.read_bytes() == before


def test_no_runtime_and_several_fit_is_refused(world, service: Path) -> None:
    _assert_failed(bundle(service, world["cache"]), "No Lambda runtime given", "python3.9, python3.10")


def test_wheel_changed_after_locking_is_refused(world, service: Path, tmp_path: Path) -> None:
    lock = service / "poetry.lock"
    doc = tomlkit.parse(lock.read_text())
    for package in doc["package"]:
        if package["name"] == "idna":
            for entry in package["files"]:
                entry["hash"] = "sha256:" + "0" * 64
    lock.write_text(tomlkit.dumps(doc))
    cache = tmp_path / "cache"
    cache.mkdir()
    result = bundle(service, cache, "--runtime", "python3.11")
    _assert_failed(result, "Hash mismatch for idna 3.7", "sha256:" + "0" * 64)
    assert not list(service.rglob("*.zip"))


def test_corrupted_cache_entry_is_refused(world, service: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    first = bundle(service, cache, "--runtime", "python3.11", "--format", "json")
    assert first.returncode == 0, first.stderr
    out = Path(first.report["zip"])
    before = out.read_bytes()
    (cached,) = cache.rglob("idna-3.7-py3-none-any.whl")
    cached.write_bytes(cached.read_bytes() + b"garbage")
    result = bundle(service, cache, "--runtime", "python3.11")
    _assert_failed(result, "Hash mismatch for idna 3.7", str(cached))
    assert out.read_bytes() == before


def test_target_dir_not_created_by_the_plugin_is_refused(world, service: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    _assert_failed(
        bundle(service, world["cache"], "--runtime", "python3.11", "--target-dir", str(mine)),
        "Refusing to replace",
    )
    assert (mine / "notes.txt").read_text() == "precious"
    _assert_failed(
        bundle(service, world["cache"], "--runtime", "python3.11", "--target-dir", str(service)),
        "Refusing to use",
    )
    assert (service / "pyproject.toml").exists()


def test_target_dir_is_replaced_when_it_is_ours(world, service: Path) -> None:
    first = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    target = Path(first.report["target_dir"])
    (target / "stale.py").write_text("old\n")
    second = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert not (target / "stale.py").exists()
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporaries, no manifest


DEAD_PROXY = "http://127.0.0.1:9"


def test_warm_rebundle_makes_no_network_request(world, service: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    first = bundle(service, cache, "--runtime", "python3.11", "--format", "json")
    assert first.returncode == 0, first.stderr
    shutil.rmtree(service / "dist")
    shutil.rmtree(service / "build")
    index: LoopbackIndex = world["index"]
    before = len(index.requests)
    proxies = {k: DEAD_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")}
    proxies.update(NO_PROXY="", no_proxy="")
    second = bundle(service, cache, "--runtime", "python3.11", "--format", "json", extra_env=proxies)
    assert second.returncode == 0, second.stderr
    assert index.requests[before:] == []
    assert second.report["sha256"] == first.report["sha256"]
    assert "Downloading" not in second.stderr
    moved = tmp_path / "restored-elsewhere"  # a CI cache restored at another path
    cache.rename(moved)
    third = bundle(service, moved, "--runtime", "python3.11", "--format", "json", "-o", "dist/moved.zip",
                   "--target-dir", "build/moved", extra_env=proxies)
    assert third.returncode == 0, third.stderr
    assert index.requests[before:] == []
    assert third.report["sha256"] == first.report["sha256"]


def test_target_dir_stays_exact_across_incremental_runs(world, service: Path) -> None:
    first = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert first.returncode == 0, first.stderr
    target = Path(first.report["target_dir"])
    handler = service / "service" / "handler.py"
    handler.write_text(handler.read_text() + "\nCHANGED = True\n")
    idna = target / "idna" / "__init__.py"
    idna.write_bytes(b"X" * idna.stat().st_size)  # an edit inside the target dir, same size
    second = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert dir_files(target) == zip_files(Path(second.report["zip"]))
    assert b"CHANGED = True" in (target / "service" / "handler.py").read_bytes()
    third = bundle(service, world["cache"], "--runtime", "python3.11", "--with", "dev", "--format", "json")
    assert third.returncode == 0, third.stderr
    assert dir_files(target) == zip_files(Path(third.report["zip"]))
    fourth = bundle(service, world["cache"], "--runtime", "python3.11", "--format", "json")
    assert dir_files(target) == zip_files(Path(fourth.report["zip"]))
    assert not (target / "boto3").exists()


def test_same_bytes_from_another_checkout_path(world, service: Path, tmp_path: Path) -> None:
    first = bundle(service, world["cache"], "--runtime", "python3.11", "--with", "dev", "--format", "json")
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(service.parent, elsewhere, ignore=shutil.ignore_patterns("dist", "build"))
    second = bundle(elsewhere / "service", world["cache"], "--runtime", "python3.11", "--with", "dev", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert first.report["sha256"] == second.report["sha256"]  # no path of the checkout in any byte
