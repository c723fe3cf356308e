"""Prove the hermetic test fixtures: wheel/sdist factory, loopback index, Poetry projects."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import struct
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from packaging.utils import parse_sdist_filename
from packaging.utils import parse_wheel_filename

from tests.fixtures.index import LoopbackIndex
from tests.fixtures.projects import poetry_env
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_sdist
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import elf_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    tomllib = None


def load_toml(text: str) -> dict[str, Any]:
    """Parse TOML into plain dicts/lists."""
    if tomllib is not None:
        return tomllib.loads(text)
    return tomlkit.parse(text).unwrap()


# No proxies, whatever the environment says: the index is on 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# local fixtures ----------------------------------------------------------------------------


# `poetry_cache` and `loopback_index` come from tests/conftest.py.


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `url`; return status, headers, body (HTTP errors included, no redirects expected)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def origin(idx: LoopbackIndex) -> str:
    """`http://127.0.0.1:<port>` of a running index."""
    return idx.url[: -len("/simple/")]


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_member(tar: tarfile.TarFile, name: str) -> str:
    member = tar.extractfile(name)
    assert member is not None, name
    return member.read().decode()


# wheels ------------------------------------------------------------------------------------


def test_wheel_is_valid_zip_with_matching_record(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path, "My.Package", "1.0", requires=["beta>=1"], requires_python=">=3.8"
    )
    assert wheel.name == "my_package-1.0-py3-none-any.whl"
    assert parse_wheel_filename(wheel.name)[0] == "my-package"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[-1] == "my_package-1.0.dist-info/RECORD"
        rows = list(csv.reader(io.StringIO(zf.read(names[-1]).decode())))
        assert sorted(row[0] for row in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = zf.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode()
            assert int(size) == len(data)
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED
        init = zf.read("my_package/__init__.py").decode()
        metadata = HeaderParser().parsestr(zf.read("my_package-1.0.dist-info/METADATA").decode())
        wheel_meta = HeaderParser().parsestr(zf.read("my_package-1.0.dist-info/WHEEL").decode())
    namespace: dict[str, object] = {}
    exec(init, namespace)
    assert namespace["__version__"] == "1.0"
    assert namespace["hello"]() == "My.Package 1.0"  # type: ignore[operator]
    assert metadata["Metadata-Version"] == "2.1"
    assert metadata["Name"] == "My.Package"
    assert metadata["Requires-Python"] == ">=3.8"
    assert metadata.get_all("Requires-Dist") == ["beta>=1"]
    assert wheel_meta["Wheel-Version"] == "1.0"
    assert wheel_meta["Root-Is-Purelib"] == "true"
    assert wheel_meta.get_all("Tag") == ["py3-none-any"]


def test_wheel_is_reproducible(tmp_path: Path) -> None:
    def build(dest: Path) -> bytes:
        return build_wheel(
            dest, "alpha", "1.0", requires=["beta>=1"], scripts={"tool": "#!python\n"},
            extras={"x": ["gamma"]}, executable=["alpha-1.0.data/scripts/tool"],
        ).read_bytes()

    assert build(tmp_path / "a") == build(tmp_path / "b")


def test_wheel_options(tmp_path: Path) -> None:
    tag = "cp312-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64"
    wheel = build_wheel(
        tmp_path,
        "native-pkg",
        "2.0",
        tag=tag,
        files={"native_pkg/__init__.py": "", "native_pkg/_ext.so": elf_bytes("x86_64")},
        scripts={"tool": "#!python\nprint('hi')\n"},
        data_purelib={"extra_mod.py": "X = 1\n"},
        entry_points="[console_scripts]\nnative = native_pkg:main\n",
        extras={"fast": ["speedup>=1", 'uvloop; sys_platform == "linux"']},
        executable=["native_pkg-2.0.data/scripts/tool"],
    )
    assert wheel.name == f"native_pkg-2.0-{tag}.whl"
    name, version, _, tags = parse_wheel_filename(wheel.name)
    assert (name, str(version)) == ("native-pkg", "2.0")
    assert {str(t) for t in tags} == {
        "cp312-abi3-manylinux_2_17_x86_64",
        "cp312-abi3-manylinux2014_x86_64",
    }
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        info = {i.filename: i for i in zf.infolist()}
        assert (info["native_pkg-2.0.data/scripts/tool"].external_attr >> 16) & 0o777 == 0o755
        assert (info["native_pkg/__init__.py"].external_attr >> 16) & 0o777 == 0o644
        assert zf.read("native_pkg-2.0.data/purelib/extra_mod.py") == b"X = 1\n"
        assert b"native = native_pkg:main" in zf.read("native_pkg-2.0.dist-info/entry_points.txt")
        wheel_meta = HeaderParser().parsestr(zf.read("native_pkg-2.0.dist-info/WHEEL").decode())
        metadata = HeaderParser().parsestr(zf.read("native_pkg-2.0.dist-info/METADATA").decode())
    assert wheel_meta["Root-Is-Purelib"] == "false"
    assert wheel_meta.get_all("Tag") == [
        "cp312-abi3-manylinux_2_17_x86_64",
        "cp312-abi3-manylinux2014_x86_64",
    ]
    assert metadata.get_all("Provides-Extra") == ["fast"]
    assert metadata.get_all("Requires-Dist") == [
        'speedup>=1; extra == "fast"',
        'uvloop; (sys_platform == "linux") and extra == "fast"',
    ]
    with pytest.raises(ValueError):
        build_wheel(tmp_path, "bad", "1.0", executable=["nope.py"])


@pytest.mark.parametrize(("arch", "machine"), [("x86_64", 62), ("aarch64", 183)])
def test_elf_bytes(tmp_path: Path, arch: str, machine: int) -> None:
    data = elf_bytes(arch)
    assert data[:4] == b"\x7fELF"
    assert data[4:6] == b"\x02\x01"  # 64-bit, little-endian
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (3, machine)
    assert struct.unpack_from("<H", data, 52)[0] == 64  # e_ehsize
    readelf = shutil.which("readelf")
    if readelf:
        path = tmp_path / "lib.so"
        path.write_bytes(data)
        out = subprocess.run([readelf, "-h", str(path)], capture_output=True, text=True, check=False).stdout
        assert ("X86-64" if arch == "x86_64" else "AArch64") in out
        assert "DYN" in out


def test_elf_bytes_rejects_unknown_arch() -> None:
    with pytest.raises(ValueError):
        elf_bytes("sparc")


# sdists ------------------------------------------------------------------------------------


def test_sdist_layout_and_reproducibility(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path / "a", "Gamma-Lib", "1.0", requires=["beta>=1"])
    again = build_sdist(tmp_path / "b", "Gamma-Lib", "1.0", requires=["beta>=1"])
    assert sdist.read_bytes() == again.read_bytes()
    assert sdist.name == "gamma_lib-1.0.tar.gz"
    assert parse_sdist_filename(sdist.name)[0] == "gamma-lib"
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert all(m.name.split("/")[0] == "gamma_lib-1.0" for m in members)
        assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
        pkg_info = HeaderParser().parsestr(read_member(tar, "gamma_lib-1.0/PKG-INFO"))
        pyproject = load_toml(read_member(tar, "gamma_lib-1.0/pyproject.toml"))
        if sys.version_info >= (3, 12):
            tar.extractall(tmp_path / "unpacked", filter="data")
        else:
            tar.extractall(tmp_path / "unpacked")
    assert pkg_info.get_all("Requires-Dist") == ["beta>=1"]
    assert pyproject["build-system"]["build-backend"] == "poetry.core.masonry.api"
    poetry = pyproject["tool"]["poetry"]
    assert poetry["packages"] == [{"include": "gamma_lib"}]
    assert poetry["dependencies"] == {"python": "^3.8", "beta": ">=1"}

    # poetry-core (in the venv) can build a wheel from it.
    out = tmp_path / "built"
    out.mkdir()
    code = (
        "import sys; from poetry.core.masonry.api import build_wheel;"
        " print(build_wheel(sys.argv[1]))"
    )
    result = subprocess.run(  # noqa: PLW1510 (the return code is asserted below)
        [sys.executable, "-c", code, str(out)],
        cwd=tmp_path / "unpacked" / "gamma_lib-1.0",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gamma_lib-1.0-py3-none-any.whl"


# index -------------------------------------------------------------------------------------


def test_index_lists_and_serves(loopback_index: LoopbackIndex, tmp_path: Path) -> None:
    wheel = loopback_index.add(build_wheel(tmp_path / "dist", "Alpha", "1.0", requires_python=">=3.8"))
    sdist = loopback_index.add(build_sdist(tmp_path / "dist", "alpha", "1.0"))
    loopback_index.add(build_wheel(tmp_path / "dist", "beta_pkg", "1.0"))
    assert loopback_index.url.startswith("http://127.0.0.1:") and loopback_index.url.endswith("/simple/")

    status, _, body = fetch(loopback_index.url)
    assert status == 200
    assert '<a href="alpha/">' in body.decode() and '<a href="beta-pkg/">' in body.decode()

    for spelling in ("alpha/", "Alpha", "ALPHA/"):
        status, headers, body = fetch(loopback_index.url + spelling)
        assert status == 200, spelling
        assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    sdist_sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert (
        f'<a href="/files/{wheel.name}#sha256={wheel_sha}" data-requires-python="&gt;=3.8">'
        f"{wheel.name}</a>"
    ) in page
    assert f'<a href="/files/{sdist.name}#sha256={sdist_sha}">{sdist.name}</a>' in page
    assert "beta" not in page

    status, _, _ = fetch(loopback_index.url + "beta.pkg/")  # non-normalized spelling, no redirect
    assert status == 200

    status, headers, body = fetch(f"{origin(loopback_index)}/files/{wheel.name}")
    assert status == 200
    assert body == wheel.read_bytes()
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/octet-stream"

    assert fetch(loopback_index.url + "unknown/")[0] == 404
    assert fetch(f"{origin(loopback_index)}/files/nope-1.0-py3-none-any.whl")[0] == 404
    assert fetch(f"{origin(loopback_index)}/files/..%2F..%2Fetc%2Fpasswd")[0] == 404

    # files added while running show up at once
    loopback_index.add(build_wheel(tmp_path / "dist", "late", "0.1"))
    assert fetch(loopback_index.url + "late/")[0] == 200


def test_index_records_requests_and_injects_failures(loopback_index: LoopbackIndex) -> None:
    build_wheel(loopback_index.root, "alpha", "1.0")
    loopback_index.fail_next(503, count=2)
    assert fetch(loopback_index.url + "alpha/")[0] == 503
    assert fetch(loopback_index.url + "alpha/")[0] == 503
    assert fetch(loopback_index.url + "alpha/")[0] == 200
    loopback_index.fail_next(500)
    assert fetch(loopback_index.url)[0] == 500
    assert fetch(loopback_index.url)[0] == 200
    assert loopback_index.requests == ["/simple/alpha/"] * 3 + ["/simple/"] * 2


def test_index_basic_auth(tmp_path: Path) -> None:
    build_wheel(tmp_path / "index", "alpha", "1.0")
    with LoopbackIndex(tmp_path / "index", auth=("user", "s3cret")) as idx:
        status, headers, _ = fetch(idx.url + "alpha/")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="test"'
        wrong = base64.b64encode(b"user:wrong").decode()
        assert fetch(idx.url + "alpha/", {"Authorization": f"Basic {wrong}"})[0] == 401
        good = base64.b64encode(b"user:s3cret").decode()
        assert fetch(idx.url + "alpha/", {"Authorization": f"Basic {good}"})[0] == 200
        assert len(idx.requests) == 3


def test_index_stop_releases_server(tmp_path: Path) -> None:
    idx = LoopbackIndex(tmp_path / "index")
    with pytest.raises(RuntimeError):
        idx.url  # noqa: B018
    idx.start()
    url = idx.url
    idx.stop()
    idx.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        OPENER.open(url, timeout=2)


# projects ----------------------------------------------------------------------------------


def test_write_project(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "app",
        "my-app",
        dependencies={"alpha": "*", "lib": {"path": "../lib", "develop": True}},
        groups={"dev": {"pytest": ">=8"}},
        index_url="http://127.0.0.1:1/simple/",
        extras={"fast": ["alpha"]},
        tool_lambda_bundle={"runtime": "python3.12", "exclude": ["*.pyi"]},
    )
    data = load_toml((root / "pyproject.toml").read_text())
    poetry = data["tool"]["poetry"]
    assert poetry["packages"] == [{"include": "my_app"}]
    assert poetry["dependencies"] == {
        "python": ">=3.9,<4.0",
        "alpha": "*",
        "lib": {"path": "../lib", "develop": True},
    }
    assert poetry["group"]["dev"]["dependencies"] == {"pytest": ">=8"}
    assert poetry["extras"] == {"fast": ["alpha"]}
    assert poetry["source"] == [
        {"name": "loopback", "url": "http://127.0.0.1:1/simple/", "priority": "primary"}
    ]
    assert data["tool"]["lambda-bundle"] == {"runtime": "python3.12", "exclude": ["*.pyi"]}
    assert data["build-system"]["build-backend"] == "poetry.core.masonry.api"
    namespace: dict[str, object] = {}
    exec((root / "my_app" / "handler.py").read_text(), namespace)
    handler = namespace["handler"]
    assert handler({"a": 1}, None) == {"ok": True, "event": {"a": 1}}  # type: ignore[operator]
    assert (root / "my_app" / "__init__.py").is_file()

    flat = write_project(tmp_path / "flat", "flat", package_mode=False)
    flat_poetry = load_toml((flat / "pyproject.toml").read_text())["tool"]["poetry"]
    assert flat_poetry["package-mode"] is False and "packages" not in flat_poetry
    assert not (flat / "flat").exists()


def test_poetry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POETRY_REPOSITORIES_X_URL", "http://example.invalid/")
    monkeypatch.setenv("HTTPS_PROXY", "http://example.invalid:3128")
    env = poetry_env(tmp_path)
    assert env["POETRY_CACHE_DIR"] == str(tmp_path)
    assert env["POETRY_NO_INTERACTION"] == "1" and env["PIP_NO_INPUT"] == "1"
    assert "POETRY_REPOSITORIES_X_URL" not in env and "HTTPS_PROXY" not in env


def test_poetry_locks_against_loopback_index(
    loopback_index: LoopbackIndex, tmp_path: Path, poetry_cache: Path
) -> None:
    dist = tmp_path / "dist"
    alpha = loopback_index.add(
        build_wheel(dist, "alpha", "1.0", requires=["beta>=1"], requires_python=">=3.8")
    )
    beta_1 = loopback_index.add(build_wheel(dist, "beta", "1.0"))
    beta_2 = loopback_index.add(build_wheel(dist, "beta", "2.0"))
    project = write_project(
        tmp_path / "app", "app", dependencies={"alpha": "*"}, index_url=loopback_index.url
    )

    poetry_lock(project, poetry_cache)

    lock = load_toml((project / "poetry.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    assert {name: p["version"] for name, p in packages.items()} == {"alpha": "1.0", "beta": "2.0"}

    def files(path: Path) -> list[dict[str, str]]:
        return [{"file": path.name, "hash": "sha256:" + sha256_hex(path)}]

    assert packages["alpha"]["files"] == files(alpha)
    assert packages["beta"]["files"] == files(beta_2)
    assert beta_1.name not in (project / "poetry.lock").read_text()
    assert packages["alpha"]["source"]["url"] == loopback_index.url.rstrip("/")
    assert "/simple/alpha/" in loopback_index.requests and "/simple/beta/" in loopback_index.requests
    assert any(poetry_cache.iterdir())  # Poetry used the per-test cache


def test_poetry_locks_sdist_behind_basic_auth(tmp_path: Path, poetry_cache: Path) -> None:
    root = tmp_path / "index"
    sdist = build_sdist(root, "gamma", "1.0", requires=["beta>=1"])
    build_wheel(root, "beta", "1.5")
    with LoopbackIndex(root, auth=("user", "s3cret")) as idx:
        project = write_project(
            tmp_path / "app",
            "app",
            dependencies={"gamma": "*"},
            index_url=idx.url,
            source_name="private",
        )
        with pytest.raises(AssertionError, match="poetry lock failed"):
            poetry_lock(project, poetry_cache)  # no credentials: every request gets 401
        assert "/simple/gamma/" in idx.requests
        poetry_lock(
            project,
            poetry_cache,
            extra_env={
                "POETRY_HTTP_BASIC_PRIVATE_USERNAME": "user",
                "POETRY_HTTP_BASIC_PRIVATE_PASSWORD": "s3cret",
            },
        )
    lock = load_toml((project / "poetry.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    assert {name: p["version"] for name, p in packages.items()} == {"gamma": "1.0", "beta": "1.5"}
    assert packages["gamma"]["files"] == [
        {"file": sdist.name, "hash": "sha256:" + sha256_hex(sdist)}
    ]
