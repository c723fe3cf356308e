"""Read a wheel safely and say where each member goes in a Lambda bundle.

Nothing is extracted here: the result lists zip members and their bundle paths, so the emit
stage can stream (or raw-copy) them. Lambda wants purelib and platlib at the root, no scripts,
headers or data files, and no bytecode; `.dist-info` stays so `importlib.metadata` works.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import marshal
import re
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from pathlib import PurePosixPath
from typing import Callable
from typing import NamedTuple

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename
from packaging.utils import canonicalize_name
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion
from packaging.version import Version

from poetry_plugin_lambda import __version__
from poetry_plugin_lambda.errors import WheelError
from poetry_plugin_lambda.errors import holds_secret
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import redactable
from poetry_plugin_lambda.zipread import BrokenZip
from poetry_plugin_lambda.zipread import parsing_zip
from poetry_plugin_lambda.zipread import read_member
from poetry_plugin_lambda.zipwriter import unsafe_path

_DRIVE = re.compile(r"[A-Za-z]:")
_HEADERS_END = re.compile(rb"\r?\n\r?\n")
_DROPPED_DATA_SCHEMES = ("scripts", "headers", "data")


class WheelMember(NamedTuple):
    """A file of the wheel and the path it installs to, relative to the bundle's site dir (a
    named tuple, as `assemble.Entry` is: made by the ten thousand)."""

    info: zipfile.ZipInfo
    path: str
    executable: bool
    data: bytes | None = None  # rewritten content, when the wheel's own bytes cannot ship


@dataclass(frozen=True)
class WheelContents:
    """What a wheel installs: its members (bytecode and scripts dropped) and a new RECORD (None
    when `exclude-files` leaves out the RECORD, or the METADATA without which a `.dist-info` is
    no distribution: a folder holding only a RECORD would make `importlib.metadata` find a
    package with no version)."""

    archive: Path
    name: str
    version: str
    dist_info: str
    members: tuple[WheelMember, ...]
    record: bytes | None


@dataclass(frozen=True)
class ParsedWheel:
    """A validated wheel, every member it could install mapped; no user filter applied yet.

    Read once per run, it serves every bundle: each makes its `WheelContents` with its own filter.
    """

    archive: Path
    name: str
    version: str
    dist_info: str
    members: tuple[WheelMember, ...]
    listed: Mapping[str, tuple[str, str]]  # the wheel's own RECORD: {member: (hash, size)}
    metadata: bytes = b""  # its METADATA as the wheel holds it (what ships is made from it per run)
    raw_crcs: tuple[int, ...] = ()  # of each member's compressed bytes, when it was unpacked (`unpacked.unpack`)


def check_member_name(wheel: str, name: str) -> None:
    """Refuse any member name that could land outside the bundle."""
    stem = name.rstrip("/")  # a folder member's trailing slash is allowed
    if unsafe_path(stem) or _DRIVE.match(stem) is not None:
        raise WheelError(f"{wheel}: refusing unsafe member name {name!r}.")


def _is_link_or_device(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def _is_executable(info: zipfile.ZipInfo) -> bool:
    return bool((info.external_attr >> 16) & 0o111)


def _is_bytecode(path: str) -> bool:
    return path.endswith((".pyc", ".pyo")) or "/__pycache__/" in f"/{path}"


def _find_dist_info(label: str, names: list[str]) -> str:
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(dist_infos) != 1:
        raise WheelError(f"{label}: expected exactly one .dist-info folder, found {dist_infos or 'none'}.")
    dist_info = dist_infos[0]
    for required in ("METADATA", "WHEEL", "RECORD"):
        if f"{dist_info}/{required}" not in names:
            raise WheelError(f"{label}: {dist_info}/{required} is missing.")
    return dist_info


def _install_path(name: str, data_dir: str) -> str | None:
    """The member's path in the bundle, or None when Lambda has no use for it.

    What lands at the bundle's root must not pass for another distribution or data folder: a
    `.dist-info` or `.data` folder there other than the wheel's own (one under `.data/purelib/`,
    or one spelled in another case) would ship a package the lock never named, or scripts.
    """
    if not name.startswith(f"{data_dir}/"):
        path = name
    else:
        rest = name[len(data_dir) + 1 :]
        scheme, _, path = rest.partition("/")
        if scheme in _DROPPED_DATA_SCHEMES:
            return None
        if scheme not in ("purelib", "platlib") or not path:
            raise WheelError(f"unknown data scheme {scheme!r} in member {name!r}.")
    top = path.split("/", 1)[0]
    own = (data_dir, _dist_info_of(data_dir))
    if "/" in path and top.lower().endswith((".dist-info", ".data")) and (top not in own or path != name):
        raise WheelError(f"member {name!r} would install a folder {top} of its own; the wheel's are {own[1]} and {own[0]}.")
    return path


def _dist_info_of(data_dir: str) -> str:
    return data_dir[: -len(".data")] + ".dist-info"


def _read_record(label: str, zf: zipfile.ZipFile, dist_info: str) -> dict[str, tuple[str, str]]:
    """RECORD as {path: (hash, size)}, parsed by installer (the reference installer's own reader)."""
    from installer.records import InvalidRecordEntry
    from installer.records import parse_record_file

    try:
        text = read_member(zf, f"{dist_info}/RECORD").decode("utf-8")
    except UnicodeDecodeError:
        raise WheelError(f"{label}: {dist_info}/RECORD is not UTF-8.") from None
    try:
        return {path: (digest, size) for path, digest, size in parse_record_file(
            line for line in text.splitlines() if line.strip()
        )}
    except InvalidRecordEntry as error:
        raise WheelError(f"{label}: malformed RECORD ({'; '.join(error.issues)}).") from None


def check_built_wheel(wheel: Path) -> None:
    """A wheel built here has no lock hash: its RECORD must at least match every file it holds.

    installer's validation (names, sizes and hashes against RECORD) catches a broken or
    tampered build backend before its output is bundled.
    """
    from installer.sources import WheelFile

    try:
        with parsing_zip(), WheelFile.open(wheel) as source:
            source.validate_record()
    except (BrokenZip, OSError) as error:
        raise WheelError(f"Building gave {wheel.name}, whose files do not match its RECORD: {error}") from None


def required_names(wheel: Path) -> frozenset[str]:
    """The names a built wheel's METADATA requires (`Requires-Dist`, whatever their markers),
    canonicalized; a requirement that cannot be parsed counts by its leading name."""
    from installer.sources import WheelFile

    try:
        with parsing_zip(), WheelFile.open(wheel) as source:
            metadata = source.read_dist_info("METADATA")
    except (BrokenZip, OSError, ValueError) as error:
        raise WheelError(f"Building gave {wheel.name}, whose METADATA cannot be read: {error}") from None
    names = set()
    for value in HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []:
        try:
            names.add(canonicalize_name(Requirement(value).name))
        except InvalidRequirement:
            names.add(canonicalize_name(re.split(r"[\s;\[(<>=!~@]", value.strip(), maxsplit=1)[0]))
    return frozenset(names)


def read_wheel(archive: Path, drop: Callable[[str], bool] | None = None) -> WheelContents:
    """Validate `archive` and map its members to bundle paths.

    `drop` (a user's file filter) gets each installed path; what it drops leaves RECORD too.
    """
    return contents_of(parse_wheel(archive), drop)


def contents_of(wheel: ParsedWheel, drop: Callable[[str], bool] | None = None) -> WheelContents:
    """What `wheel` installs when `drop` filters it, with a RECORD that lists just that."""
    members = [m for m in wheel.members if drop is None or not drop(m.path)]
    record = f"{wheel.dist_info}/RECORD"
    kept = drop is None or not (drop(record) or drop(f"{wheel.dist_info}/METADATA"))
    return WheelContents(
        archive=wheel.archive,
        name=wheel.name,
        version=wheel.version,
        dist_info=wheel.dist_info,
        members=tuple(members),
        record=_new_record(wheel.archive.name, members, wheel.listed, record) if kept else None,
    )


def parse_wheel(archive: Path) -> ParsedWheel:
    """Validate `archive` and map every member it could install to its bundle path."""
    label = archive.name
    try:
        name, version, _, _ = parse_wheel_filename(archive.name)
    except InvalidWheelFilename as error:
        raise WheelError(f"{label}: not a valid wheel file name ({error}).") from None
    try:
        with parsing_zip():
            zf = zipfile.ZipFile(archive)
    except (BrokenZip, OSError) as error:
        raise WheelError(f"{label}: not a readable wheel ({error}).") from None
    with zf:
        try:
            with parsing_zip():
                return _read_open_wheel(archive, zf, str(name), str(version))
        except BrokenZip as error:
            raise WheelError(f"{label}: a member cannot be read ({error}).") from None


def _read_open_wheel(archive: Path, zf: zipfile.ZipFile, name: str, version: str) -> ParsedWheel:
    label = archive.name
    infos = zf.infolist()
    seen: set[str] = set()
    for info in infos:
        check_member_name(label, info.filename)
        if info.filename in seen:
            raise WheelError(f"{label}: duplicate member {info.filename!r}.")
        seen.add(info.filename)
        if _is_link_or_device(info):
            raise WheelError(f"{label}: refusing member {info.filename!r} (a symlink or device).")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise WheelError(
                f"{label}: member {info.filename!r} is encrypted or uses an unsupported"
                " compression (wheels use stored or deflate)."
            )
    names = [i.filename for i in infos if not i.is_dir()]
    dist_info = _find_dist_info(label, names)
    metadata_path, record_path = f"{dist_info}/METADATA", f"{dist_info}/RECORD"
    metadata = read_member(zf, metadata_path)
    _check_metadata(label, metadata, dist_info, name, version)
    record = _read_record(label, zf, dist_info)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    members: list[WheelMember] = []
    for info in infos:
        if info.is_dir() or info.filename == record_path:
            continue
        try:
            path = _install_path(info.filename, data_dir)
        except WheelError as error:
            raise WheelError(f"{label}: {error}") from None
        if path is None or _is_bytecode(path):
            continue
        data = without_local_urls(metadata) if info.filename == metadata_path else None
        members.append(WheelMember(info, path, _is_executable(info), data))
    members.sort(key=lambda m: m.path)
    return ParsedWheel(archive, name, version, dist_info, tuple(members), record, metadata)


_SAVED_FORMAT = 3  # of `saved`; a change to what `parse_wheel` finds or refuses changes it too
# (and every entry names the plugin's version: another version parses the wheel again)


def saved(wheel: ParsedWheel) -> bytes:
    """`wheel` as bytes `restored` reads back: what `parse_wheel` found in a wheel file, a fact of
    its bytes, kept so the next run need not parse the file again (`archive_index`).

    The METADATA that ships is not kept but made again from the wheel's own by `restored`: what
    it hides depends on the run (`errors.redact` hides the secrets the run knows of).
    """
    metadata = f"{wheel.dist_info}/METADATA"
    rows = tuple(
        (
            m.info.orig_filename, m.info.header_offset, m.info.compress_size, m.info.file_size, m.info.CRC,
            m.info.compress_type, m.info.external_attr, m.info.flag_bits, m.path, m.info.filename == metadata,
        )
        for m in wheel.members
    )
    return marshal.dumps((
        _SAVED_FORMAT, __version__, wheel.archive.name, wheel.name, wheel.version, wheel.dist_info, wheel.metadata, rows,
        dict(wheel.listed), wheel.raw_crcs,
    ))


def restored(blob: bytes, archive: Path) -> ParsedWheel | None:
    """What `saved` kept of the wheel file `archive`; None when `blob` is of another format or
    another file name (the same bytes under another name are another name and version)."""
    try:
        kept = marshal.loads(blob)
        form, plugin, filename, name, version, dist_info, metadata, rows, listed, raw_crcs = kept
        if form != _SAVED_FORMAT or plugin != __version__ or filename != archive.name:
            return None
        shipped = without_local_urls(metadata)
        members = []
        for orig_filename, offset, compressed, size, crc, method, attributes, flags, path, is_metadata in rows:
            info = zipfile.ZipInfo(orig_filename)
            info.header_offset, info.compress_size, info.file_size, info.CRC = offset, compressed, size, crc
            info.compress_type, info.external_attr, info.flag_bits = method, attributes, flags
            members.append(WheelMember(info, path, _is_executable(info), shipped if is_metadata else None))
    except (ValueError, TypeError, EOFError, AttributeError):  # not what `saved` writes
        return None
    return ParsedWheel(archive, name, version, dist_info, tuple(members), listed, metadata, tuple(raw_crcs))


def _check_metadata(label: str, metadata: bytes, dist_info: str, name: str, version: str) -> None:
    """METADATA names the distribution and version the file name does (as pip insists)."""
    # Only the header block is parsed: the long description after it can be most of the file.
    head = _HEADERS_END.split(metadata, maxsplit=1)[0]
    headers = HeaderParser().parsestr(head.decode("utf-8", "replace"))
    if not headers.get("Name") or not headers.get("Version"):
        raise WheelError(f"{label}: {dist_info}/METADATA lacks Name or Version.")
    if canonicalize_name(headers["Name"]) != canonicalize_name(name):
        raise WheelError(f"{label}: METADATA names {headers['Name']!r}, the file name {name!r}.")
    if not same_version(headers["Version"], version):
        raise WheelError(f"{label}: METADATA says version {headers['Version']!r}, the file name {version!r}.")


class RecordCheck:
    """One member's bytes, fed as they come, held to the hash and size its wheel's RECORD gives
    (RECORD may give no hash for a few files: those are held to nothing)."""

    def __init__(self, wheel: ParsedWheel, member: WheelMember) -> None:
        self._label, self._member = wheel.archive.name, member
        expected, self._size = wheel.listed.get(member.info.filename, ("", ""))
        algorithm, _, self._value = expected.partition("=")
        if expected and (algorithm not in hashlib.algorithms_guaranteed or algorithm in ("md5", "sha1")):
            raise WheelError(f"{self._label}: RECORD hashes {member.info.filename!r} with {algorithm!r}, which is not a secure hash.")
        self.digest = hashlib.new(algorithm) if expected else None

    def update(self, data: bytes) -> None:
        if self.digest is not None:
            self.digest.update(data)

    def finish(self) -> None:
        digest, info = self.digest, self._member.info
        if digest is not None and (
            _record_value(digest) != self._value.rstrip("=") or (self._size and self._size != str(info.file_size))
        ):
            raise WheelError(
                f"{self._label}: {info.filename} does not match the hash and size its RECORD"
                " gives: the wheel was altered after it was built. Report it to the package's"
                " maintainers, or leave the package out with --exclude."
            )


def check_record_hashes(wheel: ParsedWheel) -> None:
    """Every file the wheel could install has the hash and size its RECORD gives.

    The lock's hash of the whole wheel says it is the file that was locked; this says the wheel
    is what its builder recorded, so the bundle's rewritten RECORD never carries a lie. Each
    member is inflated once (its CRC checked by zipfile): callers do it once per wheel file
    (what passed is kept by `archive_index.ArchiveIndex.keep_parsed`), not on every run;
    `unpacked.unpack` does it while making the wheel's unpacked copy, and this only for a wheel
    it cannot read strictly.
    """
    label = wheel.archive.name
    try:
        with parsing_zip(), zipfile.ZipFile(wheel.archive) as zf:
            for member in wheel.members:
                check = RecordCheck(wheel, member)
                if check.digest is None:
                    continue
                with zf.open(member.info) as stream:
                    for chunk in iter(lambda: stream.read(1 << 20), b""):
                        check.update(chunk)
                check.finish()
    except (BrokenZip, OSError) as error:
        raise WheelError(f"{label}: a member cannot be read ({error}).") from None


def same_version(one: str, other: str) -> bool:
    """Two spellings of one version (PEP 440: `1.0` and `1.0.0`, `2.9.0-post0` and `2.9.0.post0`)."""
    try:
        return Version(one) == Version(other)
    except InvalidVersion:
        return one.strip() == other.strip()


def _new_record(
    label: str,
    members: list[WheelMember],
    record: Mapping[str, tuple[str, str]],
    record_path: str,
) -> bytes:
    """RECORD as installed: bundle-relative paths, no dropped files, no absolute paths."""
    rows = []
    for member in members:
        entry = record.get(member.info.filename)
        if entry is None:
            raise WheelError(f"{label}: {member.info.filename!r} is not listed in RECORD.")
        if member.data is not None:
            entry = (record_hash(member.data), str(len(member.data)))
        rows.append((member.path, entry[0], entry[1]))
    rows.append((record_path, "", ""))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def record_hash(data: bytes) -> str:
    return "sha256=" + _record_value(hashlib.sha256(data))


def _record_value(digest: hashlib._Hash) -> str:
    """A digest as RECORD writes it: URL-safe base64, no padding (PEP 376)."""
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


_LOCAL_URL = re.compile(r"@\s*(?:[a-z]+\+)?file:")  # `file:` and a VCS's `git+file:`, `hg+file:`...


def without_local_urls(metadata: bytes) -> bytes | None:
    """METADATA safe to ship, or None when it already is.

    - `Requires-Dist: x @ file:///home/...` is reduced to `x`: poetry-core records path
      dependencies as file URLs (and a local git checkout as `git+file://...`), an absolute
      path of the build machine, which would make the bundle differ between checkouts and leak
      the path;
    - every other URL in the headers (`x @ https://user:token@host/...` of a URL or git
      dependency, project URLs) loses its user information: credentials never ship.
    The body (the long description) is left as its author wrote it.
    """
    head = _HEADERS_END.split(metadata, maxsplit=1)[0].decode("utf-8", "surrogateescape")
    if not redactable(head):
        return None  # no URL user information, no secret, no `x @ file:` in the headers
    secret = holds_secret(head)  # without one, only a line with an `@` or a `?` (a query) can change
    lines = metadata.split(b"\n")
    changed = False
    for i, line in enumerate(lines):
        if not line.strip():
            break  # the end of the headers
        if not secret and b"@" not in line and b"?" not in line:
            continue
        text = line.decode("utf-8", "surrogateescape")
        if text.startswith("Requires-Dist:") and _LOCAL_URL.search(text):
            try:
                requirement = Requirement(text[len("Requires-Dist:") :].strip())
            except InvalidRequirement:
                requirement = None
            if requirement is not None:
                requirement.url = None
                text = f"Requires-Dist: {requirement}"
        text = redact(text)
        new = text.encode("utf-8", "surrogateescape")
        if new != line:
            lines[i] = new
            changed = True
    return b"\n".join(lines) if changed else None


def record_path(contents: WheelContents) -> str:
    return str(PurePosixPath(contents.dist_info) / "RECORD")
