"""One handler imported in a child interpreter set up as Lambda's, and its failure explained.

The child runs `python3.X -I -S -B`: no site (so no site-packages, user site or virtualenv
packages, whatever the interpreter has installed), no PYTHON* variables, no bytecode written.
It sets sys.path itself (the Lambda folders, then only its standard library), imports the
module as Lambda's runtime does (`importlib.import_module`) and looks the function up. The
result goes to a file, so what the module prints cannot be mistaken for it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from collections.abc import Collection
    from collections.abc import Mapping
    from pathlib import Path

_CHILD = r'''
import importlib, importlib.util, json, os, sys, time
config = json.loads(sys.argv[1])
stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p]
sys.path[:] = stdlib
# What Lambda's runtime (awslambdaric's bootstrap) has imported when it imports the handler: a
# bundled module of the same name is never imported there, so neither is it here.
for name in ("logging", "traceback", "decimal", "math", "enum"):
    importlib.import_module(name)
sys.path[:] = config["path"] + stdlib
module_name, _, function = config["handler"].rpartition(".")
top = module_name.split(".")[0]
preloaded = top in sys.modules
start = time.perf_counter()
def report(**fields):
    fields.update(module=module_name, function=function, seconds=time.perf_counter() - start, preloaded=preloaded)
    with open(config["result"], "w", encoding="utf-8") as f:
        json.dump(fields, f)
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)  # not sys.exit: threads or atexit hooks the module started must not hold the check
if top in sys.builtin_module_names:
    report(ok=False, stage="builtin", type="ImportError", name=top,
           message=f"Cannot use built-in module {module_name} as a handler module")
try:
    module = importlib.import_module(module_name)
except BaseException as error:
    missing = getattr(error, "name", None)
    try:  # a missing submodule of a (regular, not namespace) package the bundle holds
        spec = importlib.util.find_spec(missing.split(".")[0]) if missing and "." in missing else None
        holds = spec is not None and spec.origin is not None and spec.submodule_search_locations is not None
    except BaseException:
        holds = False
    report(ok=False, stage="import", type=type(error).__name__, message=str(error), name=missing, holds=holds)
target = getattr(module, function, None)
if not callable(target):
    report(ok=False, stage="lookup", type="AttributeError", name=None,
           message=f"module {module_name!r} has no callable {function!r}")
# Not `inspect`: the bundle may hold a module of that name (Lambda would import it, not the
# standard library's). A coroutine function's code says so in its flags.
import functools  # imported already (logging imports it): the standard library's, as on Lambda
def is_async(f):
    while isinstance(f, functools.partial):
        f = f.func
    f = getattr(f, "__func__", f)
    code = getattr(f, "__code__", None)
    if code is not None and code.co_flags & (0x80 | 0x200):
        return True
    mark = getattr(sys.modules.get("inspect"), "_is_coroutine_mark", None)  # markcoroutinefunction
    return mark is not None and getattr(f, "_is_coroutine_marker", None) is mark
if is_async(target) or is_async(getattr(type(target), "__call__", None)):
    report(ok=False, stage="async", type="TypeError", name=None,
           message=f"{function!r} is an async function")
report(ok=True)
'''

IMPORT_TIMEOUT = 300
# Lambda's init phase (the handler module's import) may take this long on an on-demand start.
INIT_LIMIT = 10.0
_NATIVE_FAILURE = re.compile(
    r"ELF|wrong ELF class|cannot open shared object|undefined symbol|invalid ELF header|Exec format error"
)


@dataclass(frozen=True)
class HandlerCheck:
    """The check of one handler: passed, failed or skipped, and why (a message without its name)."""

    handler: str
    status: str  # "passed", "failed" or "skipped"
    message: str

    def to_json(self) -> dict[str, str]:
        return {"handler": self.handler, "status": self.status, "message": self.message}


@dataclass(frozen=True)
class Context:
    """What the explanations need to know of the bundle and the check's world."""

    layout: str
    excluded: Collection[str]  # canonical names of the packages `exclude` left out
    unchecked_sdk: Collection[str]  # top-level SDK modules the check's /var/runtime lacks
    layers_given: bool


def sentence(text: str) -> str:
    """`text` on one line, ending with exactly one full stop (or its own ! or ?)."""
    text = " ".join(text.split())
    if len(text) > 500:
        text = text[:497].rstrip() + "..."
    if not text:
        return ""
    return text if text[-1] in ".!?" else text + "."


def run_import(
    python: Path, handler: str, sys_path: list[str], cwd: Path, environ: Mapping[str, str], result: Path
) -> dict[str, object]:
    """Import `handler` in the child; its result, or a description of how the child died."""
    config = json.dumps({"handler": handler, "path": sys_path, "result": str(result)})
    try:
        out = subprocess.run(
            [str(python), "-I", "-S", "-B", "-c", _CHILD, config],
            capture_output=True, text=True, timeout=IMPORT_TIMEOUT, check=False, cwd=cwd,
            env=dict(environ), stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "stage": "timeout"}
    except OSError as error:
        return {"ok": False, "stage": "crash", "message": f"{python} cannot run: {error}"}
    try:
        loaded: dict[str, object] = json.loads(result.read_text(encoding="utf-8"))
        return loaded
    except (OSError, ValueError):
        tail = (out.stderr.strip() or out.stdout.strip())[-500:]
        return {"ok": False, "stage": "crash", "returncode": out.returncode, "message": tail}


def explain(handler: str, result: Mapping[str, object], context: Context) -> HandlerCheck:
    """The child's result as a pass, a failure with its likely cause, or a pass with a note."""
    stage = result.get("stage")
    if result.get("ok"):
        seconds = float(result.get("seconds") or 0.0)  # type: ignore[arg-type]
        message = "imports and is callable"
        if seconds > INIT_LIMIT:
            message += (
                f"; importing it took {seconds:.1f} s here, and Lambda's init phase allows"
                f" {INIT_LIMIT:.0f} s"
            )
        return HandlerCheck(handler, "passed", message)
    if stage == "timeout":
        return HandlerCheck(
            handler, "failed", f"Importing it took more than {IMPORT_TIMEOUT} s: it hangs at import time."
        )
    if stage == "crash":
        code = result.get("returncode")
        how = f" (exit code {code})" if code is not None else ""
        detail = sentence(str(result.get("message") or "no output"))
        return HandlerCheck(
            handler, "failed", f"Importing it ended the interpreter{how} before it finished: {detail}"
        )
    name = result.get("name")
    top = name.split(".")[0] if isinstance(name, str) and name else None
    if result.get("type") == "ModuleNotFoundError" and top in context.unchecked_sdk:
        return HandlerCheck(
            handler,
            "passed",
            f"{top} is provided by the runtime, not checked (poetry.lock holds no {top}; add"
            " boto3 to a group, e.g. dev, to check against it). The module's code after that"
            " import was not run",
        )
    error = sentence(f"{result.get('type')}: {result.get('message')}")
    return HandlerCheck(handler, "failed", f"{error} {likely_cause(result, context)}")


def likely_cause(result: Mapping[str, object], context: Context | None = None) -> str:
    """Turn the child's error into what a user should look at first."""
    context = context or Context("bundle", (), (), False)
    kind, message, name = str(result.get("type")), str(result.get("message")), result.get("name")
    module = str(result.get("module"))
    top = module.split(".", maxsplit=1)[0]
    if result.get("stage") == "builtin":
        return f"{top!r} is a module built into Python: Lambda refuses it as a handler module. Rename yours."
    if result.get("preloaded"):
        return (
            f"{top!r} is a module of the standard library that Lambda's runtime has imported before"
            f" the handler, so the bundle's {top!r} is never imported there: rename yours."
        )
    if result.get("stage") == "lookup":
        return f"The module imports, but has no function {result.get('function')!r}: check the function name."
    if result.get("stage") == "async":
        return (
            "Lambda's Python runtime calls the handler and does not await what it returns, so every"
            " invocation would fail: make the handler a plain function that runs the coroutine"
            " (`return asyncio.run(main(event, context))`)."
        )
    if _NATIVE_FAILURE.search(message):
        return "A compiled extension does not load: a binary built for another platform or Python version."
    if kind == "ModuleNotFoundError" and isinstance(name, str):
        if module == name or module.startswith(name + "."):
            return f"No module {name!r} in the bundle: check the handler's module name (a typo?) and `include`."
        return _missing(name, context, bool(result.get("holds")))
    return "The module raised an exception while being imported."


def _missing(name: str, context: Context, holds: bool = False) -> str:
    top = name.split(".", maxsplit=1)[0]
    if holds:
        return (
            f"The bundle holds {top!r} but not {name!r}, which the handler's imports need: --slim (it"
            " removes tests, docs and examples folders) or exclude-files may have left it out; if"
            f" neither did, this version of {top} has no such module."
        )
    lacks = f"The bundle lacks {top!r}, which the handler imports"
    where = "nor do the layers given to the check" if context.layers_given else "and no layer was given to the check"
    excluded = canonicalize_name(top)
    if excluded in context.excluded:
        return f"{lacks} ({where}): {excluded} is excluded: give the layer with --check-layer, or keep it."
    if context.layout == "code":
        return (
            f"{lacks} ({where}): the code layout holds no dependencies: give the layer the"
            " function runs with (--check-layer)."
        )
    return (
        f"{lacks} ({where}): a dependency that is missing (excluded, in a group that is not"
        " bundled, or expected from a layer: give the layer with --check-layer)."
    )
