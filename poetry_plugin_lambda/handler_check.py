"""`--check-handler module.function`: import the handler from the bundle as Lambda would.

A fresh interpreter of the target's Python version, isolated (-I), with only the bundle on
sys.path, imports the module and looks the function up. An import error is explained (a binary
for another platform, a missing dependency, a misspelt name) before anyone deploys.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from poetry_plugin_lambda.errors import ConfigError

_CHECK = r'''
import importlib, json, sys
root, handler = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
module_name, _, function = handler.rpartition(".")
def report(**fields):
    print(json.dumps(fields)); sys.exit(0)
try:
    module = importlib.import_module(module_name)
except BaseException as error:
    report(ok=False, stage="import", type=type(error).__name__, message=str(error),
           name=getattr(error, "name", None), module=module_name, function=function)
target = getattr(module, function, None)
if not callable(target):
    report(ok=False, stage="lookup", type="AttributeError", module=module_name, function=function,
           message=f"module {module_name!r} has no callable {function!r}", name=None)
report(ok=True, module=module_name, function=function)
'''

_HANDLER = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class HandlerCheck:
    status: str  # "passed", "failed" or "skipped"
    message: str

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, "message": self.message}


def check_handler_name(handler: str, where: str) -> str:
    if not _HANDLER.match(handler):
        raise ConfigError(f"{where} must look like module.function (e.g. app.handler.handler), got {handler!r}.")
    return handler


def host_architecture() -> str | None:
    return _MACHINES.get(platform.machine().lower())


def likely_cause(result: dict[str, object]) -> str:
    """Turn the child's error into what a user should look at first."""
    kind, message, name = str(result.get("type")), str(result.get("message")), result.get("name")
    module = str(result.get("module"))
    if result.get("stage") == "lookup":
        return f"The module imports, but has no function {result.get('function')!r}: check the function name."
    if re.search(r"ELF|wrong ELF class|cannot open shared object|undefined symbol|invalid ELF header", message):
        return "A compiled extension does not load: a binary built for another platform or Python version."
    if kind == "ModuleNotFoundError" and isinstance(name, str):
        if module == name or module.startswith(name + "."):
            return f"No module {name!r} in the bundle: check the handler's module name (a typo?) and `include`."
        return (
            f"The bundle lacks {name!r}, which the handler imports: a dependency that is missing"
            " (excluded, in a group that is not bundled, or expected from a layer)."
        )
    return "The module raised an exception while being imported."


IMPORT_TIMEOUT = 300


def run_check(python: Path, bundle_root: Path, handler: str) -> HandlerCheck:
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", _CHECK, str(bundle_root), handler],
            capture_output=True, text=True, timeout=IMPORT_TIMEOUT, check=False, cwd=bundle_root,
        )
    except subprocess.TimeoutExpired:
        return HandlerCheck(
            "failed", f"importing {handler} took more than {IMPORT_TIMEOUT} s: it hangs at import time."
        )
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return HandlerCheck("failed", f"The check crashed: {out.stderr.strip()[-500:]}")
    if result.get("ok"):
        return HandlerCheck("passed", f"{handler} imports and is callable on {python.name}.")
    error = f"{result.get('type')}: {result.get('message')}"
    return HandlerCheck("failed", f"{handler} failed: {error}. {likely_cause(result)}")
