"""Benchmark `poetry lambda-bundle` against the manual uv and pip pipelines on real projects.

One run measures every chosen project in turn (`--project`, default `all`): `data-heavy`
(`tests/fixtures/dataheavy.py`: a few large native packages) and `wide` (`tests/fixtures/wide.py`:
an API function with ~75 mostly pure-Python packages, where per-file costs dominate). It prints
one report per project, then a summary table of the key ratios of every project.

Run it from the repository root with the project's venv (it is a script, not a pytest test)::

    .venv/bin/python tests/benchmarks/bench_bundle.py [--runs N] [--project all|data-heavy|wide ...]
        [--runtime python3.12] [--arch x86_64] [--workdir DIR] [--json OUT] [--skip-pip] [--skip-cold]

Each project is written into its own work dir (`DIR/<project>` with `--workdir DIR`, kept; else
a temp dir, removed at the end) and locked once against the public index's simple API (its URL
is read from pip at run time, never written down). Every case is then timed as wall time
(`time.perf_counter`) around its subprocesses, and reported as the median of its runs (`--runs`;
the cold cases: max(1, N//2)). `--json` writes `{"runs", "projects": {name: results},
"summary"}`. `--skip-pip` leaves out the pip pipeline, `--skip-cold` the two download-bound cold
cases (ours cold, uv cold; "ours cold --compile" needs no download and still runs).

What "warm" and "cold" mean here:

- **warm, fresh outputs** (ours only): the CI case on a fresh clone. Poetry's cache was filled by
  one unmeasured run, each run writes its ZIP and target dir to new paths and nothing is deleted
  before it: deleting thousands of files slows the creation of the next thousands on ext4 for a
  while, which a fresh clone in CI does not have behind it. These outputs stay until every
  project is measured, so no deletion precedes a later case either; these cases run first.
- **warm --compile, fresh outputs** (ours only): the same with `--compile`, its bytecode cache
  (`<POETRY_CACHE_DIR>/lambda-bundle/bytecode`) filled by one unmeasured `--compile` run first.
- **uv pipeline warm, fresh outputs**: the uv pipeline (below) the same way: its cache filled
  by one unmeasured run, each run installing into a new dir and zipping to a new path, nothing
  deleted. Compared with "warm, fresh outputs" round by round: like with like. (On this VM the
  kept outputs fill the memory as the rounds go, which slows every writer: comparing our
  fresh-outputs runs with uv runs whose outputs were deleted before mixes two states.)
- **three bundles, fresh outputs** (ours only): the CI case for a project with three named
  bundles (a layer, a code bundle, a full bundle without boto3) built by one run: each measured
  run bundles its own copy of the project (without dist/ and build/), made before the run and not
  timed; one unmeasured run on a copy first. Compared with "warm, fresh outputs".
  These four are measured round by round (plain, `--compile`, three bundles, uv, then the
  next round once creating files is fast again), so that the ratios between them compare runs
  made in the same machine state.
- **warm**: the tool's download cache (POETRY_CACHE_DIR, UV_CACHE_DIR or PIP_CACHE_DIR, each
  inside the work dir) was filled by one unmeasured run first, but every output (the ZIP, the
  target/install dir) is deleted just before each measured run.
- **re-bundle** (ours only): warm, and the previous run's ZIP and target dir are left in place;
  only one project source file changes between runs. This is a developer's edit-and-rebuild loop.
- **three bundles** (ours only): the three bundles in one run on one copy of the project, their
  outputs deleted before each run; compared with "ours warm".
- **cold --compile** (ours only): `--compile` with the artifacts cached but the bytecode cache
  emptied before each run (every module compiled), outputs to new paths as in the warm case.
- **cold**: an empty cache dir (a fresh one per run) and no outputs, so every wheel (~60 MB) is
  downloaded again. The lock file stays: nothing is re-locked. Network speed dominates these.

Before every measured run (untimed) the outputs are removed as the case says and `os.sync()`
flushes the previous run's writes, so that writeback does not leak from one run into the next.

`--compile` uses the interpreter the plugin finds for the runtime (pyenv's, here); only if the
unmeasured `--compile` run fails is it retried, and then every `--compile` case run, with
`--compile-with` the interpreter `tests/fixtures/interpreters.find_python` finds.

The cases:

- ours: `python -m poetry lambda-bundle --runtime R --arch A` (plus `--output`/`--target-dir`
  for fresh outputs, `--compile` for the compile cases).
- uv pipeline warm / cold: `uv pip install --target DIR --python-platform <machine>-manylinux_2_34
  --python-version X.Y --only-binary :all: --no-deps -r requirements.txt` (the exact pins our
  bundle holds), `poetry build -f wheel`, `uv pip install --target DIR --no-deps <wheel>`, then
  `zip -r -6 -q` of DIR (Python's zipfile at level 6 if there is no `zip` on PATH).
- pip pipeline warm: `poetry build -f wheel`, `pip install --target DIR --platform ...
  --python-version X.Y --only-binary=:all: --implementation cp --upgrade <wheel>` (pip resolves
  the dependencies against the index itself), then the same zip step. pip runs with
  PIP_CONFIG_FILE=/dev/null, and without PIP_CONSTRAINT/PIP_FIND_LINKS and the like. pip 23.2
  checks the project wheel's Requires-Python against the interpreter running pip, not against
  `--python-version`, so `--ignore-requires-python` is added (as users of that pipeline do); pip
  23.2 also does not expand `manylinux_2_34` to older glibc tags, so every tag is spelled out.

Both pipelines run `poetry build` after one unmeasured `poetry env use python3.X` (see
`use_project_python`), as on a developer's machine; without it every `poetry build` of this
project would first search the machine for a compatible interpreter.

Also recorded: our ZIP's size against `zip -r -6 -q -X -D` of our own target dir (same files, no
directory entries or extra attributes; the ratio should be at most 1.03), the peak RSS (the
largest process) of one warm run and of one warm `--compile` run (issue 17: under 300 MB), whether
every warm and cold `--compile` run wrote the same ZIP bytes (sha256), the bundle's file count and
unzipped size, and whether a warm run works with every proxy variable pointing at a closed port
(i.e. whether a warm run needs the network at all).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from packaging.utils import canonicalize_name  # noqa: E402

from tests.fixtures.dataheavy import DATA_HEAVY_PACKAGE  # noqa: E402
from tests.fixtures.dataheavy import DATA_HEAVY_PROJECT  # noqa: E402
from tests.fixtures.dataheavy import public_simple_url  # noqa: E402
from tests.fixtures.dataheavy import write_data_heavy_project  # noqa: E402
from tests.fixtures.wide import WIDE_PACKAGE  # noqa: E402
from tests.fixtures.wide import WIDE_PROJECT  # noqa: E402
from tests.fixtures.wide import write_wide_project  # noqa: E402

# --project: (distribution name, package folder, writer)
PROJECTS: dict[str, tuple[str, str, Callable[[Path, str], Path]]] = {
    "data-heavy": (DATA_HEAVY_PROJECT, DATA_HEAVY_PACKAGE, write_data_heavy_project),
    "wide": (WIDE_PROJECT, WIDE_PACKAGE, write_wide_project),
}
from tests.fixtures.interpreters import find_python  # noqa: E402
from tests.fixtures.projects import compile_plugin_bytecode  # noqa: E402
from tests.fixtures.projects import poetry_env  # noqa: E402
from tests.fixtures.projects import run_poetry  # noqa: E402

ARCH_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# Lambda's python3.12+ runtimes run on Amazon Linux 2023: glibc 2.34.
LAMBDA_GLIBC_MINOR = 34
OLDEST_MANYLINUX_MINOR = 17
BLACKHOLE_PROXY = "http://127.0.0.1:9"
PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
# pip settings of this machine's environment that would change what pip installs or from where.
PIP_VARIABLES_DROPPED = ("PIP_CONSTRAINT", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                         "PIP_NO_INDEX", "PIP_REQUIREMENT", "PIP_TARGET", "PIP_USER")
MAX_ZIP_RATIO = 1.03
# Issue 17: a warm `--compile` run stays under 300 MB (10^6 bytes) of peak RSS.
MAX_COMPILE_RSS_MB = 300
# The file that marks a target dir as ours: the only one not in the ZIP.
TARGET_MARKER = ".lambda-bundle-target"

T = TypeVar("T")

QUICK_TIMEOUT = 600
DOWNLOAD_TIMEOUT = 1800


# -- running and timing -----------------------------------------------------------------------


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message holds the command and its output."""


def _failure(what: str, result: subprocess.CompletedProcess[str]) -> BenchError:
    return BenchError(
        f"{what} failed (exit {result.returncode})\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )


def run(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = QUICK_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; raise BenchError with its output unless it exits 0."""
    result = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise _failure(" ".join(cmd), result)
    return result


def timed(step: Callable[[], object]) -> float:
    """Wall seconds `step` takes."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def lap(steps: dict[str, float], name: str, step: Callable[[], T]) -> T:
    """Run `step`, add its wall seconds to `steps[name]`, return its result."""
    start = time.perf_counter()
    result = step()
    steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
    return result


def settle() -> None:
    """Flush dirty pages, so that one run's ~200 MB of writes (or a deleted tree) does not slow
    the next run's file writes down through the kernel's writeback."""
    if hasattr(os, "sync"):
        os.sync()


def quiet_file_system(keep_in: Path, limit: float = 240.0) -> float:
    """Wait (at most `limit` seconds) until creating files is fast again; the seconds waited.

    After thousands of files are deleted (the previous project's last cases), creating files on
    an ext4 file system without a journal stays several times slower for minutes: it does not
    reuse an inode deleted in the last 60 s (300 s while its inode table block is dirty) and
    scans past each such inode for every file it creates (see `file_system`). With a journal
    this wait ends at once. The probe: 2,000 empty files created in under 0.1 s, twice in a row.
    The probes' files stay in `keep_in` (removed with the fresh outputs at the end): deleting
    them would make the next probe, and the first case, slow in the same way.
    """
    start, fast = time.perf_counter(), 0
    keep_in.mkdir(parents=True, exist_ok=True)
    while fast < 2 and time.perf_counter() - start < limit:
        probe = Path(tempfile.mkdtemp(prefix="fs-probe-", dir=keep_in))
        begin = time.perf_counter()
        for i in range(2000):
            os.close(os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        took = time.perf_counter() - begin
        fast = fast + 1 if took < 0.1 else 0
        if fast < 2:
            time.sleep(10 if took >= 0.1 else 1)
    return time.perf_counter() - start


def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@dataclass
class Case:
    """One benchmark case: its wall times, one per measured run (and per step, for pipelines)."""

    name: str
    description: str
    seconds: list[float] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def step_medians(self) -> dict[str, float]:
        names = list(dict.fromkeys(name for run in self.steps for name in run))
        return {name: statistics.median(run.get(name, 0.0) for run in self.steps) for name in names}

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "runs": len(self.seconds),
            "seconds": [round(s, 4) for s in self.seconds],
            "median": round(self.median, 4),
            "min": round(min(self.seconds), 4),
            "max": round(max(self.seconds), 4),
            "step_medians": {name: round(s, 4) for name, s in self.step_medians().items()},
            **self.notes,
        }


def measure(
    name: str,
    description: str,
    runs: int,
    step: Callable[[int], object],
    prepare: Callable[[int], object] | None = None,
    cleanup: Callable[[int], object] | None = None,
) -> Case:
    """Time `step(i)` `runs` times; `prepare(i)` before and `cleanup(i)` after are not timed.

    A step that returns a dict of per-step seconds (see `lap`) has those recorded too.
    """
    case = Case(name, description)
    for i in range(runs):
        if prepare is not None:
            prepare(i)
        settle()
        start = time.perf_counter()
        laps = step(i)
        seconds = time.perf_counter() - start
        if cleanup is not None:
            cleanup(i)
        case.seconds.append(seconds)
        if isinstance(laps, dict):
            case.steps.append(laps)
        print(f"    {name} run {i + 1}/{runs}: {seconds:.2f} s", flush=True)
    return case


# -- zipping --------------------------------------------------------------------------------


def zip_command() -> str | None:
    """Path of Info-ZIP's `zip`, or None (then Python's zipfile is used)."""
    return shutil.which("zip")


def zip_dir(source: Path, dest: Path, *, strict: bool = False, exclude: Sequence[str] = ()) -> None:
    """`cd source && zip -r -6 -q dest .`; `strict` adds -X -D (no extra fields, no dir entries).

    `exclude` names top-level files to leave out. Without `zip` on PATH, Python's zipfile at
    compresslevel 6 writes the same file set (no directory entries).
    """
    tool = zip_command()
    if tool is not None:
        flags = ["-r", "-6", "-q", *(["-X", "-D"] if strict else [])]
        excluded = ["-x", *exclude] if exclude else []
        run([tool, *flags, str(dest), ".", *excluded], cwd=source, env=os.environ)
        return
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(source.rglob("*")):
            name = path.relative_to(source).as_posix()
            if path.is_file() and name not in exclude:
                zf.write(path, name)


# -- the project and our command ------------------------------------------------------------


@dataclass
class Workspace:
    base: Path
    project: Path
    poetry_cache: Path
    index_url: str
    runtime: str
    arch: str
    kind: str = "data-heavy"

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def machine(self) -> str:
        return ARCH_MACHINES[self.arch]

    @property
    def handler(self) -> Path:
        return self.project / PROJECTS[self.kind][1] / "handler.py"

    def bundle_args(self, *extra: str) -> list[str]:
        return ["lambda-bundle", "--no-ansi", "--runtime", self.runtime, "--arch", self.arch, *extra]


def set_up(base: Path, runtime: str, arch: str, kind: str = "data-heavy") -> tuple[Workspace, float]:
    """Write the chosen project under `base` and lock it; return it and the lock's seconds."""
    base.mkdir(parents=True, exist_ok=True)
    cache = base / "poetry-cache"
    cache.mkdir(exist_ok=True)
    index_url = public_simple_url()
    project = PROJECTS[kind][2](base / "project", index_url)
    ws = Workspace(base, project, cache, index_url, runtime, arch, kind)

    def lock() -> None:
        result = run_poetry(project, cache, "lock", "--no-ansi", timeout=DOWNLOAD_TIMEOUT)
        if result.returncode != 0:
            raise _failure("poetry lock", result)

    return ws, timed(lock)


def ours(ws: Workspace, cache: Path, *extra: str, extra_env: Mapping[str, str] | None = None,
         timeout: float = QUICK_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m poetry lambda-bundle --runtime R --arch A` in the project; raise on failure."""
    result = run_poetry(ws.project, cache, *ws.bundle_args(*extra), extra_env=extra_env, timeout=timeout)
    if result.returncode != 0:
        raise _failure("poetry lambda-bundle", result)
    return result


@dataclass
class BundleFacts:
    """What the unmeasured first run of ours reported."""

    zip: Path
    target_dir: Path
    size: int
    unzipped_size: int
    files: int
    pins: list[str]


def prime_ours(ws: Workspace) -> BundleFacts:
    """One unmeasured warm-up run with `--format json`: fills Poetry's cache; returns the report."""
    result = ours(ws, ws.poetry_cache, "--format", "json", timeout=DOWNLOAD_TIMEOUT)
    report = json.loads(result.stdout)
    own = canonicalize_name(PROJECTS[ws.kind][0])
    pins = sorted(
        f"{canonicalize_name(p['name'])}=={p['version']}"
        for p in report["packages"] if canonicalize_name(p["name"]) != own
    )
    return BundleFacts(
        zip=(ws.project / report["zip"]).resolve(),
        target_dir=(ws.project / report["target_dir"]).resolve(),
        size=int(report["size"]),
        unzipped_size=int(report["unzipped_size"]),
        files=int(report["files"]),
        pins=pins,
    )


def case_ours_warm(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    return measure(
        "ours warm", "Poetry's cache filled; ZIP and target dir deleted before each run", runs,
        step=lambda i: ours(ws, ws.poetry_cache),
        prepare=lambda i: remove(facts.zip, facts.target_dir),
    )


def fresh_root(ws: Workspace) -> Path:
    """Where the fresh-outputs cases write: removed only at the end of the whole benchmark."""
    return ws.base / "fresh"


def fresh_output_args(folder: Path) -> tuple[str, ...]:
    return ("--output", str(folder / "bundle.zip"), "--target-dir", str(folder / "target"))


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Compile:
    """How `--compile` runs here: its arguments and which interpreter compiles."""

    args: tuple[str, ...]
    interpreter: str


def prime_compile(ws: Workspace) -> Compile:
    """One unmeasured `--compile` run (fresh outputs): fills the plugin's bytecode cache.

    The plugin finds the runtime's interpreter itself; only if that run fails is it retried with
    `--compile-with` the interpreter `tests/fixtures/interpreters.find_python` finds.
    """
    out = fresh_root(ws) / "compile-warm-up"
    remove(out)
    try:
        ours(ws, ws.poetry_cache, "--compile", *fresh_output_args(out), timeout=DOWNLOAD_TIMEOUT)
        return Compile(("--compile",), "found by the plugin")
    except BenchError as error:
        python = find_python(ws.python_version)
        if python is None:
            raise BenchError(f"--compile failed and no python{ws.python_version} was found "
                             f"(PATH or pyenv) to pass as --compile-with:\n{error}") from None
    remove(out)
    args = ("--compile-with", str(python))
    ours(ws, ws.poetry_cache, *args, *fresh_output_args(out), timeout=DOWNLOAD_TIMEOUT)
    return Compile(args, f"--compile-with {python}")


def bytecode_cache(ws: Workspace) -> Path:
    """The plugin's own bytecode cache, inside POETRY_CACHE_DIR (see pipeline.py)."""
    return ws.poetry_cache / "lambda-bundle" / "bytecode"


def case_ours_compile_cold(ws: Workspace, compile_: Compile, runs: int) -> Case:
    """`--compile` with only the bytecode cache emptied before each run: every module compiled.

    The artifacts stay cached and the outputs go to new paths, as in the warm `--compile` case,
    so the two differ only in the bytecode cache; each run's ZIP sha256 is noted.
    """
    root = fresh_root(ws) / "compile-cold"
    remove(root)
    digests: list[str] = []

    def step(i: int) -> None:
        ours(ws, ws.poetry_cache, *compile_.args, *fresh_output_args(root / str(i)))

    case = measure(
        "ours cold --compile", "artifacts cached; bytecode cache emptied before each run; new output paths",
        runs, step=step, prepare=lambda i: remove(bytecode_cache(ws)),
        cleanup=lambda i: digests.append(sha256(root / str(i) / "bundle.zip")),
    )
    case.notes["zip_sha256"] = digests
    return case


def compile_bytes_equal(warm: Case, cold: Case) -> dict[str, Any]:
    """Whether every warm and cold `--compile` run wrote the same ZIP bytes."""
    digests = set(warm.notes["zip_sha256"]) | set(cold.notes["zip_sha256"])
    return {"equal": len(digests) == 1, "sha256": sorted(digests)}


def inodes(root: Path) -> dict[str, int]:
    """{relative path: inode} of every file under `root`."""
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def case_ours_rebundle(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    """Also notes, per run, how many target-dir files kept their inode (carried over, not rewritten)."""
    original = ws.handler.read_text(encoding="utf-8")
    before: dict[str, int] = {}
    carried: list[str] = []

    def prepare(i: int) -> None:
        ws.handler.write_text(f"{original}\n# benchmark edit {i}\n", encoding="utf-8")
        before.clear()
        before.update(inodes(facts.target_dir))

    def cleanup(i: int) -> None:
        after = inodes(facts.target_dir)
        kept = sum(1 for path, inode in after.items() if before.get(path) == inode)
        carried.append(f"{kept}/{len(after)}")

    try:
        ours(ws, ws.poetry_cache)  # the outputs the first measured run starts from
        case = measure(
            "ours re-bundle",
            "warm, previous ZIP and target dir left in place, one source file changed",
            runs, step=lambda i: ours(ws, ws.poetry_cache), prepare=prepare, cleanup=cleanup,
        )
    finally:
        ws.handler.write_text(original, encoding="utf-8")
    case.notes["target_files_carried_over"] = carried
    return case


THREE_BUNDLES = """
[tool.lambda-bundle.bundles.deps]
layout = "layer"

[tool.lambda-bundle.bundles.code]
layout = "code"

[tool.lambda-bundle.bundles.full]
exclude = ["boto3"]
"""


def copy_three_bundles(ws: Workspace, dest: Path) -> Path:
    """A copy of the project (without its dist/ and build/) configured with THREE_BUNDLES."""
    remove(dest)
    shutil.copytree(ws.project, dest, ignore=shutil.ignore_patterns("dist", "build"))
    pyproject = dest / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + THREE_BUNDLES, encoding="utf-8")
    return dest


def bundle_three(ws: Workspace, project: Path) -> None:
    result = run_poetry(project, ws.poetry_cache, *ws.bundle_args(), timeout=QUICK_TIMEOUT)
    if result.returncode != 0:
        raise _failure("poetry lambda-bundle (three bundles)", result)


def case_ours_three_bundles(ws: Workspace, runs: int) -> Case:
    """A layer, a code bundle and a full bundle without boto3, in one run (a copy of the project)."""
    copy = copy_three_bundles(ws, ws.base / "project-bundles")
    bundle_three(ws, copy)  # unmeasured: builds the project once into this copy's outputs
    return measure(
        "ours three bundles", "layer + code + full without boto3 in one run; warm; outputs deleted", runs,
        step=lambda i: bundle_three(ws, copy), prepare=lambda i: remove(copy / "dist", copy / "build"),
    )


def cases_fresh_interleaved(ws: Workspace, compile_: Compile, runs: int, uv: UvSetUp) -> dict[str, Case]:
    """The fresh-output cases measured round by round (plain, `--compile`, three bundles, the
    uv pipeline, then again: the long uv run last, and the file system left to become quiet
    after it), not one case after the other: this machine's speed drifts by a
    quarter from one minute to the next (its file system, and on this VM the memory the
    kept outputs fill: see docs/performance.md), and the ratios between these cases are what
    the targets are about, so each round's runs see the same state. The uv pipeline also
    writes to new paths each round (its install dir and ZIP kept, like ours), so that the two
    compare like with like.
    """
    root = fresh_root(ws)
    for folder in ("ours-warm-fresh-outputs", "ours-warm-compile-fresh-outputs", "three-bundles", "uv-pipeline"):
        remove(root / folder)
    plain = Case("ours warm, fresh outputs", "Poetry's cache filled; new output paths each run, nothing deleted")
    compiled = Case("ours warm --compile, fresh outputs",
                    "--compile, artifacts and bytecode cached; new output paths each run, nothing deleted")
    three = Case("ours three bundles, fresh outputs",
                 "layer + code + full without boto3 in one run; warm; a fresh copy of the project each run")
    uv_fresh = Case("uv pipeline warm, fresh outputs",
                    "uv's cache filled; new install dir and bundle.zip each run, nothing deleted")
    digests: dict[str, list[str]] = {"plain": [], "compile": []}
    bundle_three(ws, copy_three_bundles(ws, root / "three-bundles" / "warm-up" / "project"))
    _, uv_binary_, requirements = uv

    def timed(case: Case, step: Callable[[], object]) -> None:
        settle()
        start = time.perf_counter()
        step()
        case.seconds.append(time.perf_counter() - start)

    for i in range(runs):
        out = root / "ours-warm-fresh-outputs" / str(i)
        timed(plain, functools.partial(ours, ws, ws.poetry_cache, *fresh_output_args(out)))
        digests["plain"].append(sha256(out / "bundle.zip"))
        out_c = root / "ours-warm-compile-fresh-outputs" / str(i)
        timed(compiled, functools.partial(ours, ws, ws.poetry_cache, *compile_.args, *fresh_output_args(out_c)))
        digests["compile"].append(sha256(out_c / "bundle.zip"))
        project = copy_three_bundles(ws, root / "three-bundles" / str(i) / "project")
        timed(three, functools.partial(bundle_three, ws, project))
        pipe = Pipeline(root / "uv-pipeline" / str(i))
        pipe.root.mkdir(parents=True)
        timed(uv_fresh, functools.partial(uv_pipeline, ws, pipe, uv_binary_, requirements, ws.base / "uv-cache"))
        quiet_file_system(root / "fs-probes", limit=60.0)  # the next round starts as quiet as the first
        print(f"    round {i + 1}/{runs}: plain {plain.seconds[-1]:.2f} s, --compile {compiled.seconds[-1]:.2f} s,"
              f" three bundles {three.seconds[-1]:.2f} s, uv {uv_fresh.seconds[-1]:.2f} s", flush=True)
    plain.notes["zip_sha256"] = digests["plain"]
    compiled.notes["zip_sha256"] = digests["compile"]
    return {"ours_fresh_outputs": plain, "uv_warm_fresh_outputs": uv_fresh, "ours_compile_fresh_outputs": compiled,
            "ours_three_bundles_fresh": three}


def case_ours_cold(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    def cache(i: int) -> Path:
        return ws.base / "cold" / f"poetry-cache-{i}"

    def prepare(i: int) -> None:
        remove(facts.zip, facts.target_dir, cache(i))
        cache(i).mkdir(parents=True)

    return measure(
        "ours cold", "empty POETRY_CACHE_DIR (a fresh one each run); lock kept; outputs deleted",
        runs, step=lambda i: ours(ws, cache(i), timeout=DOWNLOAD_TIMEOUT),
        prepare=prepare, cleanup=lambda i: remove(cache(i)),
    )


def peak_rss(ws: Workspace, *extra: str) -> dict[str, Any]:
    """Peak RSS (KiB) of one run of ours with `extra` arguments: the largest process of the run."""
    cmd = [sys.executable, "-m", "poetry", *ws.bundle_args(*extra)]
    env = poetry_env(ws.poetry_cache)
    gnu_time = Path("/usr/bin/time")
    if gnu_time.is_file():
        result = run([str(gnu_time), "-v", *cmd], cwd=ws.project, env=env)
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        if match:
            return {"kib": int(match.group(1)), "method": "/usr/bin/time -v"}
    # A fresh parent, so that RUSAGE_CHILDREN holds only this run.
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    result = run([sys.executable, "-c", probe, *cmd], cwd=ws.project, env=env)
    return {"kib": int(result.stdout.split()[-1]), "method": "getrusage(RUSAGE_CHILDREN) in a probe process"}


def peak_rss_compile(ws: Workspace, compile_: Compile) -> dict[str, Any]:
    """Peak RSS of one warm `--compile` run (bytecode cached, new output paths), against the limit."""
    rss = peak_rss(ws, *compile_.args, *fresh_output_args(fresh_root(ws) / "rss-compile"))
    return {**rss, "limit_mb": MAX_COMPILE_RSS_MB, "ok": rss["kib"] * 1024 / 1e6 < MAX_COMPILE_RSS_MB}


def zip_ratio(facts: BundleFacts, scratch: Path) -> dict[str, Any]:
    """Our ZIP's size against `zip -6` of our own target dir (without its marker file)."""
    reference = scratch / "reference.zip"
    remove(reference)
    zip_dir(facts.target_dir, reference, strict=True, exclude=[TARGET_MARKER])
    ours_size = facts.zip.stat().st_size
    ref_size = reference.stat().st_size
    with zipfile.ZipFile(facts.zip) as zf:
        names = zf.namelist()
    remove(reference)
    return {
        "ours_bytes": ours_size,
        "zip6_bytes": ref_size,
        "ratio": round(ours_size / ref_size, 4),
        "ok": ours_size / ref_size <= MAX_ZIP_RATIO,
        "reference": "zip -r -6 -q -X -D" if zip_command() else "python zipfile, compresslevel 6",
        "ours_entries": len(names),
        "ours_dir_entries": sum(n.endswith("/") for n in names),
    }


def offline_run(ws: Workspace, facts: BundleFacts) -> dict[str, Any]:
    """One warm run with every proxy variable on a closed port: does a warm run need the network?"""
    remove(facts.zip, facts.target_dir)
    proxies = {}
    for name in PROXY_NAMES:
        proxies[name] = proxies[name.lower()] = BLACKHOLE_PROXY
    start = time.perf_counter()
    try:
        result = run_poetry(ws.project, ws.poetry_cache, *ws.bundle_args(), extra_env=proxies,
                            timeout=QUICK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "seconds": round(time.perf_counter() - start, 3),
                "exit": None, "error": f"timed out after {QUICK_TIMEOUT} s"}
    seconds = time.perf_counter() - start
    error = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-6:])
    return {"ok": result.returncode == 0, "exit": result.returncode, "seconds": round(seconds, 3),
            "error": "" if result.returncode == 0 else error}


# -- the uv pipeline ------------------------------------------------------------------------


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BenchError("uv is not installed: `.venv/bin/python -m pip install uv`") from None
        return found


def uv_env(cache: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("UV_")}
    env["UV_CACHE_DIR"] = str(cache)
    env["UV_NO_PROGRESS"] = "1"
    return env


def use_project_python(ws: Workspace) -> str:
    """`poetry env use python3.X` once, as a developer of the project would have done.

    `poetry build` is an env command: when the Python running Poetry is outside the project's
    `python` constraint and no env was chosen, every `poetry build` searches all interpreters of
    the machine (seconds here) before building. Our command needs no env, so it never pays this.
    """
    python = find_python(ws.python_version)
    if python is None:
        return f"none (no python{ws.python_version} found): poetry build searches for an interpreter each run"
    result = run_poetry(ws.project, ws.poetry_cache, "env", "use", "--no-ansi", str(python))
    if result.returncode != 0:
        raise _failure("poetry env use", result)
    return f"poetry env use {python}"


def build_wheel(ws: Workspace, out: Path) -> Path:
    """`poetry build -f wheel --output out`; the one wheel it wrote."""
    remove(out)
    result = run_poetry(ws.project, ws.poetry_cache, "build", "-f", "wheel", "--no-ansi",
                        "--output", str(out))
    if result.returncode != 0:
        raise _failure("poetry build", result)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BenchError(f"poetry build wrote {wheels} into {out}")
    return wheels[0]


@dataclass
class Pipeline:
    """A manual pipeline's working paths (all under one folder of the work dir)."""

    root: Path

    @property
    def target(self) -> Path:
        return self.root / "package"

    @property
    def zip(self) -> Path:
        return self.root / "bundle.zip"

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    def clean(self) -> None:
        remove(self.target, self.zip)


def uv_pipeline(ws: Workspace, pipe: Pipeline, uv: str, requirements: Path, cache: Path) -> dict[str, float]:
    """The pipeline once; returns its steps' wall seconds."""
    env = uv_env(cache)
    target = ["--target", str(pipe.target), "--python-platform", f"{ws.machine}-manylinux_2_{LAMBDA_GLIBC_MINOR}",
              "--python-version", ws.python_version]
    steps: dict[str, float] = {}
    lap(steps, "uv pip install -r requirements.txt", lambda: run(
        [uv, "pip", "install", "--no-config", *target, "--only-binary", ":all:", "--no-deps",
         "--index-url", ws.index_url, "-r", str(requirements)],
        cwd=pipe.root, env=env, timeout=DOWNLOAD_TIMEOUT))
    wheel = lap(steps, "poetry build -f wheel", lambda: build_wheel(ws, pipe.dist))
    lap(steps, "uv pip install <project wheel>", lambda: run(
        [uv, "pip", "install", "--no-config", *target, "--no-deps", str(wheel)], cwd=pipe.root, env=env))
    lap(steps, "zip", lambda: zip_dir(pipe.target, pipe.zip))
    return steps


UvSetUp = tuple[Pipeline, str, Path]  # the pipeline's paths, the uv binary, requirements.txt


def set_up_uv(ws: Workspace, facts: BundleFacts) -> UvSetUp:
    pipe = Pipeline(ws.base / "uv-pipeline")
    pipe.root.mkdir(parents=True, exist_ok=True)
    requirements = pipe.root / "requirements.txt"
    requirements.write_text("".join(f"{pin}\n" for pin in facts.pins), encoding="utf-8")
    return pipe, uv_binary(), requirements


def case_uv_warm(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    pipe, uv, requirements = set_up_uv(ws, facts)
    cache = ws.base / "uv-cache"
    pipe.clean()
    uv_pipeline(ws, pipe, uv, requirements, cache)  # fills uv's cache
    return measure(
        "uv pipeline warm", "uv's cache filled; install dir and bundle.zip deleted before each run",
        runs, step=lambda i: uv_pipeline(ws, pipe, uv, requirements, cache),
        prepare=lambda i: pipe.clean(),
    )


def case_uv_cold(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    pipe, uv, requirements = set_up_uv(ws, facts)

    def cache(i: int) -> Path:
        return ws.base / "cold" / f"uv-cache-{i}"

    def prepare(i: int) -> None:
        pipe.clean()
        remove(cache(i))

    return measure(
        "uv pipeline cold", "empty UV_CACHE_DIR (a fresh one each run); outputs deleted", runs,
        step=lambda i: uv_pipeline(ws, pipe, uv, requirements, cache(i)),
        prepare=prepare, cleanup=lambda i: remove(cache(i)),
    )


# -- the pip pipeline -----------------------------------------------------------------------


def pip_platforms(machine: str) -> list[str]:
    """Every manylinux tag glibc 2.34 accepts, newest first, spelled out (pip 23 does not expand
    `manylinux_2_34` to the older tags by itself), with the legacy aliases."""
    tags = [f"manylinux_2_{minor}_{machine}"
            for minor in range(LAMBDA_GLIBC_MINOR, OLDEST_MANYLINUX_MINOR - 1, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += [f"manylinux_2_12_{machine}", f"manylinux2010_{machine}",
                 f"manylinux_2_5_{machine}", f"manylinux1_{machine}"]
    return tags


def pip_env(cache: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.upper() not in PIP_VARIABLES_DROPPED}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_CACHE_DIR"] = str(cache)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def pip_pipeline(ws: Workspace, pipe: Pipeline, cache: Path) -> dict[str, float]:
    """The pipeline once; returns its steps' wall seconds."""
    steps: dict[str, float] = {}
    wheel = lap(steps, "poetry build -f wheel", lambda: build_wheel(ws, pipe.dist))
    platforms = [arg for tag in pip_platforms(ws.machine) for arg in ("--platform", tag)]
    lap(steps, "pip install --target <project wheel>", lambda: run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(pipe.target), *platforms,
         "--python-version", ws.python_version, "--only-binary=:all:", "--implementation", "cp",
         "--upgrade", "--ignore-requires-python", "--index-url", ws.index_url, str(wheel)],
        cwd=pipe.root, env=pip_env(cache), timeout=DOWNLOAD_TIMEOUT))
    lap(steps, "zip", lambda: zip_dir(pipe.target, pipe.zip))
    return steps


def case_pip_warm(ws: Workspace, facts: BundleFacts, runs: int) -> Case:
    pipe = Pipeline(ws.base / "pip-pipeline")
    pipe.root.mkdir(parents=True, exist_ok=True)
    cache = ws.base / "pip-cache"
    pipe.clean()
    pip_pipeline(ws, pipe, cache)  # fills pip's cache
    return measure(
        "pip pipeline warm", "pip's cache filled; install dir and bundle.zip deleted before each run",
        runs, step=lambda i: pip_pipeline(ws, pipe, cache), prepare=lambda i: pipe.clean(),
    )


# -- machine info and report ----------------------------------------------------------------


def _first_line(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120,
                                env=dict(env or os.environ), check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def file_system(where: Path) -> str:
    """The file system the work dir is on: type, device, options, and (ext4) whether it has a
    journal. It matters: an ext4 file system without a journal (this project's development VM)
    does not reuse an inode deleted in the last minutes, and scans past each one for every file it
    creates, so creating files after deleting thousands is several times slower there."""
    try:
        device = os.stat(where).st_dev
        wanted = f"{os.major(device)}:{os.minor(device)}"
        for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if fields[2] != wanted:
                continue
            rest = fields[fields.index("-") + 1:]
            kind, source = rest[0], rest[1]
            options = rest[2] if len(rest) > 2 else fields[5]  # the super block's: discard, errors=...
            text = f"{kind} on {source} ({options}"
            if kind == "ext4":
                name = Path(source).name
                journal = Path("/proc/fs/jbd2").is_dir() and any(
                    entry.name.startswith(f"{name}-") for entry in Path("/proc/fs/jbd2").iterdir())
                text += ", journal" if journal else ", no journal"
            return text + ")"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def machine_info(ws: Workspace) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
        match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
        if match:
            ram = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    zip_tool = zip_command()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": usable,
        "cpu": cpu,
        "ram": ram,
        "platform": platform.platform(),
        "fs": file_system(ws.base),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "poetry": _first_line([sys.executable, "-m", "poetry", "--version", "--no-ansi"],
                              poetry_env(ws.poetry_cache)),
        "uv": _first_line([uv_binary(), "--version"]),
        "pip": _first_line([sys.executable, "-m", "pip", "--version"]).split(" from ")[0],
        "zip": (_first_line([zip_tool, "-v"]) if zip_tool else "none: python zipfile, compresslevel 6"),
    }


def ratio(a: Case | None, b: Case | None) -> float | None:
    return round(a.median / b.median, 3) if a and b else None


def per_round_ratio(a: Case, b: Case) -> float | None:
    """For two cases measured round by round: the median of each round's ratio, so every ratio
    compares two runs made in the same file system state (its speed drifts between rounds)."""
    if len(a.seconds) != len(b.seconds) or not a.seconds:
        return ratio(a, b)
    return round(statistics.median(x / y for x, y in zip(a.seconds, b.seconds)), 3)


def print_report(results: dict[str, Any], cases: dict[str, Case]) -> None:
    machine = results["machine"]
    print()
    print(f"poetry lambda-bundle benchmark: {results['project']} for {results['runtime']} {results['arch']}")
    for key in ("date", "nproc", "cpu", "ram", "platform", "fs", "python", "poetry", "uv", "pip", "zip"):
        print(f"  {key + ':':10} {machine.get(key, 'unknown')}")
    print(f"  {'lock:':10} {results['lock_seconds']:.2f} s (once, not a case)")
    print()
    width = max(len(case.name) for case in cases.values())
    print(f"  {'case':{width}} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}")
    print(f"  {'-' * width} {'-' * 4} {'-' * 9} {'-' * 8} {'-' * 8}")
    for case in cases.values():
        print(f"  {case.name:{width}} {len(case.seconds):>4} {case.median:>9.2f} "
              f"{min(case.seconds):>8.2f} {max(case.seconds):>8.2f}")
        for step, seconds in case.step_medians().items():
            print(f"      {step:36} {seconds:>7.2f}")
        if "target_files_carried_over" in case.notes:
            print(f"      target files carried over, per run: {', '.join(case.notes['target_files_carried_over'])}")
    skipped = results["skipped"]
    if skipped:
        print(f"  skipped: {', '.join(skipped)}")
    print()
    for label, value in results["ratios"].items():
        shown = "n/a" if value is None else f"{value:.2f}x"
        print(f"  {label:50} {shown}")
    bundle = results["bundle"]
    zr = results["zip_ratio"]
    print()
    print(f"  our ZIP:           {bundle['size'] / 1e6:.1f} MB zipped, {bundle['unzipped_size'] / 1e6:.1f} MB "
          f"unzipped, {bundle['files']} files, {len(bundle['pins'])} locked dependencies")
    print(f"  vs {zr['reference']} of our target dir: {zr['zip6_bytes'] / 1e6:.2f} MB -> ratio "
          f"{zr['ratio']:.4f} ({'ok' if zr['ok'] else 'ABOVE'} <= {MAX_ZIP_RATIO})")
    rss = results["peak_rss"]
    print(f"  peak RSS (warm):   {rss['kib'] / 1024:.0f} MiB ({rss['method']})")
    crss = results["peak_rss_compile"]
    print(f"  peak RSS (warm --compile): {crss['kib'] * 1024 / 1e6:.0f} MB "
          f"({'ok' if crss['ok'] else 'ABOVE'} < {crss['limit_mb']} MB; {crss['method']})")
    same = results["compile_bytes"]
    print(f"  warm and cold --compile ZIPs: {'byte-identical' if same['equal'] else 'DIFFERENT'} "
          f"(sha256 {', '.join(digest[:12] for digest in same['sha256'])})")
    print(f"  --compile interpreter: {results['compile_interpreter']}")
    off = results["offline"]
    state = "succeeded" if off["ok"] else f"FAILED (exit {off['exit']})"
    print(f"  warm run, proxies on {BLACKHOLE_PROXY}: {state} in {off['seconds']:.2f} s")
    if not off["ok"]:
        for line in off["error"].splitlines():
            print(f"      {line}")
    print(f"  pipelines zipped with: {results['zip_tool']}")
    print(f"  pipelines' project env (for poetry build): {results['pipelines_project_env']}")


# The combined summary: (label, what it reads from a project's results, how it is shown).
SUMMARY_ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], Callable[[Any], str]]] = [
    ("ours warm, fresh outputs (median s)", lambda r: r["cases"]["ours_fresh_outputs"]["median"],
     lambda v: f"{v:.2f}"),
    ("uv warm, fresh outputs (median s)", lambda r: r["cases"].get("uv_warm_fresh_outputs", {}).get("median"),
     lambda v: f"{v:.2f}"),
    ("warm plain / uv warm, both fresh outputs", lambda r: r["ratios"]["ours warm / uv warm, both fresh outputs (per round)"],
     lambda v: f"{v:.2f}x"),
    ("warm plain / uv warm, both outputs deleted", lambda r: r["ratios"]["ours warm / uv warm"], lambda v: f"{v:.2f}x"),
    ("warm plain, fresh outputs / uv warm, outputs deleted", lambda r: r["ratios"]["ours warm, fresh outputs / uv warm"],
     lambda v: f"{v:.2f}x"),
    ("warm --compile / warm plain (fresh outputs)",
     lambda r: r["ratios"]["warm --compile / warm plain (fresh outputs, per round)"], lambda v: f"{v:.2f}x"),
    ("ours cold / uv cold", lambda r: r["ratios"]["ours cold / uv cold"], lambda v: f"{v:.2f}x"),
    ("three bundles / one bundle (fresh outputs)",
     lambda r: r["ratios"]["three bundles / one bundle (fresh outputs, per round)"], lambda v: f"{v:.2f}x"),
    ("ours warm / pip warm", lambda r: r["ratios"]["ours warm / pip warm"], lambda v: f"{v:.2f}x"),
    (f"peak RSS warm --compile (< {MAX_COMPILE_RSS_MB} MB)", lambda r: r["peak_rss_compile"],
     lambda v: f"{v['kib'] * 1024 / 1e6:.0f} MB {'ok' if v['ok'] else 'ABOVE'}"),
    ("warm == cold --compile ZIP bytes", lambda r: r["compile_bytes"]["equal"],
     lambda v: "yes" if v else "NO"),
]


def summary(projects: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{row label: {project: raw value}} of SUMMARY_ROWS."""
    return {label: {name: read(results) for name, results in projects.items()}
            for label, read, _ in SUMMARY_ROWS}


def print_summary(projects: Mapping[str, dict[str, Any]]) -> None:
    shows = {label: show for label, _, show in SUMMARY_ROWS}
    width = max(len(label) for label in shows)
    names = list(projects)
    columns = max(12, *(len(name) for name in names))
    print()
    print(f"Summary ({', '.join(names)}):")
    print(f"  {'':{width}} " + " ".join(f"{name:>{columns}}" for name in names))
    for label, values in summary(projects).items():
        cells = ["n/a" if values[name] is None else shows[label](values[name]) for name in names]
        print(f"  {label:{width}} " + " ".join(f"{cell:>{columns}}" for cell in cells))


def bench_project(kind: str, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every case of one project, measured in turn; its report printed; its results returned."""
    runs, cold_runs = args.runs, max(1, args.runs // 2)
    print(f"\n=== {kind} ===\nWork dir: {base}", flush=True)
    remove(base / "fresh")  # left by an interrupted run: gone before the lock, not just before a case
    print(f"Writing and locking the {kind} project ...", flush=True)
    ws, lock_seconds = set_up(base, args.runtime, args.arch, kind)
    print(f"  locked in {lock_seconds:.1f} s; warming Poetry's cache (unmeasured run) ...", flush=True)
    facts = prime_ours(ws)

    cases: dict[str, Case] = {}
    skipped: list[str] = []
    # The fresh-outputs cases first: nothing has been deleted in this work dir before them.
    print("ours warm, fresh outputs: plain, --compile, three bundles and the uv pipeline, round by"
          " round (plus one unmeasured run of each) ...", flush=True)
    compile_ = prime_compile(ws)
    build_env = use_project_python(ws)
    print(f"  pipelines' project env: {build_env}", flush=True)
    uv = set_up_uv(ws, facts)
    warm_up = Pipeline(fresh_root(ws) / "uv-warm-up")
    warm_up.root.mkdir(parents=True)
    uv_pipeline(ws, warm_up, uv[1], uv[2], ws.base / "uv-cache")  # fills uv's cache
    waited = quiet_file_system(fresh_root(ws) / "fs-probes")
    print(f"  (waited {waited:.0f} s for the file system to be quiet)", flush=True)
    cases.update(cases_fresh_interleaved(ws, compile_, runs, uv))
    print("peak RSS of a warm --compile run ...", flush=True)
    rss_compile = peak_rss_compile(ws, compile_)
    print("ours warm ...", flush=True)
    cases["ours_warm"] = case_ours_warm(ws, facts, runs)
    print("peak RSS, ZIP size, offline run ...", flush=True)
    remove(facts.zip, facts.target_dir)
    rss = peak_rss(ws)
    sizes = zip_ratio(facts, base)
    offline = offline_run(ws, facts)
    print("ours re-bundle ...", flush=True)
    cases["ours_rebundle"] = case_ours_rebundle(ws, facts, runs)
    print("ours three bundles ...", flush=True)
    cases["ours_three_bundles"] = case_ours_three_bundles(ws, runs)
    print("ours cold --compile ...", flush=True)
    cases["ours_compile_cold"] = case_ours_compile_cold(ws, compile_, cold_runs)
    if args.skip_cold:
        skipped.append("ours cold")
    else:
        print("ours cold ...", flush=True)
        cases["ours_cold"] = case_ours_cold(ws, facts, cold_runs)
    print("uv pipeline warm (plus one unmeasured run) ...", flush=True)
    cases["uv_warm"] = case_uv_warm(ws, facts, runs)
    if args.skip_cold:
        skipped.append("uv pipeline cold")
    else:
        print("uv pipeline cold ...", flush=True)
        cases["uv_cold"] = case_uv_cold(ws, facts, cold_runs)
    if args.skip_pip:
        skipped.append("pip pipeline warm")
    else:
        print("pip pipeline warm (plus one unmeasured run) ...", flush=True)
        cases["pip_warm"] = case_pip_warm(ws, facts, runs)

    results: dict[str, Any] = {
        "project": PROJECTS[kind][0],
        "runtime": ws.runtime,
        "arch": ws.arch,
        "runs": runs,
        "cold_runs": cold_runs,
        "skipped": skipped,
        "machine": machine_info(ws),
        "lock_seconds": round(lock_seconds, 3),
        "pipelines_project_env": build_env,
        "compile_interpreter": compile_.interpreter,
        "cases": {key: case.to_json() for key, case in cases.items()},
        "ratios": {
            "ours warm / uv warm": ratio(cases["ours_warm"], cases["uv_warm"]),
            "ours re-bundle / uv warm": ratio(cases["ours_rebundle"], cases["uv_warm"]),
            "ours warm / uv warm, both fresh outputs (per round)":
                per_round_ratio(cases["ours_fresh_outputs"], cases["uv_warm_fresh_outputs"]),
            "ours warm, fresh outputs / uv warm": ratio(cases["ours_fresh_outputs"], cases["uv_warm"]),
            "warm --compile / warm plain (fresh outputs, per round)":
                per_round_ratio(cases["ours_compile_fresh_outputs"], cases["ours_fresh_outputs"]),
            "three bundles / one bundle (fresh outputs, per round)":
                per_round_ratio(cases["ours_three_bundles_fresh"], cases["ours_fresh_outputs"]),
            "ours three bundles / ours warm": ratio(cases["ours_three_bundles"], cases["ours_warm"]),
            "ours cold / uv cold": ratio(cases.get("ours_cold"), cases.get("uv_cold")),
            "ours warm / pip warm": ratio(cases["ours_warm"], cases.get("pip_warm")),
        },
        "bundle": {**asdict(facts), "zip": str(facts.zip), "target_dir": str(facts.target_dir)},
        "zip_ratio": sizes,
        "peak_rss": rss,
        "peak_rss_compile": rss_compile,
        "compile_bytes": compile_bytes_equal(cases["ours_compile_fresh_outputs"], cases["ours_compile_cold"]),
        "offline": offline,
        "zip_tool": "zip -r -6 -q" if zip_command() else "python zipfile, compresslevel 6 (no `zip` on PATH;"
                    " `apt-get install -y zip` for Info-ZIP)",
    }
    print_report(results, cases)
    return results


def project_list(values: Sequence[str]) -> list[str]:
    """`--project` values (space- or comma-separated, `all` for every project) in PROJECTS order."""
    chosen = {name for value in values for name in value.split(",") if name}
    unknown = chosen - {*PROJECTS, "all"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown project(s): {', '.join(sorted(unknown))}")
    return [name for name in PROJECTS if "all" in chosen or name in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per case (cold: max(1, N//2))")
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--project", nargs="+", default=["all"], metavar="PROJECT",
                        help="data-heavy (few large native packages), wide (~75 packages, many small files)"
                             " or all (the default: both, in turn); several may be given")
    parser.add_argument("--arch", default="x86_64", choices=sorted(ARCH_MACHINES))
    parser.add_argument("--workdir", type=Path,
                        help="work dir (kept), one DIR/<project> per project; default: a temp dir, removed at the end")
    parser.add_argument("--json", type=Path, help="write all results as JSON here")
    parser.add_argument("--skip-pip", action="store_true", help="leave out the pip pipeline")
    parser.add_argument("--skip-cold", action="store_true",
                        help="leave out ours cold and uv cold (the downloads); cold --compile still runs")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        kinds = project_list(args.project)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))

    compile_plugin_bytecode()  # as installed: measured as users run it
    temp: Path | None = None
    if args.workdir is not None:
        root = args.workdir.resolve()
    else:
        root = temp = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    projects: dict[str, dict[str, Any]] = {}
    try:
        for kind in kinds:
            projects[kind] = bench_project(kind, root / kind, args)
        print_summary(projects)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            document = {"runs": args.runs, "projects": projects, "summary": summary(projects)}
            args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            print(f"\nJSON written to {args.json}")
        return 0
    except BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        # The fresh outputs (GBs) go only now, after every measured run of every project.
        for kind in kinds:
            remove(root / kind / "fresh")
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
