"""`poetry lambda-bundle`: cleo options -> spec; runs the pipeline; prints progress and report."""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

from cleo.formatters.formatter import Formatter
from cleo.helpers import option
from packaging.utils import canonicalize_name
from poetry.console.commands.command import Command

from poetry_plugin_lambda.compat import known_secrets
from poetry_plugin_lambda.compat import lock_parse_kept
from poetry_plugin_lambda.compat import output_redacted
from poetry_plugin_lambda.compat import schema_validators_kept
from poetry_plugin_lambda.compat import stdout_to_stderr
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import Interrupted
from poetry_plugin_lambda.errors import hide
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import secrets_hidden
from poetry_plugin_lambda.interrupts import handled
from poetry_plugin_lambda.interrupts import never_lost
from poetry_plugin_lambda.targets import ARCHITECTURES
from poetry_plugin_lambda.targets import RUNTIMES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cleo.io.inputs.option import Option
    from cleo.io.io import IO
    from poetry.poetry import Poetry

    from poetry_plugin_lambda.pipeline import BundleFailure
    from poetry_plugin_lambda.report import BundleReport
    from poetry_plugin_lambda.spec import ProjectFacts


class _Progress:
    """Progress lines; on stderr when stdout must carry only the JSON report."""

    def __init__(self, io: IO, to_stderr: bool) -> None:
        self._io = io
        self._to_stderr = to_stderr

    def line(self, message: str) -> None:
        message = redact(message)  # a URL in a progress line never shows its credentials
        if self._to_stderr:
            self._io.write_error_line(message)
        else:
            self._io.write_line(message)


def project_facts(poetry: Poetry) -> ProjectFacts:
    """Read once what the spec needs from the project."""
    from poetry.core.constraints.version import Version

    from poetry_plugin_lambda import compat
    from poetry_plugin_lambda.spec import ProjectFacts

    package = poetry.package
    constraint = package.python_constraint
    groups = frozenset(canonicalize_name(g) for g in package.dependency_group_names(include_optional=True))
    root = poetry.pyproject_path.parent.resolve()
    return ProjectFacts(
        root=root,
        name=compat.declared_name(poetry) or canonicalize_name(root.name),
        version=package.version.text,
        allows_python=lambda version: constraint.allows(Version.parse(version)),
        python_constraint=str(package.python_versions),
        groups=groups | {canonicalize_name("main")},
        # Unlike `poetry install`, a bundle takes only main by default: dev tools never ship.
        default_groups=frozenset({canonicalize_name("main")}),
        extras=frozenset(canonicalize_name(e) for e in package.extras),
        package_mode=compat.project_is_package(poetry),
    )


class LambdaBundleCommand(Command):
    name = "lambda-bundle"
    description = "Bundle the project and its locked dependencies into an AWS Lambda ZIP."
    help = (
        "Builds a deployment ZIP for AWS Lambda from <comment>poetry.lock</comment>: the"
        " project's wheel and the locked\npackages of the chosen groups, with wheels chosen for"
        " the target runtime and architecture\n(not this machine's), verified against the lock's"
        " hashes, written reproducibly.\n\n"
        "Settings can live in <comment>[tool.lambda-bundle]</comment> of pyproject.toml; options"
        " given here win.\n\n"
        "  <info>poetry lambda-bundle --runtime python3.12 --arch arm64</info>\n"
        "  <info>poetry lambda-bundle --format json</info>   (one JSON object on stdout)"
    )

    options: ClassVar[list[Option]] = [
        option("runtime", None, f"Lambda runtime: {', '.join(RUNTIMES)}.", flag=False),
        option(
            "arch",
            None,
            f"Architecture: {' or '.join(ARCHITECTURES)} (default: x86_64).",
            flag=False,
        ),
        option("output", "o", "The ZIP to write (default: dist/lambda/<name>-<version>-<runtime>-<arch>[-<layout>].zip).", flag=False),
        option("target-dir", None, "The folder to install into (default: build/lambda/<runtime>-<arch>[-<layout>]).", flag=False),
        option("layout", None, "bundle (project and dependencies), layer (dependencies under python/) or code (project only).", flag=False),
        option("with", None, "Optional dependency groups to include.", flag=False, multiple=True),
        option("without", None, "Dependency groups to leave out.", flag=False, multiple=True),
        option("only", None, "The only dependency groups to include.", flag=False, multiple=True),
        option("extras", "E", "Extras of the project to include.", flag=False, multiple=True),
        option("all-extras", None, "Include all extras of the project."),
        option("exclude", None, "A package to leave out, with what only it needs (the runtime or a layer provides it).", flag=False, multiple=True),
        option("exclude-files", None, "A glob of bundle paths to leave out (e.g. '*/tests/*').", flag=False, multiple=True),
        option("include", None, "Project files to bundle (globs from the project root; '!' excludes).", flag=False, multiple=True),
        option("compile", None, "Ship bytecode compiled for the target's Python (faster cold starts)."),
        option("compile-with", None, "The python3.X to compile with (default: found on PATH, pyenv, uv).", flag=False),
        option("slim", None, "Leave out third-party tests, docs and stubs, and strip debug data from shared objects."),
        option("check-handler", None, "After bundling, import this module.function from the ZIP as Lambda would (repeatable).", flag=False, multiple=True),
        option("check-layer", None, "A layer ZIP or layer target dir the function runs with, for --check-handler (repeatable).", flag=False, multiple=True),
        option("check-with", None, "The python3.X to check handlers with (e.g. one that runs arm64 code under qemu-user).", flag=False),
        option("max-unzipped-size", None, "Fail above this unzipped size: bytes or e.g. 200MB (default: 262144000).", flag=False),
        option("bundle", None, "Build only this named bundle of [tool.lambda-bundle.bundles] (repeatable).", flag=False, multiple=True),
        option("format", None, "Report format: text or json.", flag=False, default="text"),
    ]

    def _cli_values(self) -> dict[str, Any]:
        return {
            "runtime": self.option("runtime"),
            "architecture": self.option("arch"),
            "output": self.option("output"),
            "target-dir": self.option("target-dir"),
            "layout": self.option("layout"),
            "with": self.option("with") or None,
            "without": self.option("without") or None,
            "only": self.option("only") or None,
            "extras": self.option("extras") or None,
            "all-extras": self.option("all-extras") or None,
            "exclude": self.option("exclude") or None,
            "exclude-files": self.option("exclude-files") or None,
            "max-unzipped-size": self.option("max-unzipped-size"),
            "include": self.option("include") or None,
            "compile": self.option("compile") or None,
            "compile-with": self.option("compile-with"),
            "slim": self.option("slim") or None,
            "handler": self.option("check-handler") or None,
            "check-layers": self.option("check-layer") or None,
            "check-with": self.option("check-with"),
            "format": self.option("format"),
        }

    def handle(self) -> int:
        fmt = self.option("format")
        try:
            # with --format json, stdout carries the report alone: whatever else prints goes to stderr
            report_only = stdout_to_stderr(self.io) if fmt == "json" else contextlib.nullcontext()
            with never_lost(), _collector_paused(), _nothing_left_staged(), secrets_hidden(), output_redacted(self.io, redact), report_only:
                outcome = self._bundle()
        except BundleError as error:
            if isinstance(error, Interrupted):
                handled()
            self._error(Formatter.escape(str(error)))
            return error.exit_code
        except OSError as error:  # a refusal no stage foresaw: still say which path, and what to do
            from poetry_plugin_lambda.errors import os_error

            message = str(os_error(error, "bundle the project"))
            if not error.filename:  # a failed write names no file: say which places a run writes
                import tempfile

                message += (
                    " A run writes its outputs, Poetry's cache and its scratch folder in"
                    f" {tempfile.gettempdir()} (set TMPDIR to move it)."
                )
            self._error(Formatter.escape(message))
            return 1
        except KeyboardInterrupt:  # before the outputs were committed (after, it is an `Interrupted`)
            handled()
            self._error("Interrupted: the previous ZIP and target dir were left as they were.")
            return 130
        except Exception as error:  # a bug of ours: one line (even with -q), the traceback with -v
            if self.io.is_verbose():
                raise
            self._error(Formatter.escape(
                f"poetry lambda-bundle failed unexpectedly ({type(error).__name__}: {error})."
                " The previous outputs were left as they were. Run again with -vvv to see where,"
                " and please report it."
            ))
            return 1
        if isinstance(outcome, list):
            return self._show_many(outcome, fmt)
        return self._show(outcome, fmt)

    def _show(self, report: BundleReport, fmt: str) -> int:
        if fmt == "json":
            self._json(report.to_json())
        else:
            from poetry_plugin_lambda.report import render_text

            self._text(render_text(report))
        failed = report.failed_checks
        if failed and (self.io.output.is_quiet() or fmt == "json"):
            for check in failed:  # the text report shows them, unless silenced
                self._error(Formatter.escape(f"{check.handler}: {check.message}"))
        if failed:
            names = ", ".join(check.handler for check in failed)
            self._error(f"The handler check failed for {Formatter.escape(names)} (the bundle was written).")
        return 3 if failed else 0

    def _show_many(self, outcomes: list[BundleReport | BundleFailure], fmt: str) -> int:
        """Every bundle's report; exit 1 if one failed, 3 if only a handler check did."""
        from poetry_plugin_lambda.pipeline import BundleFailure

        reports = [o for o in outcomes if not isinstance(o, BundleFailure)]
        failures = [o for o in outcomes if isinstance(o, BundleFailure)]
        if fmt == "json":
            self._json({"bundles": [
                {"name": o.name, "error": o.message} if isinstance(o, BundleFailure) else o.to_json()
                for o in outcomes
            ]})
        else:
            from poetry_plugin_lambda.report import render_many

            self._text(render_many(reports, [(f.name, f.message) for f in failures]))
        for failure in failures:  # on stderr too, and even with -q: a script must learn why
            self._error(Formatter.escape(f"Bundle {failure.name} failed: {failure.message}"))
        for report in reports:
            for check in report.failed_checks:
                self._error(Formatter.escape(f"Bundle {report.name}: the handler check failed for {check.handler}: {check.message}"))
        if failures:
            return max(f.exit_code for f in failures)
        return 3 if any(r.failed_checks for r in reports) else 0

    def _text(self, lines: list[str]) -> None:
        """The text report, one bundle's or several's."""
        for line in lines:
            self._out(line)

    def _json(self, data: dict[str, Any]) -> None:
        """The JSON report: printed even with -q, which silences progress, never the report a
        script asked for. Indented, it has one value a line, so a URL's user information never
        spans a string's end: redacting the text keeps the JSON valid."""
        self._out(json.dumps(data, indent=2, sort_keys=True), quiet_too=True)

    def _error(self, message: str) -> None:
        """Errors are printed even with -q: a script must learn why a bundle is missing."""
        self._out(f"<error>{message}</error>", quiet_too=True, to_stderr=True)

    def _out(self, text: str, *, quiet_too: bool = False, to_stderr: bool = False) -> None:
        """What the command prints once the run is done (report, JSON, errors): redacted here,
        since a handler's import error or a bundle's failure may quote a URL with credentials."""
        from cleo.io.outputs.output import Verbosity

        verbosity = Verbosity.QUIET if quiet_too else Verbosity.NORMAL
        write = self.io.write_error_line if to_stderr else self.io.write_line
        write(redact(text), verbosity)

    def _bundle(self) -> BundleReport | list[BundleReport | BundleFailure]:
        from poetry_plugin_lambda.pipeline import bundle
        from poetry_plugin_lambda.pipeline import bundle_all
        from poetry_plugin_lambda.spec import CONFIG_TABLE
        from poetry_plugin_lambda.spec import build_specs

        with schema_validators_kept(self.application):
            poetry = self.poetry
        with lock_parse_kept(poetry):  # the first read of poetry.lock, which the locker keeps
            hide(known_secrets(poetry))
        table = poetry.pyproject.data.get("tool", {}).get(CONFIG_TABLE.split(".", 1)[1])
        specs = build_specs(
            table, self._cli_values(), project_facts(poetry), Path.cwd(), os.environ, self.option("bundle")
        )
        progress = _Progress(self.io, to_stderr=specs[0].format == "json")
        if len(specs) == 1 and specs[0].name is None:
            return bundle(poetry, specs[0], self.io, progress)
        return bundle_all(poetry, specs, self.io, progress)


@contextlib.contextmanager
def _nothing_left_staged() -> Iterator[None]:
    """However the run ends, no temporary of its outputs or caches is left behind (a Ctrl-C can
    come between a temporary's creation and the code meant to remove it)."""
    from poetry_plugin_lambda.atomic import discard_unfinished

    try:
        yield
    finally:
        discard_unfinished()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while bundling, and skip its last passes at exit.

    A bundle allocates objects by the thousand (one or more per wheel member); every so many
    the collector walked Poetry's whole object graph again, holding the lock every writer
    thread waits for (0.03 to 0.06 s of a warm run, measured). A bundle makes few cycles, and
    the collector, once back on, finds them. When the interpreter then exits, it collects over
    every object Poetry loaded, several times while tearing modules down (0.1 to 0.15 s after a
    bundle, measured): the process is ending and the memory goes back with it, so the objects
    alive then are frozen (`gc.freeze`, from an exit handler: a caller that runs the command
    in a process that goes on is not affected until that process exits).
    """
    _freeze_at_exit()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def _freeze_at_exit() -> None:
    """Once per process."""
    atexit.register(gc.freeze)
