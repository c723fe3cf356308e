"""Where a warm `poetry lambda-bundle` run spends its time: a breakdown by stage.

Runs the real command in a child interpreter (`python -m poetry`, as a user does) several times,
each with fresh output paths (the CI case: warm cache, no outputs, nothing deleted before), and
times its stages from the inside by wrapping the pipeline's stage functions. Prints the medians:

    .venv/bin/python tests/benchmarks/profile_bundle.py --project DIR --cache-dir DIR [--runs 5]

`--small WORKDIR` profiles the small project (`tests/fixtures/small.py`: requests and attrs),
written, locked against the public index and warmed in WORKDIR first. Otherwise
`--project` is a locked project whose artifacts are already in Poetry's cache at `--cache-dir`
(for example a work dir of `bench_bundle.py`: `<workdir>/data-heavy/project` and
`<workdir>/data-heavy/poetry-cache`). Also timed: `poetry --version` (Python and Poetry starting,
with its plugins loaded) as the floor every Poetry command pays.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fixtures.projects import compile_plugin_bytecode
from tests.fixtures.projects import poetry_env

# Runs inside the child: wraps the stage functions, then runs Poetry's console as `-m poetry` does.
CHILD = r"""
import functools, json, sys, time
started = time.time()
import poetry_plugin_lambda.command
import poetry_plugin_lambda.pipeline as pipeline
import poetry_plugin_lambda.emit as emit
import poetry_plugin_lambda.fetch as fetch
plugin_imported = time.time()
spans = {}
def wrap(owner, name, label):
    original = getattr(owner, name)
    @functools.wraps(original)
    def timed(*args, **kwargs):
        begin = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spans.setdefault(label, []).append((begin, time.time()))
    setattr(owner, name, timed)
wrap(poetry_plugin_lambda.command.LambdaBundleCommand, "handle", "command")
wrap(pipeline.compat, "read_lock", "lock read")
wrap(pipeline, "make_plan", "plan")
wrap(fetch.Fetcher, "fetch_all", "fetch")
wrap(pipeline.SharedWork, "_build_project", "project build")
wrap(pipeline, "assemble", "assemble")
wrap(pipeline, "_compile", "compile")
wrap(pipeline, "write_outputs", "outputs")
wrap(emit._Share, "start", "helper started")
wrap(emit._Bundle, "stage", "outputs staged")
wrap(emit._Share, "folders_made", "helper's folders waited for")
wrap(emit, "_fill", "one pass")
wrap(emit._Bundle, "complete_zip", "outputs completed")
wrap(emit._Share, "collect", "helper waited for")
wrap(emit._Bundle, "complete_dir", "outputs completed")
wrap(emit._Bundle, "commit", "outputs committed")
from poetry.console.application import main
sys.argv = ["poetry", *sys.argv[1:]]
try:
    code = main()
finally:
    ended = time.time()
    print("PROFILE " + json.dumps({"started": started, "plugin_imported": plugin_imported,
                                   "ended": ended, "spans": spans}), file=sys.stderr)
sys.exit(code)
"""


def run_child(project: Path, env: dict[str, str], args: list[str]) -> dict[str, float]:
    launched = time.time()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    finished = time.time()
    if result.returncode != 0:
        raise SystemExit(f"the bundle failed:\n{result.stdout}\n{result.stderr}")
    line = next(text for text in result.stderr.splitlines() if text.startswith("PROFILE "))
    data = json.loads(line.removeprefix("PROFILE "))
    spans: dict[str, list[list[float]]] = data["spans"]

    def total(label: str) -> float:
        return sum(end - begin for begin, end in spans.get(label, []))

    command_begin = spans["command"][0][0]
    plan_begin = spans["lock read"][0][0] if "lock read" in spans else spans["plan"][0][0]
    outputs_end = spans["outputs"][-1][1]
    return {
        "total (launch to exit)": finished - launched,
        "Python start-up": data["started"] - launched,
        "plugin import (with the Poetry modules it needs)": data["plugin_imported"] - data["started"],
        "Poetry start-up: its application, config, plugins": command_begin - data["plugin_imported"],
        "Poetry project loaded, settings read, outputs checked": plan_begin - command_begin,
        "poetry.lock parsed (Poetry's parser; its first marker builds the grammar)": total("lock read"),
        "marker walk for the target (plan)": total("plan"),
        "archive lookup, hash checks, wheels' directories read (fetch)": total("fetch"),
        "project build": total("project build"),
        "assemble (filters applied, RECORDs written, entries mapped)": total("assemble"),
        "--compile: bytecode found (memos checked) or compiled": total("compile"),
        "outputs (ZIP and target dir in one pass, then committed)": total("outputs"),
        "  the helper started: its share chosen, the target dirs staged": total("helper started"),
        "  staged: entries as archive members, the ZIP laid out (folders made, without the helper)": total("outputs staged"),
        "  the helper's folders waited for": total("helper's folders waited for"),
        "  one pass over the archives: members copied and inflated": total("one pass"),
        "  completed: central directory, fsync, SHA-256; marker": total("outputs completed"),
        "  the helper's files waited for (and the ones it left written)": total("helper waited for"),
        "  committed: target dir swapped in, ZIP renamed": total("outputs committed"),
        "after the outputs (report, exit)": finished - outputs_end,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a locked project whose artifacts are in --cache-dir")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--small", type=Path, metavar="WORKDIR",
                        help="instead of --project: write the small project (requests and attrs) into"
                             " WORKDIR, lock it against the public index and fill its cache first")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--compile", action="store_true", help="profile `--compile` runs (bytecode cache warm)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--out", type=Path, help="keep the outputs under this new folder (default: a temp"
                        " dir, removed at the end; deleting thousands of files slows the file system's next"
                        " creations for a while, so comparisons in a row should keep them)")
    args = parser.parse_args(argv)
    if args.small is not None:
        args.project, args.cache_dir = prepare_small(args.small.resolve(), args.runtime, args.arch)
    elif args.project is None or args.cache_dir is None:
        parser.error("give --project and --cache-dir, or --small")
    env = poetry_env(args.cache_dir)
    compile_plugin_bytecode()  # as installed: measured as users run it
    out = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="profile-bundle-"))
    try:
        version = [run_version(args.project, env) for _ in range(args.runs)]
        runs = []
        for i in range(args.runs):
            os.sync()  # the previous run's writes flushed, as bench_bundle.py does: none leaks into this one
            runs.append(run_child(args.project, env, [
                "lambda-bundle", "--no-ansi", "-q", "--runtime", args.runtime, "--arch", args.arch,
                "--output", str(out / str(i) / "bundle.zip"), "--target-dir", str(out / str(i) / "target"),
                *(["--compile"] if args.compile else []),
            ]))
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    medians["`poetry --version` (for comparison)"] = statistics.median(version)
    kind = "--compile runs" if args.compile else "runs"
    print(f"Medians of {args.runs} warm {kind} with fresh outputs ({args.project.name}):")
    for key, value in medians.items():
        print(f"  {key:<62} {value:6.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=2) + "\n", encoding="utf-8")
    return 0


def prepare_small(workdir: Path, runtime: str, arch: str) -> tuple[Path, Path]:
    """The small project locked in `workdir`, its cache filled by one unmeasured run (reused when
    `workdir` already holds them)."""
    from tests.fixtures.dataheavy import public_simple_url
    from tests.fixtures.projects import run_poetry
    from tests.fixtures.small import write_small_project

    project, cache = workdir / "project", workdir / "poetry-cache"
    if not (project / "poetry.lock").is_file():
        write_small_project(project, public_simple_url())
        cache.mkdir(parents=True, exist_ok=True)
        for step in (["lock"], ["lambda-bundle", "--runtime", runtime, "--arch", arch]):
            result = run_poetry(project, cache, *step, "--no-ansi")
            if result.returncode != 0:
                raise SystemExit(f"poetry {step[0]} failed:\n{result.stdout}\n{result.stderr}")
    return project, cache


def run_version(project: Path, env: dict[str, str]) -> float:
    begin = time.time()
    subprocess.run([sys.executable, "-m", "poetry", "--version"], cwd=project, env=env,
                   capture_output=True, check=True)
    return time.time() - begin


if __name__ == "__main__":
    sys.exit(main())
