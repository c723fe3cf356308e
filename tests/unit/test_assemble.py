"""assemble: one sorted list of entries; two owners of a path, or a file where a folder goes, fail."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from poetry_plugin_lambda.assemble import Entry
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.assemble import entries_for_wheel
from poetry_plugin_lambda.assemble import merge
from poetry_plugin_lambda.assemble import unzipped_size
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.target_dir import MARKER
from poetry_plugin_lambda.wheels import read_wheel
from tests.fixtures.wheelfactory import build_wheel


def test_entries_are_sorted_and_complete(tmp_path: Path) -> None:
    zeta = read_wheel(build_wheel(tmp_path, "zeta", "1.0", files={"zeta/z.py": "Z", "zeta/a.py": "A"}))
    alpha = read_wheel(build_wheel(tmp_path, "alpha", "2.0", files={"alpha/__init__.py": "", "Alpha.py": "X"}))
    entries = assemble([zeta, alpha])
    paths = [e.path for e in entries]
    assert paths == sorted(paths)
    assert paths == [
        "Alpha.py",
        "alpha-2.0.dist-info/METADATA",
        "alpha-2.0.dist-info/RECORD",
        "alpha-2.0.dist-info/WHEEL",
        "alpha/__init__.py",
        "zeta-1.0.dist-info/METADATA",
        "zeta-1.0.dist-info/RECORD",
        "zeta-1.0.dist-info/WHEEL",
        "zeta/a.py",
        "zeta/z.py",
    ]
    owners = {e.path: e.owner for e in entries}
    assert owners["zeta/a.py"] == "zeta 1.0"
    assert owners["alpha-2.0.dist-info/RECORD"] == "alpha 2.0"
    record = next(e for e in entries if e.path == "zeta-1.0.dist-info/RECORD")
    assert record.data == zeta.record and record.archive is None and record.size == len(zeta.record)
    member = next(e for e in entries if e.path == "zeta/a.py")
    assert member.data is None and member.archive == zeta.archive and member.info is not None
    assert unzipped_size(entries) == sum(e.size for e in entries)


def test_order_of_wheels_does_not_matter(tmp_path: Path) -> None:
    a = read_wheel(build_wheel(tmp_path, "a", "1.0"))
    b = read_wheel(build_wheel(tmp_path, "b", "1.0"))
    assert [e.path for e in assemble([a, b])] == [e.path for e in assemble([b, a])]


def test_sorting_is_by_code_point(tmp_path: Path) -> None:
    contents = read_wheel(build_wheel(tmp_path, "p", "1.0", files={
        "p/b.py": "", "p/B.py": "", "p/a_b.py": "", "p/a-b.py": "", "p/é.py": "", "p/z.py": "",
    }))
    paths = [e.path for e in assemble([contents]) if e.path.startswith("p/")]
    assert paths == ["p/B.py", "p/a-b.py", "p/a_b.py", "p/b.py", "p/z.py", "p/é.py"]


def test_two_wheels_writing_the_same_file_is_an_error_naming_both(tmp_path: Path) -> None:
    first = read_wheel(build_wheel(tmp_path / "1", "first-pkg", "1.0", files={"shared/__init__.py": "A"}))
    second = read_wheel(build_wheel(tmp_path / "2", "second", "2.5", files={"shared/__init__.py": "B"}))
    with pytest.raises(BundleError) as caught:
        assemble([first, second])
    text = str(caught.value)
    assert "first-pkg 1.0" in text and "second 2.5" in text
    assert "'shared/__init__.py'" in text


PKGUTIL_STUB = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
PKGUTIL_STUB_2 = "# a namespace package\nfrom pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"
PKG_RESOURCES_STUB = '"""A namespace."""\n__import__("pkg_resources").declare_namespace(__name__)\n'
FALLING_BACK_STUB = (
    "try:\n    __import__('pkg_resources').declare_namespace(__name__)\nexcept ImportError:\n"
    "    from pkgutil import extend_path\n    __path__ = extend_path(__path__, __name__)\n"
)


@pytest.mark.parametrize(("one", "two", "kept"), [
    (PKGUTIL_STUB, PKGUTIL_STUB_2, "backports-a 1.0"),  # both pkgutil: the owner that sorts first
    (PKG_RESOURCES_STUB, PKGUTIL_STUB, "backports-b 2.0"),  # the stub that needs nothing else
    (FALLING_BACK_STUB, PKG_RESOURCES_STUB, "backports-a 1.0"),  # it falls back to pkgutil
    ("VALUE = 1\n", "VALUE = 1\n", "backports-a 1.0"),  # the same bytes
])  # fmt: skip
def test_namespace_stubs_and_equal_files_share_their_path(tmp_path: Path, one: str, two: str, kept: str) -> None:
    """backports.tarfile and backports.datetime-fromisoformat each ship `backports/__init__.py`
    (pip lets the last one win): one stub is shipped, the same whatever the wheels' order."""
    a = read_wheel(build_wheel(tmp_path / "1", "backports-a", "1.0", files={"backports/__init__.py": one, "backports/a.py": ""}))
    b = read_wheel(build_wheel(tmp_path / "2", "backports-b", "2.0", files={"backports/__init__.py": two, "backports/b.py": ""}))
    for order in ([a, b], [b, a]):
        entries = {e.path: e for e in assemble(order)}
        assert entries["backports/__init__.py"].owner == kept
        assert {"backports/a.py", "backports/b.py"} <= set(entries)


@pytest.mark.parametrize("other", ["import os\n__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n", "X = 1\n"])
def test_an_init_that_is_more_than_a_stub_still_clashes(tmp_path: Path, other: str) -> None:
    a = read_wheel(build_wheel(tmp_path / "1", "ns-a", "1.0", files={"ns/__init__.py": PKGUTIL_STUB}))
    b = read_wheel(build_wheel(tmp_path / "2", "ns-b", "1.0", files={"ns/__init__.py": other}))
    with pytest.raises(BundleError, match=r"ns-a 1\.0 and ns-b 1\.0 both install 'ns/__init__\.py'"):
        assemble([a, b])


def test_every_clash_is_named_in_one_message_with_the_setting_that_fixes_it(tmp_path: Path) -> None:
    """Wheels that ship a LICENSE and a CHANGELOG.md at the bundle's root: both clashes at once,
    each with the --exclude-files that leaves it out (also for a layer, without python/)."""
    a = read_wheel(build_wheel(tmp_path / "1", "asyncmy", "0.2", files={"LICENSE": "MIT a", "CHANGELOG.md": "a", "asyncmy/__init__.py": ""}))
    b = read_wheel(build_wheel(tmp_path / "2", "pypika", "0.1", files={"LICENSE": "MIT b", "CHANGELOG.md": "b", "pypika/__init__.py": ""}))
    with pytest.raises(BundleError) as caught:
        assemble([a, b], "python/")
    text = str(caught.value)
    assert "asyncmy 0.2 and pypika 0.1 both install 'python/CHANGELOG.md'" in text
    assert "asyncmy 0.2 and pypika 0.1 both install 'python/LICENSE'" in text
    assert "--exclude-files 'CHANGELOG.md' --exclude-files 'LICENSE'" in text


def test_same_file_through_data_purelib_is_a_conflict(tmp_path: Path) -> None:
    first = read_wheel(build_wheel(tmp_path / "1", "one", "1.0", files={"common.py": "A"}))
    second = read_wheel(build_wheel(tmp_path / "2", "two", "1.0", files={"two/__init__.py": ""},
                                    data_purelib={"common.py": "B"}))
    with pytest.raises(BundleError, match=r"one 1\.0 and two 1\.0 both install 'common\.py'"):
        assemble([first, second])


def test_same_dist_info_twice_is_a_conflict(tmp_path: Path) -> None:
    first = read_wheel(build_wheel(tmp_path / "1", "dup", "1.0", files={"dup/a.py": ""}))
    again = read_wheel(build_wheel(tmp_path / "2", "dup", "1.0", files={"dup/b.py": ""}))
    with pytest.raises(BundleError, match="both install 'dup-1.0.dist-info/"):
        assemble([first, again])


@pytest.mark.parametrize(("file_first"), [True, False])
def test_file_where_another_wheel_needs_a_folder(tmp_path: Path, file_first: bool) -> None:
    as_file = read_wheel(build_wheel(tmp_path / "1", "filer", "1.0", files={"thing": "I am a file"}))
    as_dir = read_wheel(build_wheel(tmp_path / "2", "folder", "3.0", files={"thing/sub/mod.py": ""}))
    wheels = [as_file, as_dir] if file_first else [as_dir, as_file]
    with pytest.raises(BundleError) as caught:
        assemble(wheels)
    text = str(caught.value)
    assert "filer 1.0 installs a file at 'thing'" in text
    assert "folder 3.0 needs a folder" in text
    assert "'thing/sub/mod.py'" in text


def test_file_folder_clash_inside_one_wheel(tmp_path: Path) -> None:
    contents = read_wheel(build_wheel(tmp_path, "self", "1.0", files={"x": "file", "x/y.py": ""}))
    with pytest.raises(BundleError, match="a file at 'x'"):
        assemble([contents])


def test_similar_names_are_not_clashes(tmp_path: Path) -> None:
    a = read_wheel(build_wheel(tmp_path / "1", "a", "1.0", files={"pkg.py": "", "pkg2/x.py": ""}))
    b = read_wheel(build_wheel(tmp_path / "2", "b", "1.0", files={"pkg/x.py": "", "pk/x.py": ""}))
    paths = [e.path for e in assemble([a, b])]
    assert {"pkg.py", "pkg/x.py", "pkg2/x.py", "pk/x.py"} <= set(paths)


def test_layer_prefix(tmp_path: Path) -> None:
    a = read_wheel(build_wheel(tmp_path / "1", "a", "1.0", files={"a/__init__.py": ""}))
    b = read_wheel(build_wheel(tmp_path / "2", "b", "1.0", files={"b.py": ""}))
    entries = assemble([a, b], prefix="python/")
    paths = [e.path for e in entries]
    assert paths == sorted(paths)
    assert all(p.startswith("python/") for p in paths)
    assert "python/a-1.0.dist-info/RECORD" in paths and "python/b.py" in paths
    # RECORD stays relative to the site folder (python/), as an installer would write it
    record = next(e for e in entries if e.path == "python/a-1.0.dist-info/RECORD")
    assert record.data is not None and b"python/" not in record.data
    assert b"a/__init__.py," in record.data
    assert [e.path for e in entries_for_wheel(a, "python/")][-1] == "python/a-1.0.dist-info/RECORD"


def test_layer_prefix_conflicts_still_detected(tmp_path: Path) -> None:
    a = read_wheel(build_wheel(tmp_path / "1", "a", "1.0", files={"same.py": "A = 1"}))
    b = read_wheel(build_wheel(tmp_path / "2", "b", "1.0", files={"same.py": "B = 1"}))
    with pytest.raises(BundleError, match="'python/same.py'"):
        assemble([a, b], prefix="python/")


def test_empty(tmp_path: Path) -> None:
    assert assemble([]) == []


def test_a_wheel_shipping_the_target_dirs_marker_is_refused_naming_it(tmp_path: Path) -> None:
    """The marker at the target dir's root is ours: a wheel's file cannot take its place (it
    failed as 'File exists' once the ZIP was written). Under a layer's python/ it is any file."""
    evil = read_wheel(build_wheel(tmp_path, "markerpkg", "1.0", files={"markerpkg/__init__.py": "", MARKER: "x"}))
    with pytest.raises(WheelError, match=rf"markerpkg 1\.0 ships {MARKER} at the bundle's root: that name is reserved"):
        assemble([evil])
    assert f"python/{MARKER}" in [e.path for e in assemble([evil], prefix="python/")]


def test_a_wheel_shipping_a_folder_named_as_the_marker_is_refused_naming_it(tmp_path: Path) -> None:
    """A folder named as the marker would stand where the marker goes: refused in words that say
    which file and how to leave it out (it used to fail as 'File exists' in the staged dir)."""
    evil = read_wheel(build_wheel(tmp_path, "markerdir", "1.0", files={f"{MARKER}/x.py": ""}))
    with pytest.raises(WheelError) as caught:
        assemble([evil])
    text = str(caught.value)
    assert f"markerdir 1.0 ships '{MARKER}/x.py', in a folder named {MARKER} at the bundle's root" in text
    assert f'exclude-files = ["{MARKER}/*"]' in text


def test_an_included_file_named_as_the_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("x")
    included = Entry(path=MARKER, owner="fn (include)", size=1, file=tmp_path / MARKER)
    with pytest.raises(ConfigError, match=f"include would ship {MARKER} at the bundle's root"):
        assemble([], extra=[included])


_MADE = itertools.count()


def _generated(path: str, owner: str = "gen 1.0") -> Entry:
    """A generated file whose bytes differ from every other's (equal bytes may share a path)."""
    data = str(next(_MADE)).encode()
    return Entry(path=path, owner=owner, size=len(data), data=data)


BASE = ["a/__init__.py", "a/b/c.py", "a/b/d.py", "a.py", "z/z.py"]


@pytest.mark.parametrize("more", [
    ["a/__pycache__/__init__.cpython-312.pyc", "a/b/__pycache__/c.cpython-312.pyc", "__pycache__/a.cpython-312.pyc"],
    ["0.py", "a/b/c.pyc", "a/b0", "a/b.py", "zz/y.py", "a.py.txt"],  # beside, before and after existing names
    [],
])
def test_merge_gives_what_assembling_everything_gives(more: list[str]) -> None:
    """`merge` checks only the new entries, for the same outcome as assembling them all."""
    entries = assemble((), "", [_generated(p, "base 1.0") for p in BASE])
    new = [_generated(p) for p in more]
    assert merge(entries, new) == assemble((), "", [*entries, *new])


@pytest.mark.parametrize(("more", "message"), [
    (["a/b/c.py"], "base 1.0 and gen 1.0 both install 'a/b/c.py'"),
    (["n/x.py", "n/x.py"], "gen 1.0 and gen 1.0 both install 'n/x.py'"),
    (["a.py/x.pyc"], "base 1.0 installs a file at 'a.py' where gen 1.0 needs a folder (for 'a.py/x.pyc')"),
    (["a/b"], "gen 1.0 installs a file at 'a/b' where base 1.0 needs a folder (for 'a/b/c.py')"),
    (["z"], "gen 1.0 installs a file at 'z' where base 1.0 needs a folder (for 'z/z.py')"),
    (["n/x", "n/x/y/z.pyc"], "gen 1.0 installs a file at 'n/x' where gen 1.0 needs a folder (for 'n/x/y/z.pyc')"),
    (["n/x/y/z.pyc", "n/x"], "gen 1.0 installs a file at 'n/x' where gen 1.0 needs a folder (for 'n/x/y/z.pyc')"),
])
def test_merge_refuses_what_assemble_refuses(more: list[str], message: str) -> None:
    entries = assemble((), "", [_generated(p, "base 1.0") for p in BASE])
    with pytest.raises(BundleError) as caught:
        merge(entries, [_generated(p) for p in more])
    assert message in str(caught.value)
    with pytest.raises(BundleError):
        assemble((), "", [*entries, *(_generated(p) for p in more)])


def test_merge_never_adds_the_marker() -> None:
    with pytest.raises(WheelError, match="reserved"):
        merge(assemble((), "", [_generated("a.py")]), [_generated(MARKER)])
