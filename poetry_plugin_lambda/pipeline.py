"""spec -> plan -> fetch -> assemble -> emit: a run's bundles, sharing the work they share.

`bundle` builds one bundle; `bundle_all` builds a project's named bundles, planning, fetching
and building the project once for all of them, then assembling and writing them side by side.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.archive_index import ArchiveIndex
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.assemble import file_filter
from poetry_plugin_lambda.assemble import merge
from poetry_plugin_lambda.assemble import unzipped_size
from poetry_plugin_lambda.atomic import scratch_folder
from poetry_plugin_lambda.emit import OutputJob
from poetry_plugin_lambda.emit import check_outputs
from poetry_plugin_lambda.emit import write_all_outputs
from poetry_plugin_lambda.emit import write_outputs
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import Interrupted
from poetry_plugin_lambda.fetch import Fetcher
from poetry_plugin_lambda.includes import Outputs
from poetry_plugin_lambda.includes import project_files
from poetry_plugin_lambda.plan import check_lock
from poetry_plugin_lambda.plan import make_plan
from poetry_plugin_lambda.plan import read_lock
from poetry_plugin_lambda.report import BundleReport
from poetry_plugin_lambda.report import check_unzipped_size
from poetry_plugin_lambda.report import largest_packages
from poetry_plugin_lambda.report import size_warnings
from poetry_plugin_lambda.targets import marker_environment
from poetry_plugin_lambda.targets import supported_tags
from poetry_plugin_lambda.unpacked import unpack
from poetry_plugin_lambda.wheels import check_built_wheel
from poetry_plugin_lambda.wheels import contents_of
from poetry_plugin_lambda.wheels import parse_wheel

if TYPE_CHECKING:
    from collections.abc import Iterator
    from collections.abc import Mapping
    from collections.abc import Sequence

    from cleo.io.io import IO
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.bytecode import Compiled
    from poetry_plugin_lambda.emit import ZipResult
    from poetry_plugin_lambda.fetch import Artifact
    from poetry_plugin_lambda.fetch import Progress
    from poetry_plugin_lambda.handler_check import HandlerChecker
    from poetry_plugin_lambda.plan import Plan
    from poetry_plugin_lambda.slim import Slimmed
    from poetry_plugin_lambda.spec import BundleSpec
    from poetry_plugin_lambda.targets import Target
    from poetry_plugin_lambda.unpacked import Unpacked
    from poetry_plugin_lambda.wheels import ParsedWheel


@dataclass(frozen=True)
class BundleFailure:
    """A named bundle that could not be built; the others of the run went on."""

    name: str
    message: str
    exit_code: int = 1


def bundle(poetry: Poetry, spec: BundleSpec, io: IO, progress: Progress) -> BundleReport:
    """Build the bundle `spec` describes and return what was written (errors raise)."""
    packaged = compat.packaged_folders(poetry) if spec.builds_project else set()
    check_outputs(spec.output, spec.target_dir, spec.project.root, _cache_dir(poetry), packaged)
    check_lock(poetry)
    with scratch_folder("lambda-bundle") as scratch:
        shared = SharedWork(poetry, io, progress, scratch.path, [spec])
        prepared = shared.prepare(spec)
        assembled = _assemble(prepared, shared, progress)
        _announce(spec, progress)
        result = write_outputs(assembled.entries, spec.output, spec.target_dir, spec.epoch, shared.unpacked)
        with _written():
            return _checked(prepared, _report(prepared, assembled, result), shared, io, progress)


def bundle_all(poetry: Poetry, specs: Sequence[BundleSpec], io: IO, progress: Progress) -> list[BundleReport | BundleFailure]:
    """Build several named bundles, sharing what they share; one failing leaves the others be.

    Plans, fetches and the project's wheel are prepared one bundle after the other (each is
    parallel inside and shared through `SharedWork`); the bundles are then assembled side by
    side and their outputs written together (a file that several bundles hold is inflated once),
    and their handlers checked last (a code bundle may be checked with a layer bundle of the
    same run).
    """
    check_lock(poetry)
    outcomes: dict[str, BundleReport | BundleFailure] = {}
    with scratch_folder("lambda-bundle") as scratch:
        shared = SharedWork(poetry, io, progress, scratch.path, specs)
        ready: list[_Prepared] = []
        cache_dir = _cache_dir(poetry)
        packaged = compat.packaged_folders(poetry) if any(s.builds_project for s in specs) else set()
        for spec in specs:
            try:
                check_outputs(spec.output, spec.target_dir, spec.project.root, cache_dir, packaged if spec.builds_project else ())
                ready.append(shared.prepare(spec))
            except BundleError as error:
                outcomes[str(spec.name)] = BundleFailure(str(spec.name), str(error), error.exit_code)
        workers = max(1, min(len(ready), os.cpu_count() or 1))
        assembled: list[tuple[_Prepared, _Assembled]] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(prepared, pool.submit(_assemble, prepared, shared, progress)) for prepared in ready]
            for prepared, future in futures:
                try:
                    assembled.append((prepared, future.result()))
                except BundleError as error:
                    name = str(prepared.spec.name)
                    outcomes[name] = BundleFailure(name, str(error), error.exit_code)
        for prepared, _ in assembled:
            _announce(prepared.spec, progress)
        jobs = [OutputJob(a.entries, p.spec.output, p.spec.target_dir, p.spec.epoch) for p, a in assembled]
        results = write_all_outputs(jobs, shared.unpacked)
        with _written():
            for (prepared, parts), result in zip(assembled, results):
                name = str(prepared.spec.name)
                if isinstance(result, BundleError):
                    outcomes[name] = BundleFailure(name, str(result), result.exit_code)
                elif isinstance(result, Exception):
                    raise result
                else:
                    outcomes[name] = _report(prepared, parts, result)
            failed = {s.output: str(s.name) for s in specs if isinstance(outcomes.get(str(s.name)), BundleFailure)}
            for prepared in ready:  # last: a code bundle may be checked with a layer bundle of this run
                done = outcomes.get(str(prepared.spec.name))
                if isinstance(done, BundleReport):
                    outcomes[str(prepared.spec.name)] = _checked(prepared, done, shared, io, progress, failed)
    return [outcomes[str(spec.name)] for spec in specs]


@dataclass(frozen=True)
class _Prepared:
    """A bundle's inputs, fetched and verified: ready to assemble."""

    spec: BundleSpec
    plan: Plan
    artifacts: tuple[Artifact, ...]
    wheels: tuple[Path, ...]
    warnings: tuple[str, ...]
    compiler: Path | None
    checker: HandlerChecker | None  # made early, so a bad --check-with fails before any work


class SharedWork:
    """What the bundles of one run share: the target envs, plans, fetched artifacts, the project's wheel.

    A plan is made once per (target, groups, extras, exclusions); a package is fetched and
    verified once per target; the project's wheel (pure Python) is built once; every wheel is
    read once, by the worker that verified it (while the others hash and download).
    """

    def __init__(self, poetry: Poetry, io: IO, progress: Progress, scratch: Path, specs: Sequence[BundleSpec]) -> None:
        self._poetry, self._io, self._progress, self.scratch = poetry, io, progress, scratch
        # every bundle's outputs, which no bundle's `include` picks up
        self.outputs = Outputs(tuple(s.output for s in specs), tuple(s.target_dir for s in specs))
        self._envs: dict[Target, Env] = {}
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._fetchers: dict[Target, Fetcher] = {}
        self._artifacts: dict[tuple[Target, str, str], Artifact] = {}
        self._project_wheel: Path | None = None
        self._parsed: dict[Path, ParsedWheel] = {}
        self.unpacked: dict[Path, Unpacked] = {}  # wheels' unpacked copies, which the outputs copy from
        self._lock: compat.LockedData | None = None  # poetry.lock parsed once for every plan
        own_cache = compat.cache_dir(poetry.config) / "lambda-bundle"
        self.bytecode_cache, self.slim_cache = own_cache / "bytecode", own_cache / "slim"
        self.grammars = own_cache / "grammars"  # poetry-core's PEP 508 parsers, built once
        self._known = ArchiveIndex(own_cache.parent)  # wheels parsed and found true to their RECORD

    def env(self, target: Target) -> Env:
        if target not in self._envs:
            self._envs[target] = compat.target_env(
                marker_environment(target), list(supported_tags(target)), target.runtime.python
            )
        return self._envs[target]

    def prepare(self, spec: BundleSpec) -> _Prepared:
        target = spec.target
        named = f" (bundle <c1>{spec.name}</>)" if spec.name else ""
        self._progress.line(f"Bundling for <c1>{target.describe()}</> from the lock file{named}")
        compiler = _compiler(self._poetry, spec, self.bytecode_cache) if spec.compile else None
        checker = _handler_checker(self._poetry, spec)
        key = (target, spec.groups, spec.extras, spec.exclude, spec.includes_dependencies)
        if key not in self._plans:
            if self._lock is None and spec.includes_dependencies:
                compat.prime_pep508_parsers(self.grammars)
                self._lock = read_lock(self._poetry)
            self._plans[key] = make_plan(self._poetry, spec, self.env(target), self._lock)
        plan = self._plans[key]
        artifacts = self._fetch(target, plan)
        wheels = [a.wheel for a in artifacts]
        if spec.builds_project:
            wheels.append(self._build_project(spec))
        warnings = (*spec.warnings, *plan.warnings)
        return _Prepared(spec, plan, tuple(artifacts), tuple(wheels), warnings, compiler, checker)

    def _fetch(self, target: Target, plan: Plan) -> list[Artifact]:
        fetcher = self._fetchers.get(target)
        if fetcher is None:
            fetcher = self._fetchers[target] = Fetcher(self._poetry, target, self._io, self._progress, self.scratch)
        key = {p.name: (target, p.name, p.version.text) for p in plan.packages}
        missing = tuple(p for p in plan.packages if key[p.name] not in self._artifacts)
        fetched = fetcher.fetch_all(replace(plan, packages=missing), then=self._read)
        for package, artifact in zip(missing, fetched):
            self._artifacts[key[package.name]] = artifact
        return [self._artifacts[key[p.name]] for p in plan.packages]

    def _build_project(self, spec: BundleSpec) -> Path:
        if self._project_wheel is None:
            self._progress.line(f"  - Building <c1>{spec.project.name} ({spec.project.version})</>")
            wheel = compat.build_project_wheel(self._poetry, self.scratch)
            check_built_wheel(wheel)
            self.parsed(wheel)
            self._project_wheel = wheel
        return self._project_wheel

    def _read(self, artifact: Artifact) -> None:
        """A fetched wheel read, and (once per wheel file) held to its RECORD while its unpacked
        copy is made: what that found is kept by the wheel's sha256, so later runs read it from
        there and copy the wheel's files from its copy (if it has one: a copy the cache could
        not hold only costs speed). A wheel built here (no sha256) was made by its build backend
        in this run, and is parsed each time."""
        wheel, digest = artifact.wheel, artifact.sha256
        if not digest or wheel in self._parsed:
            self.parsed(wheel)
            return
        parsed = self._known.parsed(digest, wheel)
        if parsed is None:
            parsed = parse_wheel(wheel)
            with self._known.unpacking(digest, parsed) as writer:
                parsed = unpack(parsed, writer)
            self._known.keep_parsed(digest, parsed)
        self._parsed[wheel] = parsed
        copy = self._known.unpacked(digest, parsed)
        if copy is not None:
            self.unpacked[wheel] = copy

    def parsed(self, wheel: Path) -> ParsedWheel:
        """`wheel` validated and its members mapped, read once for every bundle of the run."""
        parsed = self._parsed.get(wheel)
        if parsed is None:
            parsed = self._parsed[wheel] = parse_wheel(wheel)
        return parsed


@dataclass(frozen=True)
class _Assembled:
    """A bundle's entries, ready to write, and what making them found."""

    entries: list[Entry]
    warnings: tuple[str, ...]
    compiled: Compiled | None
    slimmed: Slimmed | None


def _assemble(prepared: _Prepared, shared: SharedWork, progress: Progress) -> _Assembled:
    """A bundle's entries: its wheels' files mapped, filtered, slimmed and compiled as asked."""
    spec = prepared.spec
    tag = f"  [{spec.name}]" if spec.name else ""
    progress.line(f"  - Assembling{tag}")
    prefix = "python/" if spec.layout == "layer" else ""
    drop = file_filter(spec.exclude_files, prefix)
    included = [e for e in _includes(spec, shared.outputs) if drop is None or not drop(e.path)]
    entries = assemble((contents_of(shared.parsed(w), drop) for w in prepared.wheels), prefix, included)
    warnings = list(prepared.warnings)
    slimmed = None
    if spec.slim:
        progress.line(f"  - Slimming{tag}")
        slimmed = _slim(entries, prefix, shared, prepared)
        entries = slimmed.entries
    compiled = None
    if prepared.compiler is not None:
        progress.line(f"  - Compiling bytecode with <c1>{prepared.compiler}</>{tag}")
        scratch = shared.scratch / f"compile-{spec.name or 'bundle'}"
        digests = {a.wheel: a.sha256 for a in prepared.artifacts if a.sha256}
        compiled = _compile(shared.bytecode_cache, entries, prepared.compiler, scratch, spec, digests)
        if drop is not None:  # `exclude-files = ["*.pyc"]` leaves bytecode out too
            compiled = replace(compiled, entries=tuple(e for e in compiled.entries if not drop(e.path.removeprefix(prefix))))
        progress.line(f"    {compiled.fresh:,} compiled now, {compiled.cached:,} from the bytecode cache{tag}")
        shared.unpacked.update(compiled.unpacked)
        entries = merge(entries, compiled.entries)
        warnings += _summarise(compiled.warnings)
    check_unzipped_size(entries, spec.max_unzipped_size)
    return _Assembled(entries, tuple(warnings), compiled, slimmed)


def _announce(spec: BundleSpec, progress: Progress) -> None:
    progress.line(f"  - Writing <c1>{spec.output}</>")
    progress.line(f"  - Writing <c1>{spec.target_dir}</>")


def _report(prepared: _Prepared, assembled: _Assembled, result: ZipResult) -> BundleReport:
    """What was written, for the summary and `--format json`."""
    spec, entries, compiled = prepared.spec, assembled.entries, assembled.compiled
    packages = [(a.name, a.version) for a in prepared.artifacts]
    if spec.builds_project:
        packages.append((spec.project.name, spec.project.version))
    return BundleReport(
        zip=result.path,
        target_dir=spec.target_dir,
        sha256=result.sha256,
        size=result.size,
        unzipped_size=unzipped_size(entries),
        files=len(entries),
        runtime=spec.target.runtime.name,
        architecture=spec.target.architecture,
        layout=spec.layout,
        packages=tuple(sorted(packages)),
        largest=largest_packages(entries),
        warnings=tuple([*assembled.warnings, *size_warnings(result.size)]),
        compiled_modules=len(compiled.entries) if compiled else None,
        bytecode_size=compiled.size if compiled else None,
        slim=assembled.slimmed.report if assembled.slimmed else None,
        name=spec.name,
    )


@contextlib.contextmanager
def _written() -> Iterator[None]:
    """Once the outputs are in place, a Ctrl-C says so (not that they were left as they were)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("the handler checks did not finish") from None


def _checked(
    prepared: _Prepared, report: BundleReport, shared: SharedWork, io: IO, progress: Progress,
    failed: Mapping[Path, str] | None = None,
) -> BundleReport:
    """The report, with the handler checks' results when checks were asked for. A check layer
    that is a bundle of this run which failed is not replaced by its previous ZIP: the checks
    are skipped, saying why (`failed`: those bundles' ZIPs and names)."""
    if prepared.checker is None:
        return report
    stale = [failed[layer] for layer in prepared.spec.check_layers if failed and layer in failed]
    if stale:
        reason = (
            f"its layer bundle {stale[0]} failed in this run, and its previous ZIP would not be the"
            " layer this function is deployed with: fix that bundle and run again."
        )
        return replace(report, handler_checks=prepared.checker.skip(reason))
    env = shared.env(prepared.spec.target)
    checks = prepared.checker.run(env, io, progress, report.zip, prepared.plan.excluded)
    return replace(report, handler_checks=checks)


def _cache_dir(poetry: Poetry) -> Path:
    return compat.cache_dir(poetry.config).resolve()


def _includes(spec: BundleSpec, outputs: Outputs) -> list[Entry]:
    """Project files named by `include`; they belong to code, so never to a layer."""
    if not spec.include or not spec.includes_project:
        return []
    return project_files(spec.project.root, spec.include, spec.project.name, outputs)


def _compiler(poetry: Poetry, spec: BundleSpec, cache_dir: Path) -> Path:
    """The interpreter for `--compile`; one this cache already probed is not run again to be found."""
    from poetry_plugin_lambda.bytecode_cache import remembered_version
    from poetry_plugin_lambda.interpreters import interpreter_version
    from poetry_plugin_lambda.interpreters import require_interpreter

    def version_of(python: Path) -> str | None:
        return remembered_version(python, cache_dir) or interpreter_version(python)

    version = spec.target.runtime.python_version
    return require_interpreter(version, spec.compile_with, "--compile", lambda: compat.project_python(poetry), version_of)


def _compile(
    cache_dir: Path, entries: list[Entry], python: Path, scratch: Path, spec: BundleSpec, digests: dict[Path, str]
) -> Compiled:
    from poetry_plugin_lambda.bytecode import compile_bytecode

    workers = os.cpu_count() or 1
    return compile_bytecode(
        entries, python, scratch, layer=spec.layout == "layer", workers=workers, cache_dir=cache_dir,
        wheel_sha256=digests,
    )


def _slim(entries: list[Entry], prefix: str, shared: SharedWork, prepared: _Prepared) -> Slimmed:
    """`--slim` on third-party entries: the project's wheel and `include`d files are never touched."""
    from poetry_plugin_lambda.slim import slim

    project_wheel = prepared.wheels[-1] if prepared.spec.builds_project else None
    own = {e.owner for e in entries if e.file is not None or (project_wheel and e.archive == project_wheel)}
    return slim(entries, prefix, own, shared.slim_cache, workers=os.cpu_count() or 1)


def _summarise(skipped: tuple[str, ...], shown: int = 3) -> list[str]:
    if len(skipped) <= shown:
        return list(skipped)
    return [*skipped[:shown], f"... and {len(skipped) - shown} more modules skipped by the compiler."]


def _handler_checker(poetry: Poetry, spec: BundleSpec) -> HandlerChecker | None:
    """Made before bundling, so a bad --check-with fails before anything is written."""
    if not spec.handlers:
        return None
    from poetry_plugin_lambda.handler_check import HandlerChecker

    return HandlerChecker(poetry, spec)
