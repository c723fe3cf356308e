"""Cross-target "done when" checks against real packages from the public package index.

A data-heavy project (numpy, pandas, pydantic, cryptography, psycopg[binary], orjson, SQLAlchemy,
Powertools; `tests/fixtures/dataheavy.py`) is written and locked once for the module, against
the public index's simple API (read from pip at run time; never written in a file). Then:

- python3.12 and python3.13 x86_64 bundles are unzipped and their handler run by the matching
  CPython in isolated mode, importing everything from the bundle alone;
- the python3.12 arm64 bundle holds only AArch64 ELF shared objects, and no extension module
  for another Python or for x86_64;
- the file list of each python3.12 bundle (x86_64 and arm64) equals uv's reference install of
  the same pins for the same platform, install-time metadata aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from tests.e2e.helpers import Bundled
from tests.e2e.helpers import elf_machine
from tests.fixtures.dataheavy import DATA_HEAVY_DISTRIBUTIONS
from tests.fixtures.dataheavy import DATA_HEAVY_MODULE
from tests.fixtures.dataheavy import DATA_HEAVY_PACKAGE
from tests.fixtures.dataheavy import DATA_HEAVY_PROJECT
from tests.fixtures.dataheavy import public_simple_url
from tests.fixtures.dataheavy import write_data_heavy_project
from tests.fixtures.interpreters import find_python
from tests.fixtures.interpreters import run_handler
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import run_poetry

pytestmark = [pytest.mark.network, pytest.mark.slow]

# Downloading ~100 MB of wheels per architecture into a cold cache may take a while.
BUNDLE_TIMEOUT = 1800
UV_TIMEOUT = 1800

EM_AARCH64 = 183
ELFCLASS64 = 2

# Install-time files an installer writes into a .dist-info: not part of what a wheel ships.
INSTALL_METADATA = {"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"}
# uv's own lock file at the root of a `--target` directory: an artifact of uv, not of any wheel.
UV_TARGET_ARTIFACTS = {".lock"}


@dataclass
class PublicProject:
    project: Path
    cache: Path
    index_url: str
    base: Path
    bundles: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def bundle(self, runtime: str, arch: str) -> dict[str, Any]:
        """The JSON report of the project's bundle for `runtime`/`arch`, built once per module."""
        key = (runtime, arch)
        if key not in self.bundles:
            result = run_poetry(
                self.project, self.cache, "lambda-bundle", "--no-ansi",
                "--runtime", runtime, "--arch", arch, "--format", "json",
                timeout=BUNDLE_TIMEOUT,
            )
            bundled = Bundled(result.returncode, result.stdout, result.stderr)
            assert bundled.returncode == 0, (
                f"lambda-bundle --runtime {runtime} --arch {arch} failed (exit {bundled.returncode})\n"
                f"--- stdout ---\n{bundled.stdout}\n--- stderr ---\n{bundled.stderr}"
            )
            report = bundled.report
            assert (report["runtime"], report["architecture"], report["layout"]) == (runtime, arch, "bundle")
            # the only warning such a large bundle may carry is Lambda's direct-upload limit
            assert all("50 MB limit for a direct upload" in w for w in report["warnings"]), report["warnings"]
            self.bundles[key] = report
        return self.bundles[key]


@pytest.fixture(scope="module")
def public_project(tmp_path_factory: pytest.TempPathFactory) -> PublicProject:
    """The data-heavy project, written and locked once against the public index."""
    base = tmp_path_factory.mktemp("public-index")
    cache = base / "poetry-cache"
    cache.mkdir()
    index_url = public_simple_url()
    project = write_data_heavy_project(base / "project", index_url)
    poetry_lock(project, cache)
    return PublicProject(project=project, cache=cache, index_url=index_url, base=base)


def _host_glibc() -> tuple[int, int] | None:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", value)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _packages(report: dict[str, Any]) -> dict[str, str]:
    return {canonicalize_name(p["name"]): p["version"] for p in report["packages"]}


def _dependency_pins(report: dict[str, Any]) -> list[str]:
    """`name==version` for every bundled package but the project itself."""
    own = canonicalize_name(DATA_HEAVY_PROJECT)
    return [f"{name}=={version}" for name, version in sorted(_packages(report).items()) if name != own]


def _zip_names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return [n for n in zf.namelist() if not n.endswith("/")]


# -- a. the bundles run on the matching interpreter ------------------------------------------------


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_x86_64_bundle_runs_on_the_matching_python(
    public_project: PublicProject, tmp_path: Path, version: str
) -> None:
    runtime = f"python{version}"
    report = public_project.bundle(runtime, "x86_64")
    packages = _packages(report)
    expected = {canonicalize_name(d) for d in DATA_HEAVY_DISTRIBUTIONS.values()}
    assert expected | {canonicalize_name(DATA_HEAVY_PROJECT)} <= set(packages), sorted(packages)

    zip_path = Path(report["zip"])
    assert zip_path.name == f"{DATA_HEAVY_PACKAGE}-0.1.0-{runtime}-x86_64.zip"
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        zf.extractall(unzipped)

    if platform.machine() != "x86_64":
        pytest.skip(f"cannot run an x86_64 bundle on {platform.machine()}")
    glibc = _host_glibc()
    if glibc is None or glibc < (2, 34):
        pytest.skip(f"this host's glibc {glibc} is older than Lambda's (2.34) for {runtime}")
    python = find_python(version)
    if python is None:
        pytest.skip(f"no CPython {version} found on PATH or in pyenv")

    result = json.loads(run_handler(python, unzipped, DATA_HEAVY_MODULE))
    for key, dist in DATA_HEAVY_DISTRIBUTIONS.items():
        assert result["versions"][key] == packages[canonicalize_name(dist)], (key, result["versions"])
    for key, module_version in result["module_versions"].items():
        assert module_version == result["versions"][key], (key, result)
    outside = {
        key: origin for key, origin in result["origins"].items()
        if not Path(origin).resolve().is_relative_to(unzipped.resolve())
    }
    assert not outside, f"modules imported from outside the bundle: {outside}"
    assert result["psycopg_impl"] == "binary"
    assert result["roundtrip"] == {"name": "test", "value": 6.0}
    assert result["query"].startswith("SELECT t.x")


# -- b. the arm64 bundle holds only AArch64 code for CPython 3.12 ----------------------------------

SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
# Anything in a file name that ties it to an interpreter, an ABI or a machine.
INTERPRETER_SPECIFIC = re.compile(
    r"cpython-|\.cp3\d+|cp3\d+-|pypy|graalpy|-linux-gnu|\.abi3\.|x86[_-]64|amd64|i[3-6]86|musl"
)


def test_arm64_bundle_holds_only_aarch64_shared_objects_for_cpython_312(
    public_project: PublicProject,
) -> None:
    report = public_project.bundle("python3.12", "arm64")
    zip_path = Path(report["zip"])

    extensions: list[str] = []
    abi3: list[str] = []
    plain: list[str] = []
    wrong_machine: dict[str, Any] = {}
    wrong_name: list[str] = []
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/") or not SHARED_OBJECT.search(base):
                continue
            data = zf.read(name)
            if data[:4] != b"\x7fELF":
                wrong_machine[name] = f"not an ELF file (starts {data[:4]!r})"
                continue
            machine = elf_machine(data)
            if machine != EM_AARCH64 or data[4] != ELFCLASS64:
                wrong_machine[name] = f"e_machine {machine}, EI_CLASS {data[4]}"
            if base.endswith(".cpython-312-aarch64-linux-gnu.so"):
                extensions.append(name)
            elif base.endswith(".abi3.so"):
                abi3.append(name)
            elif INTERPRETER_SPECIFIC.search(base):
                wrong_name.append(name)
            else:
                plain.append(name)

    assert not wrong_machine, f"shared objects that are not 64-bit AArch64 ELF: {wrong_machine}"
    assert not wrong_name, f"shared objects for another Python, ABI or machine: {wrong_name}"
    # What these packages are known to ship, so the checks above did look at something.
    assert any(n.startswith("numpy/") for n in extensions), extensions
    assert any(n.startswith("pydantic_core/") for n in extensions), extensions
    assert any(n.startswith("psycopg_binary/") for n in extensions), extensions
    assert any(n.startswith("cryptography/") for n in abi3), abi3
    assert any(n.split("/", 1)[0] == "numpy.libs" for n in plain), plain
    assert any(n.split("/", 1)[0] == "psycopg_binary.libs" for n in plain), plain


# -- c. the bundle's files equal uv's reference install of the same pins ---------------------------


def _uv_env(cache: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("UV_")}
    env["UV_CACHE_DIR"] = str(cache)
    env["UV_NO_PROGRESS"] = "1"
    return env


@pytest.fixture(scope="module")
def uv(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs uv from this venv; installed into it with pip if missing."""
    command = [sys.executable, "-m", "uv"]

    def works() -> bool:
        try:
            return subprocess.run(
                [*command, "--version"], capture_output=True, text=True, timeout=60, check=False
            ).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if not works():
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "uv"],
                capture_output=True, text=True, timeout=600, check=False,
            )
        if not works():
            pytest.skip("uv is not installed and `pip install uv` failed")
    return command


def _comparable(path: str, own_top_levels: set[str]) -> bool:
    """Whether a bundle-relative file path takes part in the comparison with uv's install."""
    parts = path.split("/")
    if parts[0] == "bin" or parts[0] in own_top_levels:
        return False
    if "__pycache__" in parts or path.endswith(".pyc"):
        return False
    return not (len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in INSTALL_METADATA)


def _describe(paths: set[str], limit: int = 40) -> str:
    if not paths:
        return "  (none)"
    by_top: dict[str, int] = {}
    for p in paths:
        top = p.split("/", 1)[0]
        by_top[top] = by_top.get(top, 0) + 1
    lines = [f"  {len(paths)} files; by top-level entry: {dict(sorted(by_top.items()))}"]
    lines += [f"    {p}" for p in sorted(paths)[:limit]]
    if len(paths) > limit:
        lines.append(f"    ... and {len(paths) - limit} more")
    return "\n".join(lines)


@pytest.mark.parametrize(("arch", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_bundle_files_equal_uvs_reference_install(
    public_project: PublicProject, uv: list[str], tmp_path: Path, arch: str, machine: str
) -> None:
    report = public_project.bundle("python3.12", arch)
    pins = _dependency_pins(report)
    assert pins, report["packages"]

    target = tmp_path / "uv-target"
    result = subprocess.run(
        [
            *uv, "pip", "install", "--no-config",
            "--target", str(target),
            "--python-platform", f"{machine}-manylinux_2_34",
            "--python-version", "3.12",
            "--only-binary", ":all:",
            "--no-deps",
            "--index-url", public_project.index_url,
            *pins,
        ],
        env=_uv_env(public_project.base / "uv-cache"),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=UV_TIMEOUT, check=False,
    )
    assert result.returncode == 0, (
        f"uv's reference install failed (exit {result.returncode})\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )

    own_version = _packages(report)[canonicalize_name(DATA_HEAVY_PROJECT)]
    own = {DATA_HEAVY_PACKAGE, f"{DATA_HEAVY_PACKAGE}-{own_version}.dist-info"}
    bundled = {n for n in _zip_names(Path(report["zip"])) if _comparable(n, own)}
    reference = {
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if p.is_file() and p.relative_to(target).as_posix() not in UV_TARGET_ARTIFACTS
    }
    reference = {n for n in reference if _comparable(n, own)}

    assert bundled == reference, (
        f"python3.12 {arch} bundle differs from uv's install of the same pins "
        f"({machine}-manylinux_2_34, --only-binary :all:): {' '.join(pins)}\n"
        f"only in the bundle:\n{_describe(bundled - reference)}\n"
        f"only in uv's install:\n{_describe(reference - bundled)}"
    )


def test_excluding_botocore_keeps_what_other_packages_need(public_project: PublicProject) -> None:
    out = public_project.base / "no-botocore.zip"
    result = run_poetry(
        public_project.project, public_project.cache, "lambda-bundle", "--no-ansi", "--runtime", "python3.12",
        "--exclude", "botocore", "--format", "json", "-o", str(out), timeout=BUNDLE_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = {p["name"] for p in report["packages"]}
    assert "botocore" not in names
    assert {"aws-xray-sdk", "jmespath", "python-dateutil", "boto3"} <= names
    assert any(w.startswith("botocore is excluded, but") and "boto3" in w for w in report["warnings"])


def _import_seconds(python: Path, root: Path, module: str) -> float:
    """Wall time of a cold import of `module` from `root` alone, bytecode writing off (-B)."""
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter();"
        f" import {module}; print(time.perf_counter() - t)"
    )
    out = subprocess.run([str(python), "-I", "-B", "-c", code, str(root)], capture_output=True,
                         text=True, check=True, cwd=root)
    return float(out.stdout.strip())


def test_compiled_bundle_imports_at_least_twice_as_fast(public_project: PublicProject) -> None:
    python = find_python("3.12")
    if python is None:
        pytest.skip("no python3.12")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86_64 bundle on a non-x86_64 host")
    plain = public_project.bundle("python3.12", "x86_64")
    out = public_project.base / "compiled.zip"
    result = run_poetry(
        public_project.project, public_project.cache, "lambda-bundle", "--no-ansi", "--runtime", "python3.12",
        "--compile", "--format", "json", "-o", str(out), "--target-dir", str(public_project.base / "compiled"),
        timeout=BUNDLE_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    compiled = json.loads(result.stdout)
    assert compiled["compiled_modules"] > 1000
    roots = {}
    for label, report in (("plain", plain), ("compiled", compiled)):
        root = public_project.base / f"unzipped-{label}"
        if not root.exists():
            with zipfile.ZipFile(report["zip"]) as zf:
                zf.extractall(root)
        roots[label] = root
    with zipfile.ZipFile(compiled["zip"]) as zf:
        pycs = [n for n in zf.namelist() if n.endswith(".pyc")]
        assert pycs and all(n.endswith(".cpython-312.pyc") and "/__pycache__/" in f"/{n}" for n in pycs)
        for name in pycs[:200]:
            assert int.from_bytes(zf.read(name)[4:8], "little") == 0b01
    times: dict[str, list[float]] = {"plain": [], "compiled": []}
    for _ in range(5):
        for label in ("plain", "compiled"):
            times[label].append(_import_seconds(python, roots[label], DATA_HEAVY_MODULE))
    plain_s = sorted(times["plain"])[2]
    compiled_s = sorted(times["compiled"])[2]
    print(f"import {DATA_HEAVY_MODULE}: plain {plain_s:.3f} s, compiled {compiled_s:.3f} s")
    assert compiled_s <= 0.5 * plain_s, times
