"""Cold-start benchmark for `--compile`: the data-heavy project bundled for python3.12 x86_64
with and without bytecode; prints ZIP sizes, bundle times and the median time to import its
handler from the unzipped bundle with `python3.12 -I -B` (what Lambda's init phase pays).

    .venv/bin/python tests/benchmarks/bench_cold_start.py [--runs 7] [--workdir DIR]

Needs the public index (its URL is read from pip) and a CPython 3.12 on this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fixtures.dataheavy import DATA_HEAVY_MODULE
from tests.fixtures.dataheavy import public_simple_url
from tests.fixtures.dataheavy import write_data_heavy_project
from tests.fixtures.interpreters import find_python
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import run_poetry


def bundle(project: Path, cache: Path, out: Path, *extra: str) -> tuple[dict, float]:
    start = time.perf_counter()
    result = run_poetry(project, cache, "lambda-bundle", "--runtime", "python3.12", "--format", "json",
                        "-o", str(out), "--target-dir", str(out.with_suffix("")), *extra, timeout=1800)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout), elapsed


def import_seconds(python: Path, root: Path) -> float:
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter();"
            f" import {DATA_HEAVY_MODULE}; print(time.perf_counter() - t)")
    out = subprocess.run([str(python), "-I", "-B", "-c", code, str(root)], capture_output=True, text=True,
                         check=True, cwd=root)
    return float(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    python = find_python("3.12")
    if python is None:
        raise SystemExit("needs a CPython 3.12 (python3.12 on PATH or in pyenv)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cold-"))
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    project = write_data_heavy_project(work / "project", public_simple_url())
    poetry_lock(project, cache)
    bundle(project, cache, work / "warmup.zip")  # fill the cache: bundle times below are warm
    reports = {}
    for label, extra in (("plain", ()), ("compiled", ("--compile",))):
        report, seconds = bundle(project, cache, work / f"{label}.zip", *extra)
        root = work / f"unzipped-{label}"
        shutil.rmtree(root, ignore_errors=True)
        with zipfile.ZipFile(report["zip"]) as zf:
            zf.extractall(root)
        reports[label] = (report, seconds, root)
    times: dict[str, list[float]] = {"plain": [], "compiled": []}
    for _ in range(args.runs):
        for label, measured in times.items():
            measured.append(import_seconds(python, reports[label][2]))
    print(f"data-heavy project, python3.12 x86_64, {python}, medians of {args.runs} runs")
    print(f"{'':28} {'without --compile':>18} {'with --compile':>16}")
    plain, compiled = reports["plain"], reports["compiled"]
    print(f"{'ZIP size (MB)':28} {plain[0]['size'] / 1e6:18.1f} {compiled[0]['size'] / 1e6:16.1f}")
    print(f"{'unzipped size (MB)':28} {plain[0]['unzipped_size'] / 1e6:18.1f} {compiled[0]['unzipped_size'] / 1e6:16.1f}")
    print(f"{'files':28} {plain[0]['files']:18} {compiled[0]['files']:16}")
    print(f"{'modules compiled':28} {'-':>18} {compiled[0]['compiled_modules']:16}")
    print(f"{'bundle time, warm (s)':28} {plain[1]:18.2f} {compiled[1]:16.2f}")
    p, c = statistics.median(times["plain"]), statistics.median(times["compiled"])
    print(f"{'import handler, -I -B (s)':28} {p:18.3f} {c:16.3f}")
    print(f"speed-up of the import: {p / c:.1f}x")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
