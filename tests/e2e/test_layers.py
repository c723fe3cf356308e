"""Layouts, exclusions by dependency graph, file filters and Lambda's size limits."""

from __future__ import annotations

import hashlib
import os
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


def _names(report: dict) -> set[str]:
    return {p["name"] for p in report["packages"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("layers")
    root = base / "index"
    root.mkdir()
    wheel_from_installed(root, "poetry-core")
    build_wheel(root, "boto3", "1.34.0", requires=["botocore<1.35,>=1.34", "jmespath<2,>=0.7.1", "s3transfer<0.11,>=0.10"])
    build_wheel(root, "botocore", "1.34.0", requires=["jmespath<2,>=0.7.1", "python-dateutil<3,>=2.1", "urllib3<3,>=1.25.4"])
    build_wheel(root, "s3transfer", "0.10.0", requires=["botocore<2,>=1.33.2"])
    build_wheel(root, "python-dateutil", "2.9.0", requires=["six>=1.5"])
    build_wheel(root, "requests", "2.32.3", requires=["urllib3<3,>=1.21.1", "idna<4,>=2.5", "certifi>=2017.4.17"])
    build_wheel(root, "withtests", "1.0", files={
        "withtests/__init__.py": "X = 1\n",
        "withtests/tests/test_x.py": "def test(): pass\n",
        "withtests/py.typed": "",
    })
    for name, version in (("jmespath", "1.0.1"), ("six", "1.16.0"), ("urllib3", "2.2.1"),
                          ("idna", "3.7"), ("certifi", "2024.2.2")):
        build_wheel(root, name, version)
    build_sdist(root, "docopt", "0.6.2", files={"docopt/__init__.py": "def docopt():\n    return 1\n"})
    big = root.parent / "big"
    big.mkdir()
    with LoopbackIndex(root) as index:
        project = write_project(
            base / "svc", "svc",
            dependencies={"boto3": "^1.34", "requests": "^2.32", "docopt": "0.6.2", "withtests": "1.0"},
            index_url=index.url, requires_python=">=3.12,<3.13",
        )
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache, "index": index, "base": base}


def test_exclude_boto3_leaves_out_what_only_it_needs(world) -> None:
    result = bundle(world["project"], world["cache"], "--exclude", "boto3", "--format", "json",
                    "-o", "dist/a.zip")
    assert result.returncode == 0, result.stderr
    names = _names(result.report)
    assert not names & {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six"}
    assert {"urllib3", "requests", "idna", "certifi", "docopt", "svc"} <= names
    assert result.report["warnings"] == []
    assert not [d for d in dist_infos(Path(result.report["zip"])) if d.startswith(("boto", "six"))]


def test_excluding_a_needed_package_keeps_its_other_dependencies_and_warns(world) -> None:
    result = bundle(world["project"], world["cache"], "--exclude", "botocore", "--format", "json",
                    "-o", "dist/b.zip")
    assert result.returncode == 0, result.stderr
    names = _names(result.report)
    assert "botocore" not in names
    assert {"boto3", "s3transfer", "jmespath", "urllib3"} <= names  # boto3 still needs jmespath
    assert "python-dateutil" not in names and "six" not in names
    (warning,) = result.report["warnings"]
    assert "botocore is excluded, but boto3, s3transfer need it" in warning


def test_excluding_an_unknown_package_lists_close_names(world) -> None:
    result = bundle(world["project"], world["cache"], "--exclude", "botocor")
    assert result.returncode == 1
    assert "botocor (did you mean botocore" in result.stderr
    assert "Traceback" not in result.stderr


def test_exclude_from_config(world, tmp_path: Path) -> None:
    pyproject = world["project"] / "pyproject.toml"
    original = pyproject.read_text()
    try:
        pyproject.write_text(original + '\n[tool.lambda-bundle]\nexclude = ["boto3"]\n')
        result = bundle(world["project"], world["cache"], "--format", "json", "-o", str(tmp_path / "c.zip"))
    finally:
        pyproject.write_text(original)
    assert result.returncode == 0, result.stderr
    assert "boto3" not in _names(result.report)


def test_layer_holds_only_dependencies_under_python(world) -> None:
    result = bundle(world["project"], world["cache"], "--layout", "layer", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = result.report
    assert report["layout"] == "layer"
    out = Path(report["zip"])
    assert out.name == "svc-0.1.0-python3.12-x86_64-layer.zip"
    files = zip_files(out)
    assert all(n.startswith("python/") for n in files)
    assert "python/boto3/__init__.py" in files and "python/docopt/__init__.py" in files
    assert not [n for n in files if n.startswith("python/svc")]
    assert "svc" not in _names(report)
    target = Path(report["target_dir"])
    assert target.name == "python3.12-x86_64-layer"
    assert (target / "python" / "boto3" / "__init__.py").is_file()
    digest = hashlib.sha256(out.read_bytes()).digest()
    assert report["sha256"] == digest.hex() and report["size"] == out.stat().st_size
    with zipfile.ZipFile(out) as zf:
        assert report["unzipped_size"] == sum(i.file_size for i in zf.infolist())


def test_code_holds_only_the_project(world) -> None:
    result = bundle(world["project"], world["cache"], "--layout", "code", "--format", "json")
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert {n.split("/")[0] for n in files} == {"svc", "svc-0.1.0.dist-info"}
    assert [p["name"] for p in result.report["packages"]] == ["svc"]


def test_exclude_files_drops_matching_paths_and_their_record_lines(world) -> None:
    result = bundle(world["project"], world["cache"], "--exclude-files", "*/tests/*",
                    "--exclude-files", "*.typed", "--format", "json", "-o", "dist/d.zip")
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert "withtests/__init__.py" in files
    assert not [n for n in files if "/tests/" in n or n.endswith(".typed")]
    record = files["withtests-1.0.dist-info/RECORD"].decode()
    assert "tests/test_x.py" not in record and "withtests/__init__.py" in record
    assert "withtests-1.0.dist-info/METADATA" in files  # dist-info stays unless asked


def test_exclude_files_applies_to_dist_info_include_bytecode_and_layers(world) -> None:
    """A pattern leaving out a .dist-info's METADATA leaves out its RECORD too (a folder with
    only a RECORD is a distribution without a version to importlib.metadata); the patterns also
    filter include's files and the bytecode; in a layer they match with or without python/."""
    config = world["project"] / "cfg"
    (config / "sub").mkdir(parents=True, exist_ok=True)
    (config / "prod.json").write_text("{}")
    (config / "sub" / "dev.json").write_text("{}")
    result = bundle(world["project"], world["cache"], "--exclude-files", "withtests-1.0.dist-info/*",
                    "--exclude-files", "cfg/sub/*", "--exclude-files", "svc/__pycache__/*", "--include", "cfg",
                    "--compile", "--format", "json", "-o", "dist/x.zip", "--target-dir", "build/x")
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert not [n for n in files if n.startswith("withtests-1.0.dist-info/")]
    assert "withtests/__init__.py" in files and "withtests/__pycache__/__init__.cpython-312.pyc" in files
    assert "cfg/prod.json" in files and "cfg/sub/dev.json" not in files
    assert not [n for n in files if n.startswith("svc/__pycache__/")]
    layer = bundle(world["project"], world["cache"], "--layout", "layer", "--exclude-files", "withtests/tests/*",
                   "--format", "json", "-o", "dist/y.zip", "--target-dir", "build/y")
    assert layer.returncode == 0, layer.stderr
    names = zip_files(Path(layer.report["zip"]))
    assert "python/withtests/__init__.py" in names and "python/withtests/tests/test_x.py" not in names


def test_text_report_shows_sizes_and_the_largest_packages(world) -> None:
    result = bundle(world["project"], world["cache"], "-o", "dist/e.zip")
    assert result.returncode == 0, result.stderr
    assert "zipped" in result.stdout and "unzipped" in result.stdout
    assert "largest (unzipped):" in result.stdout
    assert "%" in result.stdout


def test_over_the_unzipped_limit_fails_before_writing(world, tmp_path: Path) -> None:
    out = tmp_path / "limit.zip"
    result = bundle(world["project"], world["cache"], "--max-unzipped-size", "2KB", "-o", str(out))
    assert result.returncode == 1
    assert "over the limit of 2.0 KB (2,000 bytes)" in result.stderr
    assert "Largest packages:" in result.stderr
    assert not out.exists()
    result = bundle(world["project"], world["cache"], "--max-unzipped-size", "lots", "-o", str(out))
    assert result.returncode == 1 and "max-unzipped-size" in result.stderr


@pytest.mark.slow
def test_over_50_mb_zipped_warns(world, tmp_path: Path) -> None:
    root = tmp_path / "index"
    root.mkdir()
    build_wheel(root, "huge", "1.0", files={"huge/__init__.py": "", "huge/blob.bin": os.urandom(53 * 1024 * 1024)})
    with LoopbackIndex(root) as index:
        project = write_project(tmp_path / "p", "p", dependencies={"huge": "1.0"}, index_url=index.url,
                                requires_python=">=3.12,<3.13")
        cache = tmp_path / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        result = bundle(project, cache, "--format", "json")
    assert result.returncode == 0, result.stderr
    (warning,) = result.report["warnings"]
    assert "over Lambda's 50 MB limit for a direct upload" in warning
