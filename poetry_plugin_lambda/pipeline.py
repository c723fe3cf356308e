"""spec -> plan -> fetch -> assemble -> emit: the whole bundle in one readable function."""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.assemble import file_filter
from poetry_plugin_lambda.assemble import merge
from poetry_plugin_lambda.assemble import unzipped_size
from poetry_plugin_lambda.emit import check_outputs
from poetry_plugin_lambda.emit import source_epoch
from poetry_plugin_lambda.emit import write_target_dir
from poetry_plugin_lambda.emit import pending_zip
from poetry_plugin_lambda.fetch import Fetcher
from poetry_plugin_lambda.includes import project_files
from poetry_plugin_lambda.plan import check_lock
from poetry_plugin_lambda.plan import make_plan
from poetry_plugin_lambda.report import BundleReport
from poetry_plugin_lambda.report import check_unzipped_size
from poetry_plugin_lambda.report import largest_packages
from poetry_plugin_lambda.report import size_warnings
from poetry_plugin_lambda.targets import marker_environment
from poetry_plugin_lambda.targets import supported_tags
from poetry_plugin_lambda.wheels import read_wheel

if TYPE_CHECKING:
    from cleo.io.io import IO
    from poetry.poetry import Poetry

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.fetch import Progress
    from poetry_plugin_lambda.spec import BundleSpec


def bundle(poetry: Poetry, spec: BundleSpec, io: IO, progress: Progress) -> BundleReport:
    """Build the bundle `spec` describes and return what was written."""
    target = spec.target
    check_outputs(spec.output, spec.target_dir, spec.project.root)
    check_lock(poetry)
    compiler = _interpreter(poetry, spec, "--compile") if spec.compile else None
    env = compat.target_env(
        marker_environment(target), list(supported_tags(target)), target.runtime.python
    )

    progress.line(f"Bundling for <c1>{target.describe()}</> from the lock file")
    plan = make_plan(poetry, spec, env)
    warnings = [*spec.warnings, *plan.warnings]
    with tempfile.TemporaryDirectory(prefix="lambda-bundle-") as tmp:
        scratch = Path(tmp)
        artifacts = Fetcher(poetry, env, target, io, progress, scratch).fetch_all(plan)
        wheels = [a.wheel for a in artifacts]
        if spec.builds_project:
            progress.line(f"  - Building <c1>{spec.project.name} ({spec.project.version})</>")
            wheels.append(compat.build_project_wheel(poetry, scratch))

        progress.line("  - Assembling")
        prefix = "python/" if spec.layout == "layer" else ""
        drop = file_filter(spec.exclude_files, prefix)
        entries = assemble((read_wheel(w, drop) for w in wheels), prefix, _includes(spec))
        compiled = None
        if compiler is not None:
            progress.line(f"  - Compiling bytecode with <c1>{compiler}</>")
            compiled = _compile(poetry, entries, compiler, scratch, spec)
            progress.line(f"    {compiled.fresh:,} compiled now, {compiled.cached:,} from the bytecode cache")
            entries = merge(entries, compiled.entries)
            warnings += _summarise(compiled.warnings)
        check_unzipped_size(entries, spec.max_unzipped_size)

        progress.line(f"  - Writing <c1>{spec.output}</>")
        progress.line(f"  - Writing <c1>{spec.target_dir}</>")
        unpacked = {a.wheel: a.unpacked for a in artifacts if a.unpacked is not None}
        # Both are bound by the file system, not the CPU: write them side by side. The ZIP is
        # renamed into place only once the target dir is complete.
        with ThreadPoolExecutor(max_workers=1) as background:
            target_dir = background.submit(write_target_dir, entries, spec.target_dir, unpacked)
            try:
                with pending_zip(entries, spec.output, source_epoch(os.environ)) as result:
                    target_dir.result()
            finally:
                target_dir.cancel()

    handler_check = None
    if spec.handler is not None:
        progress.line(f"  - Checking the handler <c1>{spec.handler}</>")
        handler_check = _check_handler(poetry, spec)

    packages = [(a.name, a.version) for a in artifacts]
    if spec.builds_project:
        packages.append((spec.project.name, spec.project.version))
    return BundleReport(
        zip=result.path,
        target_dir=spec.target_dir,
        sha256=result.sha256,
        size=result.size,
        unzipped_size=unzipped_size(entries),
        files=len(entries),
        runtime=target.runtime.name,
        architecture=target.architecture,
        layout=spec.layout,
        packages=tuple(sorted(packages)),
        largest=largest_packages(entries),
        warnings=tuple([*warnings, *size_warnings(result.size)]),
        compiled_modules=len(compiled.entries) if compiled else None,
        bytecode_size=compiled.size if compiled else None,
        handler_check=handler_check,
    )


def _includes(spec: BundleSpec) -> list[Entry]:
    """Project files named by `include`; they belong to code, so never to a layer."""
    if not spec.include or not spec.includes_project:
        return []
    outputs = [spec.target_dir, spec.output.parent]
    return project_files(spec.project.root, spec.include, spec.project.name, outputs)


def _interpreter(poetry: Poetry, spec: BundleSpec, why: str) -> Path:
    from poetry_plugin_lambda.interpreters import require_interpreter

    version = spec.target.runtime.python_version
    return require_interpreter(version, spec.compile_with, why, lambda: compat.project_python(poetry))


def _compile(poetry: Poetry, entries: list[Entry], python: Path, scratch: Path, spec: BundleSpec):  # type: ignore[no-untyped-def]
    from poetry_plugin_lambda.bytecode import compile_bytecode

    workers = os.cpu_count() or 1
    cache_dir = compat.cache_dir(poetry.config) / "lambda-bundle" / "bytecode"
    return compile_bytecode(
        entries, python, scratch, layer=spec.layout == "layer", workers=workers, cache_dir=cache_dir
    )


def _summarise(skipped: tuple[str, ...], shown: int = 3) -> list[str]:
    if len(skipped) <= shown:
        return list(skipped)
    return [*skipped[:shown], f"... and {len(skipped) - shown} more modules skipped by the compiler."]


def _check_handler(poetry: Poetry, spec: BundleSpec):  # type: ignore[no-untyped-def]
    from poetry_plugin_lambda.handler_check import HandlerCheck
    from poetry_plugin_lambda.handler_check import host_architecture
    from poetry_plugin_lambda.handler_check import run_check
    from poetry_plugin_lambda.interpreters import find_interpreter

    assert spec.handler is not None
    if spec.layout != "bundle":
        return HandlerCheck("skipped", f"the {spec.layout} layout holds no complete function to import.")
    host = host_architecture()
    if host != spec.target.architecture:
        return HandlerCheck(
            "skipped",
            f"the bundle is for {spec.target.architecture} and this machine is {host or 'another architecture'}:"
            " its binaries cannot run here.",
        )
    version = spec.target.runtime.python_version
    python = spec.compile_with or find_interpreter(version, lambda: compat.project_python(poetry))
    if python is None:
        return HandlerCheck("skipped", f"no python{version} found (PATH, pyenv, uv) to import it with.")
    return run_check(python, spec.target_dir, spec.handler)
