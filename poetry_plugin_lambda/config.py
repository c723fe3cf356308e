"""`[tool.lambda-bundle]`: its keys, and each value checked and cleaned where it is read.

Every key has one checker (`CONFIG_KEYS`) that returns the clean value or raises a
`ConfigError` naming the key (or the CLI option) and what it must be. `bundles` holds named
tables that take the same keys (see `spec.build_specs`).
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.targets import ARCHITECTURES

if TYPE_CHECKING:
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
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
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
    "include": lambda where, value: _include_list(where, value),  # noqa: PLW0108 (defined below)
    "compile": _boolean,
    "compile-with": _string,
    "slim": _boolean,
    "handler": lambda where, value: _handler_list(where, value),  # noqa: PLW0108 (defined below)
    "check-layers": lambda where, value: _path_list(where, value),  # noqa: PLW0108 (defined below)
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
    # Not stripped: Lambda's Handler setting takes no whitespace, around the name or in it.
    names = [check_handler_name(v if isinstance(v, str) else _string(where, v), where) for v in values]
    return list(dict.fromkeys(names))  # each handler checked once, in the order given


def _path_list(where: str, value: Any, what: str = "paths (strings)") -> list[str]:
    """Paths or globs, not split at commas (a file name may hold one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of {what}, got {value!r}.")
    return [v.strip() for v in value]


BUNDLES_KEY = "bundles"
_BUNDLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _read_bundles(value: Any) -> dict[str, dict[str, Any]]:
    """`[tool.lambda-bundle.bundles.<name>]`: each table takes every key of the main table."""
    where = f"[{CONFIG_TABLE}.{BUNDLES_KEY}]"
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where} must hold one table per bundle, e.g. [{CONFIG_TABLE}.{BUNDLES_KEY}.api].")
    bundles = {}
    for name, table in value.items():
        if not _BUNDLE_NAME.fullmatch(name):
            raise ConfigError(
                f"Bundle name {name!r} in {where}: use letters, digits, '.', '_' and '-'"
                " (it becomes part of file names)."
            )
        bundles[name] = _read_table(table, f"{CONFIG_TABLE}.{BUNDLES_KEY}.{name}", nested=False)
    return bundles


def read_config(table: Any) -> dict[str, Any]:
    """Validate `[tool.lambda-bundle]`: known keys, right types. Returns the clean values."""
    if table is None:
        return {}
    return _read_table(table, CONFIG_TABLE, nested=True)


def _read_table(table: Any, name: str, *, nested: bool) -> dict[str, Any]:
    table = _unwrap(table)
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table, got {table!r}.")
    clean: dict[str, Any] = {}
    for key, value in table.items():
        if key == BUNDLES_KEY and nested:
            clean[key] = _read_bundles(value)
            continue
        checker = CONFIG_KEYS.get(key)
        if checker is None:
            valid = [*CONFIG_KEYS, BUNDLES_KEY] if nested else list(CONFIG_KEYS)
            close = [_ALIASES[key]] if key in _ALIASES else difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown key {key!r} in [{name}].{hint} Valid keys: {', '.join(valid)}.")
        clean[key] = checker(f"[{name}] {key}", value)
    return clean
