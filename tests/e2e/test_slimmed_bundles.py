"""--slim through real Poetry: smaller, every import and every distribution's metadata still works.

Wheels hold real gcc-built CPython extensions (with DWARF), third-party tests/docs/stubs, and a
tests folder that a non-test module imports from; the project has a tests folder and a stub of
its own. The bundle is imported and its handler run with the target's interpreter.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.helpers import bundle
from tests.e2e.helpers import zip_files
from tests.fixtures.elffactory import Layout
from tests.fixtures.elffactory import gcc
from tests.fixtures.elffactory import python_extension
from tests.fixtures.elffactory import synthetic_so
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.interpreters import run_handler
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel

elffile = pytest.importorskip("elftools.elf.elffile")
pytestmark = pytest.mark.slow

X86 = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
ARM = "cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64"
HANDLER = """\
from importlib.metadata import version

import fastlib
import helpers


def handler(event, context):
    return {"value": fastlib.value(), "check": helpers.check(), "versions": [version("fastlib"), version("helpers")]}
"""


def _include(python: Path) -> str:
    return subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    python = find_python("3.12")
    if python is None or gcc() is None:
        pytest.skip("needs python3.12 and gcc")
    base = tmp_path_factory.mktemp("slim")
    root = base / "index"
    root.mkdir()
    native = python_extension(base / "build", "_native", 42, _include(python)).read_bytes()
    common = {
        "fastlib/__init__.py": "from fastlib._native import value\n",
        "fastlib/core.pyi": "def value() -> int: ...\n",
        "fastlib/py.typed": "",
        "fastlib/tests/__init__.py": "",
        "fastlib/tests/test_value.py": "from fastlib import value\n\ndef test():\n    assert value() == 42\n" * 20,
        "fastlib/docs/guide.md": "# guide\n" * 200,
    }
    build_wheel(root, "fastlib", "1.0", tag=X86,
                files={**common, "fastlib/_native.cpython-312-x86_64-linux-gnu.so": native})
    build_wheel(root, "fastlib", "1.0", tag=ARM,
                files={**common, "fastlib/_native.cpython-312-aarch64-linux-gnu.so": synthetic_so(Layout("aarch64"))})
    build_wheel(root, "helpers", "2.0", files={
        "helpers/__init__.py": "from helpers.checks import check\n",
        "helpers/checks.py": "from helpers.tests.fixtures import SAMPLE\n\ndef check():\n    return SAMPLE\n",
        "helpers/tests/__init__.py": "",
        "helpers/tests/fixtures.py": "SAMPLE = 'kept'\n",
        "helpers/examples/demo.py": "print('demo')\n" * 50,
    })
    with LoopbackIndex(root) as index:
        project = write_project(base / "svc", "svc", dependencies={"fastlib": "1.0", "helpers": "2.0"},
                                index_url=index.url, requires_python=">=3.12,<3.13", handler_source=HANDLER)
        (project / "svc" / "tests").mkdir()
        (project / "svc" / "tests" / "test_own.py").write_text("OWN = 1\n")
        (project / "svc" / "api.pyi").write_text("x: int\n")
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache, "python": python, "native": native}


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _check_records(files: dict[str, bytes], prefix: str = "") -> None:
    """Every RECORD lists exactly its distribution's shipped files, with their hashes and sizes."""
    records = [n for n in files if n.endswith(".dist-info/RECORD")]
    listed: set[str] = set()
    for record in records:
        for row in csv.reader(io.StringIO(files[record].decode())):
            path = prefix + row[0]
            listed.add(path)
            if path != record:
                assert row[1] == _digest(files[path]) and row[2] == str(len(files[path])), path
    assert set(files) == listed


def _slim(world, tmp_path: Path, *args: str) -> dict:
    result = bundle(world["project"], world["cache"], "--slim", "--format", "json",
                    "-o", str(tmp_path / "fn.zip"), "--target-dir", str(tmp_path / "fn"), *args)
    assert result.returncode == 0, result.stderr
    return result.report


def test_slim_bundle_imports_runs_and_keeps_metadata(world, tmp_path: Path) -> None:
    plain = bundle(world["project"], world["cache"], "--format", "json", "-o", str(tmp_path / "plain.zip"),
                   "--target-dir", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    report = _slim(world, tmp_path)
    files = zip_files(Path(report["zip"]))
    assert "fastlib/tests/test_value.py" not in files and "fastlib/docs/guide.md" not in files
    assert "fastlib/core.pyi" not in files and "fastlib/py.typed" in files
    assert "helpers/tests/fixtures.py" in files  # imported by helpers.checks
    assert "helpers/examples/demo.py" not in files
    assert {"svc/tests/test_own.py", "svc/api.pyi"} <= set(files)  # the project's own stay
    assert "fastlib-1.0.dist-info/METADATA" in files
    so = files["fastlib/_native.cpython-312-x86_64-linux-gnu.so"]
    assert len(so) < len(world["native"])
    names = [s.name for s in elffile.ELFFile(io.BytesIO(so)).iter_sections()]
    assert not [n for n in names if n.startswith(".debug")] and ".symtab" not in names
    _check_records(files)
    slim = report["slim"]
    assert slim["removed_bytes"] == plain.report["unzipped_size"] - report["unzipped_size"] > 0
    assert {p["name"] for p in slim["packages"]} == {"fastlib", "helpers"}
    assert sum(p["removed_bytes"] for p in slim["packages"]) == slim["removed_bytes"]
    assert slim["shared_objects_stripped"] == 1
    out = json.loads(run_handler(world["python"], Path(report["target_dir"]), "svc.handler"))
    assert out == {"value": 42, "check": "kept", "versions": ["1.0", "2.0"]}
    text = bundle(world["project"], world["cache"], "--slim", "-o", str(tmp_path / "t.zip"),
                  "--target-dir", str(tmp_path / "t"))
    assert text.returncode == 0 and "slim:" in text.stdout and "fastlib 1.0" in text.stdout


def test_slim_is_reproducible_and_a_warm_run_uses_the_cache(world, tmp_path: Path) -> None:
    first = _slim(world, tmp_path / "a")
    cached = {p: p.stat().st_mtime_ns for p in (world["cache"] / "lambda-bundle" / "slim").rglob("*") if p.is_file()}
    assert any(p.suffix == ".zip" for p in cached)
    second = _slim(world, tmp_path / "b")
    assert first["sha256"] == second["sha256"] and first["slim"] == second["slim"]
    after = {p: p.stat().st_mtime_ns for p in (world["cache"] / "lambda-bundle" / "slim").rglob("*") if p.is_file()}
    assert after == cached  # nothing stripped or scanned again


def test_slim_arm64_bundle_holds_valid_aarch64_objects(world, tmp_path: Path) -> None:
    report = _slim(world, tmp_path, "--arch", "arm64")
    files = zip_files(Path(report["zip"]))
    so = files["fastlib/_native.cpython-312-aarch64-linux-gnu.so"]
    elf = elffile.ELFFile(io.BytesIO(so))
    assert elf["e_machine"] == "EM_AARCH64" and elf["e_type"] == "ET_DYN"
    assert [s.name for s in elf.iter_sections()] == ["", ".dynstr", ".dynamic", ".comment", ".shstrtab"]
    assert elf.get_section_by_name(".dynamic").header.sh_link == 1
    _check_records(files)


def test_slim_layer_keeps_python_prefix(world, tmp_path: Path) -> None:
    report = _slim(world, tmp_path, "--layout", "layer")
    files = zip_files(Path(report["zip"]))
    assert "python/fastlib/tests/test_value.py" not in files and "python/helpers/tests/fixtures.py" in files
    _check_records(files, "python/")
    with zipfile.ZipFile(report["zip"]) as zf:
        assert all(n.startswith("python/") for n in zf.namelist())


def test_slim_runs_before_compile(world, tmp_path: Path) -> None:
    report = _slim(world, tmp_path, "--compile")
    files = zip_files(Path(report["zip"]))
    pycs = [n for n in files if n.endswith(".pyc")]
    assert "fastlib/__pycache__/__init__.cpython-312.pyc" in pycs
    assert not [n for n in pycs if "/tests/" in n and n.startswith("fastlib/")]
    assert "helpers/tests/__pycache__/fixtures.cpython-312.pyc" in pycs
    assert report["compiled_modules"] == len(pycs)
