"""What a bundle's modules import from folders `--slim` would remove: read with `ast`, not guessed.

`--slim` removes `tests`/`test`/`docs`/`doc`/`examples` folders inside packages, unless a module
outside such folders imports from one (`from pkg.tests.helpers import x`, `from .tests import
x`, `from pkg import tests`, `import pkg.tests`, `importlib.import_module("pkg.tests")` or
`import_module(".tests", __name__)`, `importlib.resources.files("pkg.docs")`), a string of the
module is a path into the folder (`"docs/schema.json"` read beside `__file__`), or an entry
point (`entry_points.txt`) names a module in it.
Only modules whose text names one of those folders are parsed, and each distribution's answer
is cached by the names and CRCs of its modules, so a warm run parses nothing.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import warnings
from typing import TYPE_CHECKING

from poetry_plugin_lambda.atomic import write_atomic
from poetry_plugin_lambda.sources import Archives

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.assemble import Entry

SLIM_FOLDERS = frozenset({"tests", "test", "docs", "doc", "examples"})
_SCAN_VERSION = 5  # part of the cache key: bump when what is collected changes
_MENTIONS = re.compile(rb"\b(?:tests?|docs?|examples)\b")
_IMPORTS = re.compile(rb"\bimport\b|\bimport_module\b|__import__")


def slim_folder(rel: str) -> str | None:
    """The outermost folder `--slim` would remove that `rel` (a site-relative path) lies in.

    Only folders inside a package count (`pkg/tests/...`, never a top-level `tests/`), and
    never inside `.dist-info` or `.data`.
    """
    parts = rel.split("/")
    if parts[0].endswith((".dist-info", ".data")):
        return None
    for i in range(1, len(parts) - 1):
        if parts[i] in SLIM_FOLDERS:
            return "/".join(parts[: i + 1])
    return None


def imported_names(entries: Sequence[Entry], prefix: str, cache: Path | None) -> set[str]:
    """Dotted names that modules outside slim folders import and that pass through a slim folder."""
    by_owner: dict[str, list[Entry]] = {}
    for entry in entries:
        rel = entry.path[len(prefix):]
        if entry.path.startswith(prefix) and rel.endswith(".py") and slim_folder(rel) is None:
            by_owner.setdefault(entry.owner, []).append(entry)
    names: set[str] = set()
    with Archives() as archives:
        for owner in sorted(by_owner):
            names |= _owner_names(by_owner[owner], prefix, cache, archives)
        for entry in entries:
            if entry.path.endswith(".dist-info/entry_points.txt"):
                names |= {n for n in _entry_point_modules(archives.read(entry)) if _passes_slim_folder(n)}
    return names


def _entry_point_modules(text: bytes) -> set[str]:
    """The modules `entry_points.txt` names (`name = module:attr [extra]`): loaded by plugin hosts."""
    modules = set()
    for line in text.decode("utf-8", "replace").splitlines():
        _, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", ";", "[")):
            modules.add(value.split(":", 1)[0].split("[", 1)[0].strip())
    return modules


def _owner_names(modules: list[Entry], prefix: str, cache: Path | None, archives: Archives) -> set[str]:
    key = _key(modules)
    where = cache / f"imports-{key}.json" if cache is not None and key is not None else None
    if where is not None:
        try:
            return set(json.loads(where.read_text("utf-8")))
        except (OSError, ValueError):
            pass
    names: set[str] = set()
    for entry in modules:
        source = archives.read(entry)
        if _MENTIONS.search(source) and _IMPORTS.search(source):
            names |= {n for n in _imports(source, entry.path[len(prefix):]) if _passes_slim_folder(n)}
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(where, json.dumps(sorted(names)).encode("utf-8"))
    return names


def _key(modules: Iterable[Entry]) -> str | None:
    """A digest of the modules' paths and contents (CRCs of wheel members); None for other sources."""
    digest = hashlib.sha256(f"slim-imports {_SCAN_VERSION}\n".encode())
    for entry in modules:
        if entry.info is None:
            return None
        digest.update(f"{entry.path}\0{entry.info.CRC}\0{entry.info.file_size}\n".encode())
    return digest.hexdigest()


def _passes_slim_folder(name: str) -> bool:
    return any(part in SLIM_FOLDERS for part in name.split(".")[1:])


def _imports(source: bytes, rel: str) -> set[str]:
    """Every module a file imports, absolute, with `from m import n` giving both m and m.n."""
    parts = rel[: -len(".py")].split("/")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=rel)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Newer syntax than this Python's (the target's may be newer), or Python 2: the
        # import statements are still plain enough to read line by line.
        return _imports_by_text(source, parts[:-1])
    package = parts[:-1]  # a module's package; for __init__.py, the package itself
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            if base is None:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in _IMPORTING and isinstance(node.args[0].value, str):
                names |= _named(node.args[0].value, parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and package:
            # "docs/schema.json" read beside __file__ or from files(pkg): a path into the folder
            # (not the bare name: test runners such as numpy's name their `tests` folder so)
            folder, sep, rest = node.value.partition("/")
            if sep and rest and folder in SLIM_FOLDERS and "\n" not in node.value:
                names.add(".".join([*package, folder]))
    return names


# Calls whose first argument names a module or package: importlib's, and importlib.resources'
# (`files("pkg.docs")` imports the package `pkg.docs`).
_IMPORTING = frozenset({
    "import_module", "__import__", "files", "read_text", "read_binary", "open_text", "open_binary",
    "path", "contents", "is_resource", "get_data", "resource_filename", "resource_string", "resource_stream",
})


def _named(name: str, parts: list[str]) -> set[str]:
    """The module a string names, from the module at `parts`: `.tests` relative to its package,
    or (as `import_module(".tests", __name__)` reads it) to the module itself."""
    level = len(name) - len(name.lstrip("."))
    if not level:
        return {name}
    rest = name[level:] or None
    package, module = parts[:-1], parts
    found = {_resolve(rest, level, package), _resolve(rest, level, module)}
    return {n for n in found if n}


_FROM_PARENS = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]*\(([^)]*)\)", re.M)
_FROM = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+([^\n#(]+)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^\n#]+)", re.M)
_IMPORT_MODULE = re.compile(rb"(?:import_module|__import__)\(\s*['\"]([\w.]+)['\"]")


def _imports_by_text(source: bytes, package: list[str]) -> set[str]:
    """Import statements read as text, for a module `ast` cannot parse (more names, never fewer)."""
    names: set[str] = set()
    for pattern in (_FROM_PARENS, _FROM):
        for dots, module, imported in pattern.findall(source):
            base = _resolve(module.decode() or None, len(dots), package)
            if base is not None:
                names.add(base)
                names.update(f"{base}.{n}" for n in _aliases(imported.decode()))
    for imported in _IMPORT.findall(source):
        names.update(_aliases(imported.decode()))
    names.update(m.decode() for m in _IMPORT_MODULE.findall(source))
    return names


def _aliases(text: str) -> list[str]:
    """`a.b as c, d` -> ["a.b", "d"]."""
    names = []
    for part in text.replace("\\", " ").split(","):
        words = part.split()
        if words and words[0] != "*":
            names.append(words[0])
    return names


def _resolve(module: str | None, level: int, package: list[str]) -> str | None:
    """`from ..x import y` in package a.b.c -> a.b.x."""
    if level == 0:
        return module
    if level - 1 > len(package):
        return None
    base = package[: len(package) - (level - 1)]
    if module:
        base = [*base, *module.split(".")]
    return ".".join(base) or None


def kept_folders(folders: Iterable[str], names: set[str]) -> set[str]:
    """The slim folders some module imports from (or imports as a whole)."""
    kept = set()
    for folder in folders:
        dotted = folder.replace("/", ".")
        if dotted in names or any(n.startswith(dotted + ".") for n in names):
            kept.add(folder)
    return kept
