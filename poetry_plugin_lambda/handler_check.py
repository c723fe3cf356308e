"""`--check-handler`: import every handler from the written ZIP as Lambda would, and say why not.

The ZIP is extracted into a scratch copy of Lambda's folders (`lambda_env`) with the layers
given to the check and the runtime's SDK from the lock (`runtime_sdk`); each handler is imported
in a fresh, site-less interpreter of the runtime's version (`handler_import`). A pass means "this
imports on Lambda", a failure "this fails there", with the likely cause. What the check cannot
model (network, IAM, memory, the runtime's exact SDK version) is in docs/checking-handlers.md.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import scratch_folder
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.handler_import import Context
from poetry_plugin_lambda.handler_import import HandlerCheck
from poetry_plugin_lambda.handler_import import explain
from poetry_plugin_lambda.handler_import import run_import
from poetry_plugin_lambda.lambda_env import LambdaRoot
from poetry_plugin_lambda.lambda_env import add_layer
from poetry_plugin_lambda.lambda_env import elf_machines
from poetry_plugin_lambda.lambda_env import extract_zip
from poetry_plugin_lambda.lambda_env import lambda_environ
from poetry_plugin_lambda.lambda_env import layer_notes

if TYPE_CHECKING:
    from collections.abc import Collection

    from cleo.io.io import IO
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.fetch import Progress
    from poetry_plugin_lambda.interpreters import Interpreter
    from poetry_plugin_lambda.spec import BundleSpec

__all__ = ["HandlerCheck", "HandlerChecker", "check_handler_name", "host_architecture"]

_HANDLER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# Lambda's Handler setting: at most 128 characters, no whitespace.
HANDLER_MAX_LENGTH = 128
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def check_handler_name(handler: str, where: str) -> str:
    """A handler Lambda's Handler setting takes and Python can import; else no check can pass."""
    if not _HANDLER.fullmatch(handler):
        raise ConfigError(f"{where} must look like module.function (e.g. app.handler.handler), got {handler!r}.")
    if len(handler) > HANDLER_MAX_LENGTH:
        raise ConfigError(
            f"{where}: the handler {handler[:40]}... is {len(handler)} characters; Lambda's Handler"
            f" setting takes at most {HANDLER_MAX_LENGTH}: use a shorter module path or function name."
        )
    return handler


def host_architecture(machine: str | None = None) -> str | None:
    return _MACHINES.get((machine or platform.machine()).lower())


class HandlerChecker:
    """Made before bundling (so a bad --check-with fails first), run once the ZIP is written."""

    def __init__(self, poetry: Poetry, spec: BundleSpec) -> None:
        self._poetry = poetry
        self._spec = spec
        self._version = spec.target.runtime.python_version
        self._given = _given_interpreter(spec.check_with, self._version) if spec.check_with else None

    def run(
        self, env: Env, io: IO, progress: Progress, zip_path: Path, excluded: Collection[str] = ()
    ) -> tuple[HandlerCheck, ...]:
        spec = self._spec
        if spec.layout == "layer":
            return self.skip(
                "a layer holds no function to import: check the handler when bundling the function"
                " (--layout code or bundle), giving this layer with --check-layer."
            )
        python = self._given or self._find()
        if python is None:
            return self.skip(
                f"no python{self._version} found (pyenv, uv, /usr/bin, PATH) to import it with:"
                f" install one (e.g. `uv python install {self._version}`) or give --check-with."
            )
        with scratch_folder("lambda-bundle-check") as scratch:
            root = LambdaRoot(scratch.path / "lambda").create()
            try:
                return self._run_in(root, python, env, io, progress, zip_path, excluded)
            finally:
                root.thaw()

    def _run_in(
        self, root: LambdaRoot, python: Interpreter, env: Env, io: IO, progress: Progress,
        zip_path: Path, excluded: Collection[str],
    ) -> tuple[HandlerCheck, ...]:
        from poetry_plugin_lambda.runtime_sdk import install_sdk

        spec = self._spec
        try:
            extract_zip(zip_path, root.task, "The bundle")
            for layer in spec.check_layers:
                add_layer(layer, root.opt)
            fetch_scratch = root.base.parent / "fetch"
            fetch_scratch.mkdir()
        except OSError as error:  # a full disk, an unreadable layer dir: the check cannot run
            return self.skip(f"the check's scratch copy of the function could not be made: {error}.")
        sdk = install_sdk(self._poetry, spec, env, io, progress, root.runtime, fetch_scratch)
        arch = spec.target.architecture
        machines = elf_machines(root.task, root.opt, root.runtime)
        if machines and python.machine and host_architecture(python.machine) != arch:
            return self.skip(self._cannot_run(python, machines))
        notes = [n for n in (sdk.note, *layer_notes(root.opt, self._version)) if n]
        root.freeze()
        context = Context(spec.layout, frozenset(excluded) | spec.exclude, sdk.unchecked, bool(spec.check_layers))
        results = []
        for index, handler in enumerate(spec.handlers):
            progress.line(f"  - Checking the handler <c1>{handler}</>")
            environ = lambda_environ(
                root, spec.target.runtime.name, spec.project.name, handler, python.executable, os.environ
            )
            outcome = run_import(
                python.executable, handler, root.sys_path(self._version), root.task, environ,
                root.base.parent / f"result-{index}.json",
            )
            check = explain(handler, outcome, context)
            if check.status == "passed":
                check = HandlerCheck(handler, "passed", _with_notes(
                    f"{check.message} ({python.executable}, {_machine(python)}; runtime SDK: {sdk.describe()}).",
                    notes))
            else:  # a layer's modules outside python/ may be why
                check = HandlerCheck(handler, check.status, _with_notes(check.message, notes))
            results.append(check)
        return tuple(results)

    def _find(self) -> Interpreter | None:
        from poetry_plugin_lambda import compat
        from poetry_plugin_lambda.interpreters import find_check_interpreter

        preferred = [self._spec.compile_with] if self._spec.compile_with else []
        project = compat.project_python(self._poetry)
        return find_check_interpreter(self._version, preferred, [project] if project else [])

    def _cannot_run(self, python: Interpreter, machines: set[str]) -> str:
        arch = self._spec.target.architecture
        held = " and ".join(sorted(machines))
        if self._given is not None:
            return (
                f"--check-with {self._spec.check_with} runs {_machine(python)} code, and the bundle holds"
                f" {held} binaries: give a python{self._version} that runs {arch} code (e.g. under qemu-user)."
            )
        return (
            f"the bundle holds {held} binaries and python{self._version} here runs {_machine(python)}"
            f" code: give --check-with PYTHON, a python{self._version} that runs {arch} code (e.g."
            f" under qemu-user), or run the check on an {arch} machine."
        )

    def skip(self, reason: str) -> tuple[HandlerCheck, ...]:
        """Every handler skipped, for `reason`."""
        return tuple(HandlerCheck(handler, "skipped", reason) for handler in self._spec.handlers)


def _given_interpreter(python: Path, version: str) -> Interpreter:
    """--check-with, validated before anything is bundled; a venv's is replaced by its base."""
    from poetry_plugin_lambda.interpreters import base_interpreter
    from poetry_plugin_lambda.interpreters import describe

    found = describe(python)
    if found is None or found.version != version:
        what = f"CPython {found.version}" if found else "not a CPython interpreter that runs here"
        raise ConfigError(
            f"--check-with {python} is {what}; the handler check needs CPython {version}, the"
            " target runtime's version."
        )
    base = base_interpreter(python, version)
    if base is None:
        raise ConfigError(
            f"--check-with {python} is a virtualenv's interpreter whose base interpreter cannot be"
            f" found; give the base python{version} itself (a venv's packages must not be seen)."
        )
    return base


def _machine(python: Interpreter) -> str:
    return host_architecture(python.machine) or python.machine or "unknown"


def _with_notes(message: str, notes: list[str]) -> str:
    if not notes:
        return message
    return message + " Note: " + " ".join(n[0].upper() + n[1:] for n in notes)
