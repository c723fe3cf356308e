"""read_wheel: valid wheels map to Lambda's layout; hostile or malformed ones are refused."""

from __future__ import annotations

import csv
import io
import stat
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.emit import write_outputs
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.sources import Archives
from poetry_plugin_lambda.wheels import check_built_wheel
from poetry_plugin_lambda.wheels import contents_of
from poetry_plugin_lambda.wheels import parse_wheel
from poetry_plugin_lambda.wheels import read_wheel
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import claims
from tests.fixtures.wheelfactory import record_hash
from tests.fixtures.wheelfactory import rename_raw

WHEEL_NAME = "evil-1.0-py3-none-any.whl"
DIST_INFO = "evil-1.0.dist-info"
METADATA = b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.create_system = 3
    zi.external_attr = mode << 16
    return zi


def record_of(members: Sequence[tuple[str, bytes]], record_path: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name, data in members:
        writer.writerow((name, record_hash(data), len(data)))
    writer.writerow((record_path, "", ""))
    return out.getvalue().encode()


def craft(
    directory: Path,
    members: Sequence[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    filename: str = WHEEL_NAME,
    dist_info: str = DIST_INFO,
    metadata: bytes | None = METADATA,
    wheel: bytes | None = WHEEL,
    record: bool | bytes = True,
    unlisted: Sequence[str] = (),
) -> Path:
    """A wheel written with zipfile directly: `members` plus dist-info files (unless left out).

    RECORD lists every member except those named in `unlisted`.
    """
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = list(members)
    if metadata is not None:
        entries.append((f"{dist_info}/METADATA", metadata))
    if wheel is not None:
        entries.append((f"{dist_info}/WHEEL", wheel))
    record_path = f"{dist_info}/RECORD"
    if record is True:
        listed = [
            (m.filename if isinstance(m, zipfile.ZipInfo) else m, data)
            for m, data in entries
            if (m.filename if isinstance(m, zipfile.ZipInfo) else m) not in unlisted
        ]
        entries.append((record_path, record_of(listed, record_path)))
    elif isinstance(record, bytes):
        entries.append((record_path, record))
    path = directory / filename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in entries:
                zf.writestr(member if isinstance(member, zipfile.ZipInfo) else info(member), data)
    return path


def refused(path: Path, *needles: str) -> WheelError:
    with pytest.raises(WheelError) as caught:
        read_wheel(path)
    error = caught.value
    assert isinstance(error, BundleError)
    assert path.name in str(error), str(error)
    for needle in needles:
        assert needle in str(error), str(error)
    return error


# -- a good wheel ------------------------------------------------------------------------------


def test_factory_wheel_is_read(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "Good-Pkg", "1.0", files={"good_pkg/__init__.py": "X = 1\n"})
    contents = read_wheel(wheel)
    assert (contents.name, contents.version) == ("good-pkg", "1.0")
    assert contents.dist_info == "good_pkg-1.0.dist-info"
    assert [m.path for m in contents.members] == [
        "good_pkg-1.0.dist-info/METADATA",
        "good_pkg-1.0.dist-info/WHEEL",
        "good_pkg/__init__.py",
    ]
    assert contents.archive == wheel


def test_data_schemes_bytecode_and_executable_bits(tmp_path: Path) -> None:
    data = "pkg-2.0.data"
    wheel = build_wheel(
        tmp_path,
        "pkg",
        "2.0",
        tag="cp311-cp311-manylinux_2_17_x86_64",
        files={
            "pkg/__init__.py": "",
            "pkg/tool.sh": "#!/bin/sh\n",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"bytecode",
            "pkg/old.pyc": b"bytecode",
            "pkg/older.pyo": b"bytecode",
            "__pycache__/top.cpython-311.pyc": b"bytecode",
            f"{data}/platlib/pkg/_native.so": b"\x7fELF",
            f"{data}/headers/pkg.h": "/* header */",
            f"{data}/data/share/pkg/readme": "data",
        },
        scripts={"pkg-cli": "#!python\n"},
        data_purelib={"pkg_extra/__init__.py": "Y = 2\n"},
        executable=["pkg/tool.sh"],
    )
    contents = read_wheel(wheel)
    paths = {m.path: m for m in contents.members}
    assert set(paths) == {
        "pkg/__init__.py",
        "pkg/tool.sh",
        "pkg/_native.so",
        "pkg_extra/__init__.py",
        "pkg-2.0.dist-info/METADATA",
        "pkg-2.0.dist-info/WHEEL",
    }
    assert [m.path for m in contents.members] == sorted(paths)
    assert paths["pkg/tool.sh"].executable
    assert not paths["pkg/__init__.py"].executable

    rows = list(csv.reader(io.StringIO(contents.record.decode())))
    by_path = {row[0]: row for row in rows}
    assert set(by_path) == set(paths) | {"pkg-2.0.dist-info/RECORD"}
    assert by_path["pkg-2.0.dist-info/RECORD"][1:] == ["", ""]
    assert by_path["pkg/_native.so"][1:] == [record_hash(b"\x7fELF"), "4"]
    assert by_path["pkg_extra/__init__.py"][1] == record_hash(b"Y = 2\n")
    assert not [r for r in rows if ".data/" in r[0] or r[0].endswith(".pyc")]
    assert [r[0] for r in rows[:-1]] == sorted(paths)


def test_bundle_of_a_wheel_keeps_modes_and_the_rewritten_record(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "w", "pkg", "1.0",
        files={"pkg/__init__.py": "", "pkg/run": "#!/bin/sh\n"},
        data_purelib={"extra.py": "E = 1\n"},
        executable=["pkg/run"],
    )
    entries = assemble([read_wheel(wheel)])
    target = tmp_path / "target"
    result = write_outputs(entries, tmp_path / "out.zip", target, 315532800)
    assert (target / "pkg" / "run").stat().st_mode & 0o777 == 0o755
    assert (target / "pkg" / "__init__.py").stat().st_mode & 0o777 == 0o644
    assert (target / "extra.py").read_text() == "E = 1\n"
    record = (target / "pkg-1.0.dist-info" / "RECORD").read_text()
    assert "extra.py," in record and ".data" not in record and str(tmp_path) not in record
    with zipfile.ZipFile(result.path) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert modes["pkg/run"] == 0o100755
    assert modes["pkg/__init__.py"] == 0o100644


def test_metadata_name_is_compared_normalised(tmp_path: Path) -> None:
    path = craft(
        tmp_path, [("evil/__init__.py", b"")],
        metadata=b"Metadata-Version: 2.1\nName: EVIL\nVersion: 1.0\n\n",
    )
    assert read_wheel(path).name == "evil"


def test_metadata_version_must_be_the_file_names(tmp_path: Path) -> None:
    """pip refuses a wheel whose METADATA gives another version than its name: so does the bundle
    (its report names the version the file name and the lock give)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = craft(tmp_path / "a", [("evil/__init__.py", b"")], metadata=b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0.0\n\n")
    assert read_wheel(same).name == "evil"  # 1.0.0 is 1.0
    other = craft(tmp_path / "b", [("evil/__init__.py", b"")], metadata=b"Metadata-Version: 2.1\nName: evil\nVersion: 9.9\n\n")
    with pytest.raises(WheelError, match="METADATA says version '9.9'"):
        read_wheel(other)


def test_directory_entries_are_accepted_and_skipped(tmp_path: Path) -> None:
    path = craft(tmp_path, [(info("evil/", stat.S_IFDIR | 0o755), b""), ("evil/__init__.py", b"")])
    assert "evil/" not in [m.path for m in read_wheel(path).members]


# -- hostile member names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.py",
        "evil/../../escape.py",
        "evil/..",
        "/etc/passwd",
        "/abs/evil.py",
        "C:/x",
        "c:evil.py",
        "evil\\..\\..\\escape.py",
        "evil\\__init__.py",
        "evil//double.py",
        "evil-1.0.data/purelib/../../escape.py",
    ],
)
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), (name, b"pwned")])
    refused(path, "unsafe member name")


@pytest.mark.parametrize("name", ["./evil/x.py", "evil/./x.py", "evil/x.py/."])
def test_dot_segments_are_refused_or_bundled(tmp_path: Path, name: str) -> None:
    path = craft(tmp_path, [(name, b"dot")])
    try:
        entries = assemble([read_wheel(path)])
        write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "target", 315532800)
    except BundleError:
        return  # refused with a message: fine
    # or bundled under a clean path
    with zipfile.ZipFile(tmp_path / "out" / "fn.zip") as zf:
        assert all("/./" not in f"/{n}/" for n in zf.namelist())


@pytest.mark.parametrize(
    ("kind", "label"),
    [(stat.S_IFLNK, "symlink"), (stat.S_IFCHR, "chr"), (stat.S_IFBLK, "blk"),
     (stat.S_IFIFO, "fifo"), (stat.S_IFSOCK, "sock")],
)
def test_links_and_devices_are_refused(tmp_path: Path, kind: int, label: str) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), (info("evil/link", kind | 0o777), b"/etc/passwd")])
    refused(path, "'evil/link'", "symlink or device")


def test_symlink_in_data_scripts_is_refused_too(tmp_path: Path) -> None:
    # even a member that would be dropped must not be a link
    link = info("evil-1.0.data/scripts/tool", stat.S_IFLNK | 0o777)
    path = craft(tmp_path, [("evil/__init__.py", b""), (link, b"../../../etc/passwd")])
    refused(path, "symlink or device")


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b"first"), ("evil/__init__.py", b"second")])
    refused(path, "duplicate member 'evil/__init__.py'")


def test_duplicate_record_is_refused(tmp_path: Path) -> None:
    record_path = f"{DIST_INFO}/RECORD"
    path = craft(tmp_path, [("evil/__init__.py", b""), (record_path, b"")])
    refused(path, "duplicate member")


# -- malformed wheels ----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["METADATA", "WHEEL", "RECORD"])
def test_missing_dist_info_file(tmp_path: Path, missing: str) -> None:
    path = craft(
        tmp_path, [("evil/__init__.py", b"")],
        metadata=None if missing == "METADATA" else METADATA,
        wheel=None if missing == "WHEEL" else WHEEL,
        record=missing != "RECORD",
    )
    refused(path, f"{DIST_INFO}/{missing} is missing")


def test_no_dist_info_at_all(tmp_path: Path) -> None:
    path = tmp_path / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info("evil/__init__.py"), b"")
    refused(path, "exactly one .dist-info folder", "none")


def test_two_dist_info_folders(tmp_path: Path) -> None:
    other = "other-2.0.dist-info"
    path = craft(tmp_path, [("evil/__init__.py", b""), (f"{other}/METADATA", b"Name: other\nVersion: 2.0\n\n")])
    refused(path, "exactly one .dist-info folder", DIST_INFO, other)


def test_metadata_name_not_matching_the_file_name(tmp_path: Path) -> None:
    path = craft(
        tmp_path, [("evil/__init__.py", b"")],
        metadata=b"Metadata-Version: 2.1\nName: requests\nVersion: 1.0\n\n",
    )
    refused(path, "'requests'", "'evil'")


@pytest.mark.parametrize("metadata", [b"Metadata-Version: 2.1\nVersion: 1.0\n\n", b"Name: evil\n\n", b""])
def test_metadata_without_name_or_version(tmp_path: Path, metadata: bytes) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b"")], metadata=metadata)
    refused(path, "lacks Name or Version")


def test_member_missing_from_record(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), ("evil/sneaky.py", b"x")], unlisted=["evil/sneaky.py"])
    refused(path, "'evil/sneaky.py' is not listed in RECORD")


def test_dropped_member_missing_from_record_is_fine(tmp_path: Path) -> None:
    path = craft(
        tmp_path, [("evil/__init__.py", b""), ("evil/__pycache__/x.pyc", b"x")],
        unlisted=["evil/__pycache__/x.pyc"],
    )
    assert [m.path for m in read_wheel(path).members if m.path.startswith("evil/")] == ["evil/__init__.py"]


def test_one_read_serves_every_filter(tmp_path: Path) -> None:
    """A run reads each wheel once; each bundle's own `exclude-files` makes its own RECORD from it."""
    path = craft(
        tmp_path, [("evil/__init__.py", b""), ("evil/tests/t.py", b"t"), ("evil/extra.txt", b"unlisted")],
        unlisted=["evil/extra.txt"],
    )
    parsed = parse_wheel(path)
    with pytest.raises(WheelError, match="'evil/extra.txt' is not listed in RECORD"):
        contents_of(parsed)  # bundled as it is, the unlisted file is refused
    for drop in (lambda p: p.endswith(".txt"), lambda p: p.endswith(".txt") or "/tests/" in p):
        contents = contents_of(parsed, drop)
        alone = read_wheel(path, drop)
        assert (contents.record, [m.path for m in contents.members]) == (alone.record, [m.path for m in alone.members])
        kept = [m.path for m in contents.members]
        listed = [row.split(",")[0] for row in contents.record.decode().splitlines()]
        assert listed == [*kept, f"{DIST_INFO}/RECORD"]
        assert "evil/extra.txt" not in kept
    assert "evil/tests/t.py" in [m.path for m in contents_of(parsed, lambda p: p.endswith(".txt")).members]
    assert len(parsed.members) == 5  # the parse itself is left as it was: three files, METADATA, WHEEL


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_metadata_headers_end_at_the_first_blank_line(tmp_path: Path, newline: bytes) -> None:
    """Name and Version come from the headers; a description that looks like headers is not read."""
    metadata = newline.join([b"Metadata-Version: 2.1", b"Name: evil", b"Version: 1.0", b"", b"Name: requests", b""])
    path = craft(tmp_path, [("evil/__init__.py", b"")], metadata=metadata)
    assert read_wheel(path).name == "evil"
    body_only = newline.join([b"Metadata-Version: 2.1", b"", b"Name: evil", b"Version: 1.0", b""])
    (tmp_path / "2").mkdir()
    refused(craft(tmp_path / "2", [("evil/__init__.py", b"")], metadata=body_only), "lacks Name or Version")


def test_malformed_record_line(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b"")], record=b"evil/__init__.py,sha256=x\n")
    refused(path, "malformed RECORD (Row Index")


@pytest.mark.parametrize("member", [
    "evil-1.0.data/purelib/boto3-99.0.dist-info/METADATA",  # a second distribution, smuggled in
    "evil-1.0.data/platlib/evil-1.0.dist-info/INSTALLER",  # over the wheel's own .dist-info
    "EVIL-1.0.data/scripts/evil-cli",  # another spelling of the .data folder: scripts would ship
    "evil-1.0.data/purelib/other-1.0.data/scripts/x",
])  # fmt: skip
def test_data_cannot_install_another_dist_info_or_data_folder(tmp_path: Path, member: str) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), (member, b"x")])
    refused(path, "would install a folder", "of its own")


@pytest.mark.parametrize("lie", ["hash", "size", "weak"])
def test_a_record_that_lies_about_a_member_is_refused(tmp_path: Path, lie: str) -> None:
    """The lock's hash says the wheel is the locked file; its RECORD must say the truth about
    what it holds, or the bundle's rewritten RECORD would carry the lie."""
    from poetry_plugin_lambda.wheels import check_record_hashes
    from poetry_plugin_lambda.wheels import parse_wheel
    from poetry_plugin_lambda.wheels import record_hash

    truthful = craft(tmp_path, [("evil/__init__.py", b"x = 1\n"), ("evil/empty.txt", b"")])
    check_record_hashes(parse_wheel(truthful))
    entry = {
        "hash": f"evil/__init__.py,{record_hash(b'something else')},6",
        "size": f"evil/__init__.py,{record_hash(b'x = 1' + bytes([10]))},999",
        "weak": "evil/__init__.py,md5=abc,6",
    }[lie]
    record = f"{entry}\n{DIST_INFO}/METADATA,,\n{DIST_INFO}/WHEEL,,\n{DIST_INFO}/RECORD,,\n".encode()
    (tmp_path / "lying").mkdir()
    lying = craft(tmp_path / "lying", [("evil/__init__.py", b"x = 1\n")], record=record)
    with pytest.raises(WheelError, match="RECORD"):
        check_record_hashes(parse_wheel(lying))


def test_unknown_data_scheme(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), ("evil-1.0.data/bogus/x.py", b"")])
    refused(path, "unknown data scheme 'bogus'")


@pytest.mark.parametrize("filename", ["evil.whl", "evil-1.0.whl", "evil-1.0-py3-none.zip", "evil-x_y-py3-none-any.whl"])
def test_invalid_wheel_file_name(tmp_path: Path, filename: str) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b"")], filename=filename)
    refused(path, "not a valid wheel file name")


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / WHEEL_NAME
    path.write_bytes(b"this is not a zip file at all")
    refused(path, "not a readable wheel")


def test_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / WHEEL_NAME, "not a readable wheel")


def test_record_that_is_not_utf8(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b"")], record=b"evil/__init__.py,\xff\xfe,0\n")
    refused(path, "RECORD")


def test_corrupted_metadata_member(tmp_path: Path) -> None:
    # METADATA stored (so its bytes are visible), then one byte flipped: the CRC check fails
    path = tmp_path / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info("evil/__init__.py"), b"")
        stored = info(f"{DIST_INFO}/METADATA")
        stored.compress_type = zipfile.ZIP_STORED
        zf.writestr(stored, METADATA)
        zf.writestr(info(f"{DIST_INFO}/WHEEL"), WHEEL)
        zf.writestr(info(f"{DIST_INFO}/RECORD"), record_of(
            [("evil/__init__.py", b""), (f"{DIST_INFO}/METADATA", METADATA), (f"{DIST_INFO}/WHEEL", WHEEL)],
            f"{DIST_INFO}/RECORD",
        ))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"Name: evil")
    raw[at] = ord("n")
    path.write_bytes(bytes(raw))
    refused(path)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_unsupported_compression_is_a_bundle_error(tmp_path: Path, method: int) -> None:
    member = info("evil/__init__.py")
    member.compress_type = method
    path = craft(tmp_path, [(member, b"X = 1\n" * 100)])
    with pytest.raises(BundleError):
        entries = assemble([read_wheel(path)])
        write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", 315532800)
    assert not (tmp_path / "out" / "fn.zip").exists()
    assert not (tmp_path / "out" / "target").exists()


def test_bytecode_rule_matches_whole_folder_names_only(tmp_path: Path) -> None:
    path = craft(tmp_path, [("evil/__init__.py", b""), ("evil/not__pycache__/mod.py", b"M = 1\n")])
    assert "evil/not__pycache__/mod.py" in [m.path for m in read_wheel(path).members]


def test_built_wheel_whose_files_do_not_match_record_is_refused(tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "good", "pkg", "1.0", files={"pkg/__init__.py": "X = 1\n"})
    check_built_wheel(good)  # a consistent wheel passes
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            out.writestr(item, b"X = 2\n" if item.filename == "pkg/__init__.py" else data)
    with pytest.raises(WheelError, match="do not match its RECORD"):
        check_built_wheel(bad)


# -- archives zipfile cannot parse, members that inflate past their size -------------------------

BOMB = 64 << 20  # zeros: 64 MiB from 64 KB of DEFLATE
BOUNDED = 8 << 20  # what reading one hostile member may allocate at most


def test_a_member_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """The UTF-8 flag set on bytes that are not UTF-8: zipfile's UnicodeDecodeError, said as a
    wheel error (it was "failed unexpectedly")."""
    path = craft(tmp_path, [("evil/__init__.py", b""), ("evil/ab.py", b"X = 1\n")])
    rename_raw(path, "evil/ab.py", b"evil/\xff\xfe.py")
    refused(path, "not a readable wheel (a member name or text is not valid UTF-8)")
    with pytest.raises(WheelError, match="a member name or text is not valid UTF-8"):
        check_built_wheel(path)


def test_metadata_is_read_no_further_than_its_declared_size(tmp_path: Path) -> None:
    """zipfile's `read` inflates all of a member before its checks; the wheel's METADATA and
    RECORD are read in bounded steps, so a lying one never fills memory."""
    path = craft(tmp_path, [("evil/__init__.py", b"")], metadata=METADATA + bytes(BOMB))
    claims(path, f"{DIST_INFO}/METADATA", size=len(METADATA), crc=zlib.crc32(METADATA))
    tracemalloc.start()
    try:
        read_wheel(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BOUNDED


def test_a_member_inflating_past_its_declared_size_is_refused_holding_no_more(tmp_path: Path) -> None:
    """A ZIP bomb: 64 MiB behind a member that declares 1,000 bytes (whose CRC its first 1,000
    pass). Refused, by the reads of --compile and --slim and by the outputs, never inflated whole."""
    wheel = build_wheel(tmp_path, "evil", "1.0", files={"evil/__init__.py": "", "evil/zeros.bin": bytes(BOMB)})
    claims(wheel, "evil/zeros.bin", size=1000, crc=zlib.crc32(bytes(1000)))
    entries = assemble([read_wheel(wheel)])
    (bomb,) = [entry for entry in entries if entry.path == "evil/zeros.bin"]
    tracemalloc.start()
    try:
        with Archives() as archives, pytest.raises(WheelError, match="evil/zeros.bin does not match its CRC"):
            archives.read(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BOUNDED
    with pytest.raises(WheelError, match="evil/zeros.bin does not match its CRC"):
        write_outputs(entries, tmp_path / "out" / "fn.zip", tmp_path / "out" / "target", 315532800)
