"""Configuration and CLI options -> one frozen `BundleSpec`; all validation of user input.

`[tool.lambda-bundle]` gives the defaults, CLI options win. Every key is validated here, so the
stages after it can trust the spec: a bad value fails before anything is downloaded or written.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable

from packaging.utils import NormalizedName
from packaging.utils import canonicalize_name

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.targets import ARCHITECTURES
from poetry_plugin_lambda.targets import DEFAULT_ARCHITECTURE
from poetry_plugin_lambda.targets import RUNTIMES
from poetry_plugin_lambda.targets import Runtime
from poetry_plugin_lambda.targets import Target

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Sequence

LAYOUTS = ("bundle", "layer", "code")
# Lambda's quota for a function and all its layers, unzipped.
DEFAULT_MAX_UNZIPPED_SIZE = 262_144_000
_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
FORMATS = ("text", "json")
CONFIG_TABLE = "tool.lambda-bundle"


@dataclass(frozen=True)
class ProjectFacts:
    """What the spec needs to know about the project, read once from Poetry."""

    root: Path
    name: str
    version: str
    allows_python: Callable[[str], bool]
    python_constraint: str
    groups: frozenset[NormalizedName]
    default_groups: frozenset[NormalizedName]
    extras: frozenset[NormalizedName]
    package_mode: bool = True


@dataclass(frozen=True)
class BundleSpec:
    """One immutable description of the bundle to build."""

    project: ProjectFacts
    target: Target
    groups: frozenset[NormalizedName]
    extras: frozenset[NormalizedName]
    layout: str
    output: Path
    target_dir: Path
    format: str = "text"
    exclude: frozenset[NormalizedName] = frozenset()
    exclude_files: tuple[str, ...] = ()
    max_unzipped_size: int = DEFAULT_MAX_UNZIPPED_SIZE
    include: tuple[str, ...] = ()
    compile: bool = False
    compile_with: Path | None = None
    handlers: tuple[str, ...] = ()
    check_layers: tuple[Path, ...] = ()
    check_with: Path | None = None
    package_mode: bool = True
    warnings: tuple[str, ...] = field(default=())

    @property
    def includes_project(self) -> bool:
        return self.layout in ("bundle", "code")

    @property
    def builds_project(self) -> bool:
        """The project's own wheel goes in (a package, in a layout that holds code)."""
        return self.includes_project and self.package_mode

    @property
    def includes_dependencies(self) -> bool:
        return self.layout in ("bundle", "layer")


# -- value checkers: each returns the clean value or raises ConfigError naming `where` ----------


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}.")
    return value.strip()


def _string_list(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}.")
    return [part.strip() for v in value for part in v.split(",") if part.strip()]


def _boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    return value


def _choice(choices: Sequence[str]) -> Callable[[str, Any], str]:
    def check(where: str, value: Any) -> str:
        text = _string(where, value)
        if text not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {text!r}.")
        return text

    return check


def _size(where: str, value: Any) -> int:
    """Bytes, as an integer or a string with a unit ("200MB", "250 MiB")."""
    import re

    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a size in bytes or a string such as \"200MB\", got {value!r}.")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ConfigError(
                f"{where} must be a size such as 262144000, \"200MB\" or \"250MiB\"; got {value!r}."
            )
        from decimal import Decimal

        size = int(Decimal(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ConfigError(f"{where} must be a size in bytes or a string such as \"200MB\", got {value!r}.")
    if size <= 0 or size > 1 << 50:
        raise ConfigError(f"{where} must be positive and at most 1 PiB, got {value!r}.")
    return size


# key in [tool.lambda-bundle] -> checker. The CLI option of the same name (long form) overrides it.
CONFIG_KEYS: dict[str, Callable[[str, Any], Any]] = {
    "runtime": _string,
    "architecture": _choice(tuple(ARCHITECTURES)),
    "output": _string,
    "target-dir": _string,
    "with": _string_list,
    "without": _string_list,
    "only": _string_list,
    "extras": _string_list,
    "all-extras": _boolean,
    "layout": _choice(LAYOUTS),
    "exclude": _string_list,
    "exclude-files": _string_list,
    "max-unzipped-size": _size,
    "include": lambda where, value: _include_list(where, value),
    "compile": _boolean,
    "compile-with": _string,
    "handler": lambda where, value: _handler_list(where, value),
    "check-layers": lambda where, value: _path_list(where, value),
    "check-with": _string,
}


# Config key -> its CLI option, where the names differ.
CLI_NAMES = {"architecture": "--arch", "handler": "--check-handler", "check-layers": "--check-layer"}

# Names users reach for (the CLI's, snake_case) -> the config key.
_ALIASES = {
    "arch": "architecture",
    "check-handler": "handler",
    "handlers": "handler",
    "check-layer": "check-layers",
    "check_layers": "check-layers",
    "check_with": "check-with",
    "target_dir": "target-dir",
    "all_extras": "all-extras",
    "exclude_files": "exclude-files",
    "max_unzipped_size": "max-unzipped-size",
    "compile_with": "compile-with",
    "group": "with",
    "groups": "with",
}


def _unwrap(value: Any) -> Any:
    """tomlkit items -> plain Python values."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def read_config(table: Any) -> dict[str, Any]:
    """Validate `[tool.lambda-bundle]`: known keys, right types. Returns the clean values."""
    if table is None:
        return {}
    table = _unwrap(table)
    if not isinstance(table, dict):
        raise ConfigError(f"[{CONFIG_TABLE}] must be a table, got {table!r}.")
    clean: dict[str, Any] = {}
    for key, value in table.items():
        checker = CONFIG_KEYS.get(key)
        if checker is None:
            close = [_ALIASES[key]] if key in _ALIASES else difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown key {key!r} in [{CONFIG_TABLE}].{hint}"
                f" Valid keys: {', '.join(CONFIG_KEYS)}."
            )
        clean[key] = checker(f"[{CONFIG_TABLE}] {key}", value)
    return clean


def resolve_runtime(name: str | None, project: ProjectFacts, where: str) -> Runtime:
    """The runtime asked for, or the only one the project's Python constraint allows."""
    if name is None:
        allowed = [r for r in RUNTIMES.values() if project.allows_python(_full(r))]
        if len(allowed) == 1:
            return allowed[0]
        names = ", ".join(r.name for r in allowed) or "none"
        raise ConfigError(
            "No Lambda runtime given, and the project's Python constraint"
            f" ({project.python_constraint}) allows {names}."
            ' Choose one with --runtime or `runtime = "python3.12"` in'
            f" [{CONFIG_TABLE}]."
        )
    runtime = RUNTIMES.get(name)
    if runtime is None:
        raise ConfigError(
            f"{where}: unknown Lambda runtime {name!r}."
            f" Supported runtimes: {', '.join(RUNTIMES)}."
        )
    if not project.allows_python(_full(runtime)):
        raise ConfigError(
            f"The project requires Python {project.python_constraint}, which excludes the"
            f" {runtime.name} runtime (Python {runtime.python_version}). Choose another runtime"
            " or widen the `python` constraint of the project."
        )
    return runtime


def _full(runtime: Runtime) -> str:
    return ".".join(str(part) for part in runtime.python)


def resolve_groups(
    project: ProjectFacts, with_: list[str], without: list[str], only: list[str]
) -> frozenset[NormalizedName]:
    """Poetry's group semantics: `only`, else the default groups plus `with` minus `without`."""
    for option, names in (("with", with_), ("without", without), ("only", only)):
        for name in names:
            if canonicalize_name(name) not in project.groups:
                raise ConfigError(
                    f"--{option} / {option}: group {name!r} is not defined in pyproject.toml."
                    f" Groups: {', '.join(sorted(project.groups))}."
                )
    if only:
        return frozenset(canonicalize_name(n) for n in only)
    chosen = set(project.default_groups) | {canonicalize_name(n) for n in with_}
    return frozenset(chosen - {canonicalize_name(n) for n in without})


def resolve_extras(
    project: ProjectFacts, extras: list[str], all_extras: bool
) -> frozenset[NormalizedName]:
    if all_extras:
        return project.extras
    chosen = frozenset(canonicalize_name(e) for e in extras)
    unknown = sorted(chosen - project.extras)
    if unknown:
        known = ", ".join(sorted(project.extras)) or "none"
        raise ConfigError(f"Extra(s) not defined by the project: {', '.join(unknown)}. Extras: {known}.")
    return chosen


def _path(value: str, base: Path, where: str = "a path") -> Path:
    if "\x00" in value:
        raise ConfigError(f"{where} must not contain a NUL character, got {value!r}.")
    path = Path(os.path.expanduser(value))
    return (path if path.is_absolute() else base / path).resolve()


def default_output(project: ProjectFacts, target: Target, layout: str) -> Path:
    suffix = "" if layout == "bundle" else f"-{layout}"
    name = f"{project.name.replace('-', '_')}-{project.version}-{target.runtime.name}-{target.architecture}{suffix}.zip"
    return project.root / "dist" / "lambda" / name


def default_target_dir(project: ProjectFacts, target: Target, layout: str) -> Path:
    suffix = "" if layout == "bundle" else f"-{layout}"
    return project.root / "build" / "lambda" / f"{target.runtime.name}-{target.architecture}{suffix}"


def build_spec(
    config_table: Any, cli: Mapping[str, Any], project: ProjectFacts, cwd: Path
) -> BundleSpec:
    """Merge config and CLI (CLI wins) into a validated spec.

    `cli` maps config key names to values; a value of None (or an empty list) means "not given".
    Relative paths from the CLI are taken from `cwd`, those from the config from the project root.
    """
    config = read_config(config_table)

    def pick(key: str) -> tuple[Any, str, Path]:
        value = cli.get(key)
        if value not in (None, [], ()):
            return value, CLI_NAMES.get(key, f"--{key}"), cwd
        return config.get(key), f"[{CONFIG_TABLE}] {key}", project.root

    runtime_name, runtime_where, _ = pick("runtime")
    runtime = resolve_runtime(runtime_name, project, runtime_where)
    arch, arch_where, _ = pick("architecture")
    arch = _choice(tuple(ARCHITECTURES))(arch_where, arch) if arch else DEFAULT_ARCHITECTURE
    layout, layout_where, _ = pick("layout")
    layout = _choice(LAYOUTS)(layout_where, layout) if layout else "bundle"
    fmt = cli.get("format") or "text"
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    target = Target(runtime, arch)

    lists = {key: _string_list(pick(key)[1], pick(key)[0] or []) for key in ("with", "without", "only")}
    groups = resolve_groups(project, lists["with"], lists["without"], lists["only"])
    extras_value, extras_where, _ = pick("extras")
    all_extras = bool(cli.get("all-extras")) or bool(config.get("all-extras", False))
    extras = resolve_extras(project, _string_list(extras_where, extras_value or []), all_extras)

    output_value, output_where, output_base = pick("output")
    output = (
        _path(output_value, output_base, output_where)
        if output_value
        else default_output(project, target, layout)
    )
    if output.suffix.lower() != ".zip":
        raise ConfigError(f"The output must be a .zip file, got {output}.")
    target_value, target_where, target_base = pick("target-dir")
    target_dir = (
        _path(target_value, target_base, target_where)
        if target_value
        else default_target_dir(project, target, layout)
    )
    exclude_value, exclude_where, _ = pick("exclude")
    exclude = frozenset(canonicalize_name(n) for n in _string_list(exclude_where, exclude_value or []))
    files_value, files_where, _ = pick("exclude-files")
    exclude_files = tuple(_string_list(files_where, files_value or []))
    size_value, size_where, _ = pick("max-unzipped-size")
    max_size = _size(size_where, size_value) if size_value is not None else DEFAULT_MAX_UNZIPPED_SIZE
    include_value, include_where, _ = pick("include")
    include = tuple(_include_list(include_where, include_value or []))
    compile_flag = bool(cli.get("compile")) or bool(config.get("compile", False))
    compile_value, compile_where, compile_base = pick("compile-with")
    compile_with = _path(compile_value, compile_base, compile_where) if compile_value else None
    handler_value, handler_where, _ = pick("handler")
    handlers = tuple(_handler_list(handler_where, handler_value)) if handler_value else ()
    layers_value, layers_where, layers_base = pick("check-layers")
    check_layers = tuple(_path(v, layers_base, layers_where) for v in _path_list(layers_where, layers_value or []))
    if handlers and layout != "layer":  # a layer is often built first: only a real check needs them
        check_layers = tuple(_layer(layers_where, path) for path in check_layers)
    check_value, check_where, check_base = pick("check-with")
    check_with = _path(check_value, check_base, check_where) if check_value else None
    _check_content(project, layout, include)
    warnings = []
    if include and layout == "layer":
        warnings.append("include is ignored by the layer layout: project files belong to the function's code.")
    return BundleSpec(
        project=project,
        target=target,
        groups=groups,
        extras=extras,
        layout=layout,
        output=output,
        target_dir=target_dir,
        format=fmt,
        exclude=exclude,
        exclude_files=exclude_files,
        max_unzipped_size=max_size,
        include=include,
        compile=compile_flag or compile_with is not None,
        compile_with=compile_with,
        handlers=handlers,
        check_layers=check_layers,
        check_with=check_with,
        package_mode=project.package_mode,
        warnings=tuple(warnings),
    )


def _include_list(where: str, value: Any) -> list[str]:
    """Like a string list, but globs may contain commas, so no splitting."""
    from poetry_plugin_lambda.includes import check_pattern

    return [check_pattern(v) for v in _path_list(where, value, "strings (glob patterns)")]


def _handler_list(where: str, value: Any) -> list[str]:
    """One handler or several (a string or a list); each must look like module.function."""
    from poetry_plugin_lambda.handler_check import check_handler_name

    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(f"{where} must be a handler (module.function) or a list of them, got {value!r}.")
    names = [check_handler_name(_string(where, v), where) for v in values]
    return list(dict.fromkeys(names))  # each handler checked once, in the order given


def _path_list(where: str, value: Any, what: str = "paths (strings)") -> list[str]:
    """Paths or globs, not split at commas (a file name may hold one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of {what}, got {value!r}.")
    return [v.strip() for v in value]


def _layer(where: str, path: Path) -> Path:
    from poetry_plugin_lambda.lambda_env import check_layer_path

    return check_layer_path(path, where)


def _check_content(project: ProjectFacts, layout: str, include: tuple[str, ...]) -> None:
    """A non-package project must name its files, or the bundle would hold no code at all."""
    if project.package_mode or layout == "layer" or any(not p.startswith("!") for p in include):
        return
    raise ConfigError(
        "This project is not a package (package-mode = false), so nothing of its own would be"
        " bundled. Name its files in [tool.lambda-bundle], e.g."
        ' `include = ["lambda_function.py", "config/*.json"]` (or --include), or use'
        " --layout layer for a dependencies-only ZIP."
    )
