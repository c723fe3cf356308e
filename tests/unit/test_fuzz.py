"""Property tests: any config is accepted or refused with ConfigError; any wheel is bundled or
refused with BundleError, and nothing is ever written outside the target dir and the output."""

from __future__ import annotations

import csv
import io
import shutil
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import event
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.emit import MARKER
from poetry_plugin_lambda.emit import write_outputs
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.spec import CONFIG_KEYS
from poetry_plugin_lambda.spec import ProjectFacts
from poetry_plugin_lambda.spec import build_spec
from poetry_plugin_lambda.spec import read_config
from poetry_plugin_lambda.wheels import read_wheel
from tests.fixtures.wheelfactory import record_hash

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
)

# -- (1) configuration -------------------------------------------------------------------------

keys = st.one_of(st.sampled_from(sorted(CONFIG_KEYS)), st.text(max_size=20))
scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.sampled_from(["python3.12", "arm64", "x86_64", "layer", "dev,test", "200MB", "1.5 GiB", "0"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_read_config_returns_or_raises_config_error(table: dict[str, Any]) -> None:
    try:
        clean = read_config(table)
    except ConfigError:
        return
    assert set(clean) <= set(CONFIG_KEYS)
    assert set(clean) == set(table)


BIG_NUMBER_BUG = (
    "product bug: spec._size turns a 309+ digit number into float('inf'); int(inf) raises"
    " OverflowError instead of ConfigError"
)


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
@example({"max-unzipped-size": "9" * 400 + "MB"})
def test_read_config_returns_or_raises_config_error_including_huge_sizes(table: dict[str, Any]) -> None:
    test_read_config_returns_or_raises_config_error.hypothesis.inner_test(table)  # type: ignore[attr-defined]


def _facts(root: Path) -> ProjectFacts:
    return ProjectFacts(
        root=root,
        name="svc",
        version="1.0",
        allows_python=lambda v: v.startswith("3.12."),
        python_constraint="~3.12",
        groups=frozenset({"main", "dev"}),
        default_groups=frozenset({"main"}),
        extras=frozenset({"fast"}),
    )


path_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["output", "target-dir", "runtime", "with", "extras", "layout"]),
        st.one_of(path_text, st.lists(path_text, max_size=3)),
        max_size=4,
    ),
    st.dictionaries(st.sampled_from(["output", "target-dir", "runtime", "architecture"]), path_text, max_size=3),
)
def test_build_spec_returns_or_raises_config_error(config: dict[str, Any], cli: dict[str, Any]) -> None:
    root = Path(tempfile.gettempdir()).resolve() / "fuzz-project-never-created"
    try:
        spec = build_spec(config, cli, _facts(root), root / "cwd")
    except ConfigError:
        return
    assert spec.output.suffix.lower() == ".zip"
    assert spec.output.is_absolute() and spec.target_dir.is_absolute()
    assert not root.exists()


# -- (2) wheels -----------------------------------------------------------------------------------

DIST_INFO = "fuzz-1.0.dist-info"
WHEEL_FILE = "fuzz-1.0-py3-none-any.whl"
REQUIRED = {
    f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\nName: fuzz\nVersion: 1.0\n\n",
    f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}

safe_segment = st.one_of(
    st.sampled_from(["pkg", "fuzz", "mod.py", "__init__.py", "data.bin", "\u00e9t\u00e9.py", "x.so"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00:."), min_size=1, max_size=12),
)
weird_segment = st.one_of(
    st.sampled_from(["..", ".", "", "fuzz-1.0.data", "purelib", "platlib", "scripts", "headers",
                     "__pycache__", "x.pyc", "C:", "c:x", "a\\..\\b", "\x00", "\u202e", "nul\x00.py",
                     DIST_INFO, "RECORD", "METADATA", "~", "*", " ", "...", "con", "a" * 300]),
    st.text(
        st.characters(blacklist_categories=("Cs",), whitelist_characters="/\\:\x00."),
        max_size=12,
    ),
)
# mostly plausible paths, so that a good share of the wheels get as far as the writers
segment = st.one_of(safe_segment, safe_segment, safe_segment, weird_segment)
lead = st.sampled_from(["", "", "", "", "", "", "/", "./", "../", "fuzz-1.0.data/purelib/", "fuzz-1.0.data/scripts/"])
member_name = st.builds(lambda parts, first: first + "/".join(parts), st.lists(segment, min_size=1, max_size=5), lead)
modes = st.sampled_from([0o100644] * 4 + [0o100755, 0, 0o120777, 0o020644, 0o040755, 0o010644, 0o060644, 0o140644])
member = st.tuples(member_name, st.binary(max_size=300), modes, st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
listed_in_record = st.sampled_from([True, True, True, False])


def _build_fuzz_wheel(directory: Path, members: list[tuple[str, bytes, int, int]], listed: bool) -> Path:
    """Write the wheel; raise ValueError/UnicodeError when zipfile itself cannot (the test's problem)."""
    entries = [(name, data, mode, method) for name, data, mode, method in members]
    entries += [(name, data, 0o100644, zipfile.ZIP_DEFLATED) for name, data in REQUIRED.items()]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _, _ in entries:
        if listed:
            writer.writerow((name, record_hash(data), len(data)))
    writer.writerow((f"{DIST_INFO}/RECORD", "", ""))
    entries.append((f"{DIST_INFO}/RECORD", record.getvalue().encode(), 0o100644, zipfile.ZIP_DEFLATED))
    path = directory / WHEEL_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(path, "w") as zf:
            for name, data, mode, method in entries:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                info.create_system = 3
                info.external_attr = mode << 16
                zf.writestr(info, data)
    return path


def _listing(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    found = set()
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        found.add(path.relative_to(root).as_posix())
    return found


def _bundle_property(tmp_root: Path, members: list[tuple[str, bytes, int, int]], listed: bool) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_root))
    try:
        wheels = base / "wheels"
        wheels.mkdir()
        try:
            archive = _build_fuzz_wheel(wheels, members, listed)
        except (ValueError, UnicodeError, OverflowError, zipfile.LargeZipFile) as error:
            event(f"zipfile cannot write it: {type(error).__name__}")
            assume(False)  # zipfile refused to write it: the test's own limitation
            return
        siblings = sorted(p.name for p in tmp_root.parent.iterdir())
        outer = _listing(tmp_root)
        inside = _listing(base)
        target = base / "out" / "target"
        output = base / "out" / "bundle.zip"
        try:
            entries = assemble([read_wheel(archive)])
        except BundleError as error:
            event(f"refused: {type(error).__name__}")
            entries = None
        written = False
        if entries is not None:
            try:
                write_outputs(entries, output, target, 315532800)
                written = True
                event("written")
            except BundleError as error:
                event(f"write refused: {type(error).__name__}")
        # both outputs, or neither
        assert output.exists() == target.exists() == written
        # nothing outside the two outputs (and their folder), inside or outside the test's folder
        assert _listing(tmp_root, skip=(base / "out",)) == outer
        assert _listing(base, skip=(base / "out",)) == inside
        assert sorted(p.name for p in tmp_root.parent.iterdir()) == siblings
        if written:
            with zipfile.ZipFile(output) as zf:
                assert zf.testzip() is None
                for name in zf.namelist():
                    assert not name.startswith("/") and ".." not in name.split("/")
                zipped = {name: zf.read(name) for name in zf.namelist()}
            unzipped = {
                p.relative_to(target).as_posix(): p.read_bytes()
                for p in target.rglob("*") if p.is_file() and p.name != MARKER
            }
            assert zipped == unzipped  # the ZIP equals the target dir, byte for byte
            assert sorted(p.name for p in (base / "out").iterdir()) == ["bundle.zip", "target"]
        out = (base / "out").resolve()
        for path in out.rglob("*") if out.exists() else ():
            assert out in path.resolve().parents
            assert not path.is_symlink()
            assert stat.S_ISREG(path.lstat().st_mode) or stat.S_ISDIR(path.lstat().st_mode)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _has_dot_segment(members: list[tuple[str, bytes, int, int]]) -> bool:
    return any("." in name.rstrip("/").split("/") for name, _, _, _ in members)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of its own: each example works in a fresh subfolder and removes it."""
    return tmp_path_factory.mktemp("fuzz-wheels")


@FUZZ
@given(st.lists(member, min_size=1, max_size=6), listed_in_record)
@example([("pkg/__init__.py", b"", 0o100644, zipfile.ZIP_DEFLATED)], True)
@example([("pkg/run", b"#!/bin/sh\n", 0o100755, zipfile.ZIP_STORED), ("fuzz-1.0.data/purelib/p.py", b"", 0, 8)], True)
@example([("../escape.py", b"x", 0o100644, zipfile.ZIP_DEFLATED)], True)
@example([("pkg/link", b"/etc/passwd", 0o120777, zipfile.ZIP_DEFLATED)], True)
@example([("a", b"file", 0o100644, 8), ("a/b", b"", 0o100644, 8)], True)
def test_any_wheel_is_bundled_or_refused(fuzz_root: Path, members: list, listed: bool) -> None:
    """Everything but the known '.'-segment bug (its own test below)."""
    assume(not _has_dot_segment(members))
    _bundle_property(fuzz_root, members, listed)


@FUZZ
@given(st.lists(member, min_size=1, max_size=6), listed_in_record)
@example([("pkg/./mod.py", b"x", 0o100644, zipfile.ZIP_DEFLATED)], True)
def test_any_wheel_is_bundled_or_refused_including_dot_segments(
    fuzz_root: Path, members: list, listed: bool
) -> None:
    _bundle_property(fuzz_root, members, listed)
