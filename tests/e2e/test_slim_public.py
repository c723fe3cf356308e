"""--slim on the data-heavy project from the public index: at most 0.85x the size, nothing broken.

Every top-level package that imports from the plain bundle imports from the slim one (with the
target's Python, from the unzipped ZIP alone), `importlib.metadata.version()` answers for every
distribution, every RECORD matches the files, and the handler runs.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import platform
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.dataheavy import DATA_HEAVY_MODULE
from tests.fixtures.dataheavy import public_simple_url
from tests.fixtures.dataheavy import write_data_heavy_project
from tests.fixtures.interpreters import find_python
from tests.fixtures.interpreters import run_handler
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import run_poetry

pytestmark = [pytest.mark.network, pytest.mark.slow]

PROBE = r"""
import importlib, importlib.metadata, json, sys
sys.path.insert(0, sys.argv[1])
names = json.loads(sys.argv[2])
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as error:
        failed[name] = f"{type(error).__name__}: {error}"
versions = {}
for dist in importlib.metadata.distributions(path=[sys.argv[1]]):
    versions[dist.metadata["Name"]] = importlib.metadata.version(dist.metadata["Name"])
print(json.dumps({"failed": failed, "versions": versions}))
"""


def _bundle(project: Path, cache: Path, out: Path, *args: str) -> dict[str, Any]:
    result = run_poetry(project, cache, "lambda-bundle", "--no-ansi", "--runtime", "python3.12", "--format", "json",
                        "-o", str(out / "fn.zip"), "--target-dir", str(out / "fn"), *args, timeout=1800)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _unzip(report: dict[str, Any], dest: Path) -> Path:
    with zipfile.ZipFile(report["zip"]) as zf:
        zf.extractall(dest)
    return dest


def _top_levels(root: Path) -> list[str]:
    names = set()
    for path in root.iterdir():
        if path.name.endswith((".dist-info", ".libs", ".data")) or path.name.startswith((".", "_")):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            names.add(path.name)
        elif path.suffix == ".py":
            names.add(path.stem)
        elif path.suffix == ".so":
            names.add(path.name.split(".", 1)[0])
    return sorted(names)


def _probe(python: Path, root: Path, names: list[str]) -> dict[str, Any]:
    out = subprocess.run([str(python), "-I", "-B", "-c", PROBE, str(root), json.dumps(names)],
                         capture_output=True, text=True, timeout=600, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _records_match(root: Path) -> None:
    for record in root.glob("*.dist-info/RECORD"):
        listed = set()
        for row in csv.reader(io.StringIO(record.read_text())):
            listed.add(row[0])
            if row[1]:
                data = (root / row[0]).read_bytes()
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert row[1] == f"sha256={digest}" and row[2] == str(len(data)), row[0]


def test_slim_data_heavy_bundle_is_smaller_and_nothing_breaks(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("slim-public")
    cache = base / "cache"
    cache.mkdir()
    project = write_data_heavy_project(base / "project", public_simple_url())
    poetry_lock(project, cache)
    plain = _bundle(project, cache, base / "plain")
    slim = _bundle(project, cache, base / "slim", "--slim")
    ratio = slim["unzipped_size"] / plain["unzipped_size"]
    print(f"plain {plain['unzipped_size']:,} B, slim {slim['unzipped_size']:,} B, ratio {ratio:.3f}")
    assert ratio <= 0.85
    assert slim["slim"]["removed_bytes"] == plain["unzipped_size"] - slim["unzipped_size"]
    again = _bundle(project, cache, base / "again", "--slim")
    assert again["sha256"] == slim["sha256"]

    python = find_python("3.12")
    if platform.machine() != "x86_64" or python is None:
        pytest.skip("needs an x86_64 host with python3.12 to import the bundle")
    plain_root = _unzip(plain, base / "plain-unzipped")
    slim_root = _unzip(slim, base / "slim-unzipped")
    _records_match(slim_root)
    names = _top_levels(plain_root)
    before = _probe(python, plain_root, names)
    after = _probe(python, slim_root, names)
    imported = [n for n in names if n not in before["failed"]]
    assert imported and not [n for n in imported if n in after["failed"]], after["failed"]
    assert after["versions"] == before["versions"] and len(after["versions"]) == len(plain["packages"])
    result = json.loads(run_handler(python, slim_root, DATA_HEAVY_MODULE))
    assert result["roundtrip"] == {"name": "test", "value": 6.0}
