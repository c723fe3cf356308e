"""--compile: unchecked-hash bytecode for the target's Python, reproducible."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.helpers import bundle
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    if find_python("3.12") is None:
        pytest.skip("no python3.12 to compile with")
    base = tmp_path_factory.mktemp("compile")
    root = base / "index"
    root.mkdir()
    build_wheel(root, "alpha", "1.0", files={
        "alpha/__init__.py": "from alpha.core import VALUE\n",
        "alpha/core.py": "VALUE = {'a': 1, 'b': frozenset({1, 2, 3})}\n",
        "alpha/legacy/py2.py": "print 'python 2 only'\n",
    })
    with LoopbackIndex(root) as index:
        project = write_project(base / "svc", "svc", dependencies={"alpha": "1.0"}, index_url=index.url,
                                requires_python=">=3.11,<3.13",
                                handler_source="import alpha\n\ndef handler(event, context):\n    return alpha.VALUE['a']\n")
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache}


def _magic(python: Path) -> bytes:
    out = subprocess.run([str(python), "-I", "-c", "import importlib.util,sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
                         capture_output=True, text=True, check=True).stdout
    return bytes.fromhex(out)


def test_compile_ships_unchecked_hash_bytecode_for_the_target(world, tmp_path: Path) -> None:
    result = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--compile",
                    "--format", "json", "-o", str(tmp_path / "a.zip"))
    assert result.returncode == 0, result.stderr
    report = result.report
    files = zip_files(Path(report["zip"]))
    sources = [n for n in files if n.endswith(".py")]
    pycs = [n for n in files if n.endswith(".pyc")]
    magic = _magic(find_python("3.12"))
    for name in pycs:
        assert "/__pycache__/" in name and name.endswith(".cpython-312.pyc"), name
        data = files[name]
        assert data[:4] == magic
        assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, unchecked (PEP 552)
    assert "alpha/legacy/__pycache__/py2.cpython-312.pyc" not in files
    assert len(pycs) == len(sources) - 1
    assert report["compiled_modules"] == len(pycs)
    assert report["bytecode_size"] == sum(len(files[n]) for n in pycs)
    assert any("alpha/legacy/py2.py" in w for w in report["warnings"])
    target = Path(report["target_dir"])
    assert (target / "alpha" / "__pycache__" / "core.cpython-312.pyc").is_file()
    # the bytecode is what the runtime imports, from a read-only copy, without rewriting it
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(report["zip"]) as zf:
        zf.extractall(unzipped)
    out = subprocess.run(
        [str(find_python("3.12")), "-I", "-c",
         "import sys; sys.path.insert(0, '.'); sys.dont_write_bytecode = True; import alpha.core;"
         " print(alpha.core.__cached__, alpha.core.__spec__.loader.__class__.__name__)"],
        cwd=unzipped, capture_output=True, text=True, check=True,
    ).stdout
    assert "core.cpython-312.pyc" in out


def test_compiled_bundle_is_reproducible_and_arm64_compiles_the_same(world, tmp_path: Path) -> None:
    first = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--compile", "--format", "json",
                   "-o", str(tmp_path / "one.zip"))
    second = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--compile", "--format", "json",
                    "-o", str(tmp_path / "two.zip"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.report["sha256"] == second.report["sha256"]
    arm = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--arch", "arm64", "--compile",
                 "--format", "json", "-o", str(tmp_path / "arm.zip"))
    assert arm.returncode == 0, arm.stderr
    x86 = {n: d for n, d in zip_files(Path(first.report["zip"])).items() if n.endswith(".pyc")}
    a64 = {n: d for n, d in zip_files(Path(arm.report["zip"])).items() if n.endswith(".pyc")}
    assert x86 == a64


def test_mismatched_compile_with_is_refused(world, tmp_path: Path) -> None:
    python311 = find_python("3.11")
    if python311 is None:
        pytest.skip("no python3.11")
    result = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--compile-with", str(python311),
                    "-o", str(tmp_path / "x.zip"))
    assert result.returncode == 1
    assert "is CPython 3.11" in result.stderr and "needs CPython 3.12" in result.stderr
    assert not (tmp_path / "x.zip").exists()


def test_missing_interpreter_says_which_version_and_how(world, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = bundle(world["project"], world["cache"], "--runtime", "python3.12", "--compile",
                    "-o", str(tmp_path / "x.zip"),
                    extra_env={"PATH": f"{empty}:/usr/bin:/bin", "PYENV_ROOT": str(empty), "HOME": str(empty),
                               "UV_PYTHON_INSTALL_DIR": str(empty)})
    assert result.returncode == 1, result.stderr
    assert "needs a CPython 3.12 interpreter" in result.stderr and "--compile-with" in result.stderr


def _counts(result) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(compiled now, from the bytecode cache), from the progress line."""
    match = re.search(r"([\d,]+) compiled now, ([\d,]+) from the bytecode cache", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return int(match[1].replace(",", "")), int(match[2].replace(",", ""))


def test_bytecode_is_cached_between_runs_and_the_zip_stays_byte_identical(world, tmp_path: Path) -> None:
    project = tmp_path / "svc"
    shutil.copytree(world["project"], project)
    cache = tmp_path / "cache"  # cold: nothing downloaded, nothing compiled yet
    cache.mkdir()

    def run(name: str):  # type: ignore[no-untyped-def]
        result = bundle(project, cache, "--runtime", "python3.12", "--compile", "--format", "json",
                        "-o", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        return result

    cold = run("cold.zip")
    modules = cold.report["compiled_modules"] + 1  # and py2.py, which does not compile
    assert _counts(cold) == (modules, 0)
    warm = run("warm.zip")
    assert _counts(warm) == (0, modules)
    assert (tmp_path / "warm.zip").read_bytes() == (tmp_path / "cold.zip").read_bytes()

    bytecode = cache / "lambda-bundle" / "bytecode"
    assert len(list(bytecode.glob("cpython-312-*/wheels/*/*.zip"))) >= 1  # the wheels' memos
    for memos in bytecode.glob("cpython-312-*/wheels"):  # they would serve the modules without the entries
        shutil.rmtree(memos)
    entries = sorted(p for p in bytecode.glob("cpython-312-*/*/*") if p.is_file())
    assert len(entries) == modules
    victim = entries[0]
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 0xFF  # a flipped bit in the stored .pyc: detected, compiled again, never shipped
    victim.write_bytes(bytes(blob))
    repaired = run("repaired.zip")
    assert _counts(repaired) == (1, modules - 1)
    assert (tmp_path / "repaired.zip").read_bytes() == (tmp_path / "cold.zip").read_bytes()

    handler = project / "svc" / "handler.py"
    handler.write_text(handler.read_text() + "\nEDITED = True\n")
    edited = run("edited.zip")
    assert _counts(edited) == (1, modules - 1)
    before, after = zip_files(tmp_path / "cold.zip"), zip_files(tmp_path / "edited.zip")
    assert {n for n in after if after[n] != before.get(n)} == {
        "svc/handler.py", "svc/__pycache__/handler.cpython-312.pyc", "svc-0.1.0.dist-info/RECORD"}
