"""slim: which files go, which stay (checked imports, dist-info, the project's own), RECORD, cache, report."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.slim import slim
from poetry_plugin_lambda.slim_imports import slim_folder
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.wheels import read_wheel
from tests.fixtures.elffactory import gcc
from tests.fixtures.elffactory import gcc_so
from tests.fixtures.elffactory import synthetic_so
from tests.fixtures.wheelfactory import build_wheel

THIRD_PARTY = {
    "lib/__init__.py": "from lib.core import run\n",
    "lib/core.py": "def run():\n    return 1\n",
    "lib/core.pyi": "def run() -> int: ...\n",
    "lib/py.typed": "",
    "lib/tests/__init__.py": "",
    "lib/tests/test_core.py": "import lib\n" * 50,
    "lib/sub/test/test_x.py": "x = 1\n" * 50,
    "lib/docs/index.rst": "docs\n" * 50,
    "lib/examples/demo.py": "print('demo')\n",
    "lib/testing/__init__.py": "def helper():\n    return 2\n",
    "tests/conftest.py": "top = 1\n",  # a top-level folder is not inside a package: it stays
}


def _entries(tmp_path: Path, files: dict[str, str | bytes], *, project: dict[str, str] | None = None, prefix: str = "") -> list[Entry]:
    wheels = [read_wheel(build_wheel(tmp_path / "w", "lib", "1.0", files=files))]
    if project is not None:
        wheels.append(read_wheel(build_wheel(tmp_path / "w", "proj", "0.1", files=project)))
    return assemble(wheels, prefix)


def _record(entries: list[Entry], path: str) -> list[list[str]]:
    data = next(e for e in entries if e.path == path).data
    assert data is not None
    return list(csv.reader(io.StringIO(data.decode())))


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _check_record_lists_what_ships(entries: list[Entry], owner: str, record_path: str, prefix: str = "") -> None:
    rows = _record(entries, record_path)
    shipped = {e.path[len(prefix):] for e in entries if e.owner == owner}
    assert {row[0] for row in rows} == shipped
    with Archives() as archives:
        for row in rows:
            if row[0] == record_path[len(prefix):]:
                continue
            data = archives.read(next(e for e in entries if e.path == prefix + row[0]))
            assert row[1] == _digest(data) and row[2] == str(len(data)), row[0]


def test_slim_folders_are_inside_packages_only() -> None:
    assert slim_folder("lib/tests/a.py") == "lib/tests"
    assert slim_folder("lib/sub/test/a/b.py") == "lib/sub/test"
    assert slim_folder("tests/a.py") is None
    assert slim_folder("lib/tests.py") is None
    assert slim_folder("lib-1.0.dist-info/tests/x") is None
    assert slim_folder("lib/testing/x.py") is None


def test_removes_tests_docs_examples_and_stubs_keeps_the_rest(tmp_path: Path) -> None:
    entries = _entries(tmp_path, THIRD_PARTY)
    result = slim(entries, "", set(), tmp_path / "cache")
    paths = {e.path for e in result.entries}
    assert paths == {
        "lib/__init__.py", "lib/core.py", "lib/py.typed", "lib/testing/__init__.py", "tests/conftest.py",
        "lib-1.0.dist-info/METADATA", "lib-1.0.dist-info/WHEEL", "lib-1.0.dist-info/RECORD",
    }
    _check_record_lists_what_ships(result.entries, "lib 1.0", "lib-1.0.dist-info/RECORD")
    before = sum(e.size for e in entries)
    after = sum(e.size for e in result.entries)
    assert result.report.removed_bytes == before - after > 0
    assert result.report.packages == (("lib 1.0", before - after),)
    assert result.report.files_removed == 6
    assert result.report.to_json()["packages"] == [{"name": "lib", "version": "1.0", "removed_bytes": before - after}]


@pytest.mark.parametrize(
    "importer",
    [
        "from lib.tests.helpers import make\n",
        "from .tests.helpers import make\n",
        "from . import tests\n",
        "from lib import tests as t\n",
        "import lib.tests.helpers\n",
        "import importlib\nimportlib.import_module('lib.tests.helpers')\n",
        "import importlib\nimportlib.import_module('.tests.helpers', __package__)\n",
        "import importlib\nimportlib.import_module('.tests', __name__.rpartition('.')[0])\n",
        "from importlib.resources import files\nSCHEMA = files('lib.tests').joinpath('helpers.py').read_text()\n",
        "import os\nHERE = os.path.join(os.path.dirname(__file__), 'tests/helpers.py')\n",
    ],
)
def test_a_tests_folder_a_module_imports_from_stays(tmp_path: Path, importer: str) -> None:
    files = {
        "lib/__init__.py": "",
        "lib/fixtures.py": importer,
        "lib/tests/__init__.py": "",
        "lib/tests/helpers.py": "def make():\n    return 1\n",
        "lib/sub/tests/test_a.py": "import lib.tests.helpers\n",  # a test importing another: does not count
    }
    result = slim(_entries(tmp_path, files), "", set(), None)
    paths = {e.path for e in result.entries}
    assert {"lib/tests/__init__.py", "lib/tests/helpers.py"} <= paths
    assert "lib/sub/tests/test_a.py" not in paths
    _check_record_lists_what_ships(result.entries, "lib 1.0", "lib-1.0.dist-info/RECORD")


def test_the_projects_own_files_are_never_touched(tmp_path: Path) -> None:
    project = {"proj/__init__.py": "", "proj/tests/test_p.py": "x = 1\n", "proj/api.pyi": "x: int\n"}
    entries = _entries(tmp_path, THIRD_PARTY, project=project)
    result = slim(entries, "", {"proj 0.1"}, None)
    ours = [e for e in entries if e.owner == "proj 0.1"]
    assert [e for e in result.entries if e.owner == "proj 0.1"] == ours
    assert all(owner != "proj 0.1" for owner, _ in result.report.packages)


def test_a_layer_is_slimmed_under_python(tmp_path: Path) -> None:
    entries = _entries(tmp_path, THIRD_PARTY, prefix="python/")
    result = slim(entries, "python/", set(), None)
    paths = {e.path for e in result.entries}
    assert "python/lib/tests/__init__.py" not in paths and "python/lib/core.py" in paths
    _check_record_lists_what_ships(result.entries, "lib 1.0", "python/lib-1.0.dist-info/RECORD", "python/")


def test_shared_objects_are_stripped_recorded_and_cached(tmp_path: Path) -> None:
    so = synthetic_so() if gcc() is None else gcc_so(tmp_path / "gcc").read_bytes()
    files = {"lib/__init__.py": "", "lib/_native.cpython-312-x86_64-linux-gnu.so": so,
             "lib/.libs/libdep.so.1.2": synthetic_so(), "lib/notelf.so": b"not an ELF file"}
    entries = _entries(tmp_path, files)
    cache = tmp_path / "cache"
    first = slim(entries, "", set(), cache)
    assert first.report.shared_objects_stripped == 2
    by_path = {e.path: e for e in first.entries}
    native = by_path["lib/_native.cpython-312-x86_64-linux-gnu.so"]
    assert native.size < len(so) and native.archive is not None and cache in native.archive.parents
    assert by_path["lib/notelf.so"].archive == entries[0].archive  # untouched: the wheel's member
    _check_record_lists_what_ships(first.entries, "lib 1.0", "lib-1.0.dist-info/RECORD")
    cached = sorted(p.name for p in (cache / "stripped").rglob("*.zip"))
    assert len(cached) == 2
    second = slim(entries, "", set(), cache)
    assert [(e.path, e.size, e.archive, e.data) for e in second.entries] == [
        (e.path, e.size, e.archive, e.data) for e in first.entries
    ]
    assert sorted(p.name for p in (cache / "stripped").rglob("*.zip")) == cached
    without_cache = slim(entries, "", set(), None)
    with Archives() as archives:
        assert [archives.read(e) for e in without_cache.entries] == [archives.read(e) for e in first.entries]


def test_a_tests_folder_an_entry_point_names_stays(tmp_path: Path) -> None:
    files = {"lib/__init__.py": "", "lib/tests/plugin.py": "def load():\n    return 1\n", "lib/sub/tests/t.py": ""}
    wheel = build_wheel(tmp_path, "lib", "1.0", files=files, entry_points="[lib.plugins]\nmine = lib.tests.plugin:load [extra]\n")
    result = slim(assemble([read_wheel(wheel)]), "", set(), None)
    paths = {e.path for e in result.entries}
    assert "lib/tests/plugin.py" in paths and "lib/sub/tests/t.py" not in paths


def test_a_damaged_or_tampered_cache_entry_is_never_shipped(tmp_path: Path) -> None:
    files = {"lib/__init__.py": "", "lib/_n.so": synthetic_so()}
    entries = _entries(tmp_path, files)
    cache = tmp_path / "cache"
    first = slim(entries, "", set(), cache)
    (cached,) = (cache / "stripped").rglob("*.zip")
    good = cached.read_bytes()
    with Archives() as archives:
        expected = archives.read(next(e for e in first.entries if e.path == "lib/_n.so"))
    member = zipfile.ZipFile(cached).namelist()[0]
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, b"\x7fELF" + b"\x90" * (len(expected) - 4))  # same name and size, other bytes
    for damage in (evil.getvalue(), good[: len(good) // 2], b"not a zip"):
        cached.write_bytes(damage)
        again = slim(entries, "", set(), cache)
        with Archives() as archives:
            assert archives.read(next(e for e in again.entries if e.path == "lib/_n.so")) == expected
        assert cached.read_bytes() == good  # written again


@pytest.mark.parametrize(
    "source",
    [
        "print 'python 2'\nimport lib.tests.t as t\n",
        "type Alias = int  # newer syntax than some Pythons parse\nfrom .tests import (\n    t,\n)\n",
        "match x:\n  case 1: pass\nfrom lib.tests.t import \\\n    y\n",
        "def f(:\n    importlib.import_module('lib.tests.t')\n",
    ],
)
def test_a_module_ast_cannot_parse_is_read_for_its_imports(tmp_path: Path, source: str) -> None:
    files = {"lib/__init__.py": "", "lib/legacy.py": source,
             "lib/tests/__init__.py": "", "lib/tests/t.py": "", "other/__init__.py": "", "other/tests/t.py": ""}
    paths = {e.path for e in slim(_entries(tmp_path, files), "", set(), None).entries}
    assert "lib/tests/t.py" in paths and "other/tests/t.py" not in paths
