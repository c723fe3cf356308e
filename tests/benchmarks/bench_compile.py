"""Benchmark `--compile` with its bytecode cache: warm `--compile` vs warm plain, and a cold compile.

Hermetic (no network): a many-module project is made from real Python sources already on this
machine, i.e. the top-level packages of a CPython 3.12 standard library (pyenv's) and of this
repository's venv, each packed as one wheel and served from a loopback index. Run it from the
repository root with the project's venv (it is a script, not a pytest test)::

    .venv/bin/python tests/benchmarks/bench_compile.py [--runs 5] [--workdir DIR]

Cases, each `--runs` runs of `python -m poetry lambda-bundle` interleaved, reported as the median
and the minimum wall time (the machine may be shared: the minimum is the least disturbed run)
and the median CPU time of the command and its children, with `os.sync()` before every run:

- plain warm: artifacts cached, no `--compile`, outputs removed before each run (a CI job);
- compile warm: the same with `--compile`, its bytecode cached;
- compile cold: artifacts cached, bytecode cache emptied before each run (every module compiled);
- plain / compile re-bundle: outputs of the previous run kept and one project module edited
  between runs (a developer's loop: one module compiled, the target dir updated in place).

Also: the peak RSS of a warm `--compile` run and whether cold and warm `--compile` ZIPs are
byte-identical.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.index import LoopbackIndex  # noqa: E402
from tests.fixtures.interpreters import find_python  # noqa: E402
from tests.fixtures.projects import compile_plugin_bytecode  # noqa: E402
from tests.fixtures.projects import poetry_env  # noqa: E402
from tests.fixtures.projects import poetry_lock  # noqa: E402
from tests.fixtures.projects import write_project  # noqa: E402
from tests.fixtures.wheelfactory import build_wheel  # noqa: E402

_SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "__pycache__"}


def _packages(root: Path) -> dict[str, dict[str, bytes]]:
    """Each top-level package folder under `root`: {name: {path in wheel: bytes}}."""
    found: dict[str, dict[str, bytes]] = {}
    for folder in sorted(root.iterdir()):
        if folder.name in _SKIP or not (folder / "__init__.py").is_file() or not folder.name.isidentifier():
            continue
        files = {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and "__pycache__" not in rel and path.suffix not in {".so", ".pyc", ".exe", ".dll"}:
                files[rel] = path.read_bytes()
        found[folder.name] = files
    return found


def make_world(work: Path, python: Path) -> tuple[Path, list[str]]:
    """Wheels of real sources in work/index; returns (index root, distribution names)."""
    stdlib = Path(subprocess.run([str(python), "-I", "-c", "import os; print(os.path.dirname(os.__file__))"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    venv = Path(sysconfig.get_paths()["purelib"])
    packages = {**_packages(venv), **_packages(stdlib)}
    index = work / "index"
    index.mkdir(parents=True, exist_ok=True)
    names = []
    for name, files in sorted(packages.items()):
        dist = "bench-" + name.strip("_").replace("_", "-")
        build_wheel(index, dist, "1.0", files=files)
        names.append(dist)
    return index, names


def bundle_args(work: Path, compile_: bool) -> list[str]:
    args = ["lambda-bundle", "--no-ansi", "--runtime", "python3.12", "-o", str(work / "out.zip"),
            "--target-dir", str(work / "target")]
    return [*args, "--compile"] if compile_ else args


def run(project: Path, cache: Path, args: list[str]) -> tuple[float, float]:
    """(wall, CPU of the command and its children) of one run."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "poetry", *args], cwd=project, env=poetry_env(cache),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"lambda-bundle failed:\n{output.decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


def peak_rss_kib(project: Path, cache: Path, args: list[str]) -> int:
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
            " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "poetry", *args], cwd=project,
                         env=poetry_env(cache), capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    options = parser.parse_args()
    compile_plugin_bytecode()  # as installed: measured as users run it
    python = find_python("3.12")
    if python is None:
        raise SystemExit("needs a python3.12 (PATH or pyenv)")
    work = options.workdir or Path(tempfile.mkdtemp(prefix="bench-compile-"))
    index_root, names = make_world(work, python)
    cache = work / "cache"
    cache.mkdir(exist_ok=True)
    bytecode_cache = cache / "lambda-bundle" / "bytecode"
    with LoopbackIndex(index_root) as index:
        project = write_project(work / "svc", "svc", dependencies={n: "1.0" for n in names},
                                index_url=index.url, requires_python=">=3.12,<3.13")
        poetry_lock(project, cache)

        handler = project / "svc" / "handler.py"
        edits = iter(range(1_000_000))

        def clean(cold_bytecode: bool = False, keep_outputs: bool = False) -> None:
            if keep_outputs:
                handler.write_text(handler.read_text() + f"EDIT_{next(edits)} = 1\n")
            else:
                shutil.rmtree(work / "target", ignore_errors=True)
                (work / "out.zip").unlink(missing_ok=True)
            if cold_bytecode:
                shutil.rmtree(bytecode_cache, ignore_errors=True)
            os.sync()

        clean(cold_bytecode=True)
        run(project, cache, bundle_args(work, True))  # fills the artifact and bytecode caches
        clean()
        run(project, cache, bundle_args(work, False))
        times: dict[str, list[tuple[float, float]]] = {
            "plain warm": [], "compile warm": [], "compile cold": [], "plain re-bundle": [], "compile re-bundle": []}
        for _ in range(options.runs):
            for case, values in times.items():
                args = bundle_args(work, case.startswith("compile"))
                if "re-bundle" in case:
                    run(project, cache, args)  # untimed: the outputs of this same mode are in place
                clean(cold_bytecode=case == "compile cold", keep_outputs="re-bundle" in case)
                values.append(run(project, cache, args))
        clean(cold_bytecode=True)
        run(project, cache, bundle_args(work, True))
        shutil.copy(work / "out.zip", work / "cold.zip")
        clean()
        run(project, cache, bundle_args(work, True))
        identical = (work / "out.zip").read_bytes() == (work / "cold.zip").read_bytes()
        clean()
        rss = peak_rss_kib(project, cache, bundle_args(work, True))
        clean(cold_bytecode=True)
        rss_cold = peak_rss_kib(project, cache, bundle_args(work, True))
        with __import__("zipfile").ZipFile(work / "cold.zip") as zf:
            names_in_zip = zf.namelist()
    medians = {case: statistics.median(wall for wall, _ in values) for case, values in times.items()}
    minima = {case: min(wall for wall, _ in values) for case, values in times.items()}
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPUs,"
          f" {platform.platform()}, load {os.getloadavg()[0]:.1f}; python3.12: {python}")
    print(f"project: {len(names)} packages, {len(names_in_zip):,} files with --compile,"
          f" {sum(n.endswith('.pyc') for n in names_in_zip):,} .pyc")
    for case, values in times.items():
        cpu = statistics.median(c for _, c in values)
        print(f"  {case:17s} median {medians[case]:6.2f} s  min {minima[case]:6.2f} s  CPU {cpu:6.2f} s"
              f"   runs: {', '.join(f'{w:.2f}' for w, _ in values)}")
    print(f"  compile warm / plain warm: {medians['compile warm'] / medians['plain warm']:.2f}x (medians),"
          f" {minima['compile warm'] / minima['plain warm']:.2f}x (minima)")
    print(f"  compile re-bundle / plain re-bundle: {medians['compile re-bundle'] / medians['plain re-bundle']:.2f}x")
    print(f"  peak RSS of --compile: warm {rss / 1024:.0f} MiB, cold {rss_cold / 1024:.0f} MiB"
          f" (the largest process: Poetry's or a compiler's)")
    print(f"  cold and warm --compile ZIPs identical: {identical}")


if __name__ == "__main__":
    main()
