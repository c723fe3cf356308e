"""Configuration and CLI options -> frozen `BundleSpec`s (one per bundle); all user input checked.

`[tool.lambda-bundle]` gives the defaults, a named bundle's table overrides them, CLI options win.
Every value is validated here (each key's checker lives in `config`), so the stages after it can
trust the spec: a bad value fails before anything is downloaded or written.
"""


from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable

from packaging.utils import NormalizedName
from packaging.utils import canonicalize_name

from poetry_plugin_lambda.config import BUNDLES_KEY
from poetry_plugin_lambda.config import CLI_NAMES
from poetry_plugin_lambda.config import CONFIG_KEYS
from poetry_plugin_lambda.config import CONFIG_TABLE
from poetry_plugin_lambda.config import DEFAULT_MAX_UNZIPPED_SIZE
from poetry_plugin_lambda.config import FORMATS
from poetry_plugin_lambda.config import LAYOUTS
from poetry_plugin_lambda.config import _choice
from poetry_plugin_lambda.config import _handler_list
from poetry_plugin_lambda.config import _include_list
from poetry_plugin_lambda.config import _path_list
from poetry_plugin_lambda.config import _size
from poetry_plugin_lambda.config import _string_list
from poetry_plugin_lambda.config import read_config
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.target_dir import nested
from poetry_plugin_lambda.targets import ARCHITECTURES
from poetry_plugin_lambda.targets import DEFAULT_ARCHITECTURE
from poetry_plugin_lambda.targets import RETIRED_RUNTIMES
from poetry_plugin_lambda.targets import RUNTIMES
from poetry_plugin_lambda.targets import Runtime
from poetry_plugin_lambda.targets import Target
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MAX
from poetry_plugin_lambda.zipwriter import DOS_EPOCH_MIN

__all__ = ["CONFIG_KEYS", "CONFIG_TABLE", "BundleSpec", "ProjectFacts", "build_spec", "build_specs", "read_config"]

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Sequence

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

    name: str | None  # the bundle's name under [tool.lambda-bundle.bundles], None without bundles
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
    slim: bool = False  # --slim: the safe reductions of `slim.py`
    handlers: tuple[str, ...] = ()
    check_layers: tuple[Path, ...] = ()
    check_with: Path | None = None
    package_mode: bool = True
    epoch: int = DOS_EPOCH_MIN  # every file's timestamp (SOURCE_DATE_EPOCH)
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
    if runtime is None and name in RETIRED_RUNTIMES:
        raise ConfigError(_retired(name, project, where))
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


def _retired(name: str, project: ProjectFacts, where: str) -> str:
    """Name the nearest runtime Lambda still supports: the oldest, or the oldest the project allows."""
    allowed = [r for r in RUNTIMES.values() if project.allows_python(_full(r))]
    nearest = (allowed or list(RUNTIMES.values()))[0]
    widen = "" if allowed else f", and let the project's Python constraint ({project.python_constraint}) allow it"
    return (
        f"{where}: the {name} runtime is retired: AWS Lambda deprecated it on"
        f" {RETIRED_RUNTIMES[name]} (no more security patches, and Lambda blocks creating and"
        f" then updating functions on it), so bundles are not built for it."
        f" The nearest supported runtime is {nearest.name}: use --runtime {nearest.name}"
        f' (or `runtime = "{nearest.name}"` in [{CONFIG_TABLE}]){widen}.'
        f" Supported runtimes: {', '.join(RUNTIMES)}."
    )


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


def _absolute(value: str, base: Path, where: str) -> Path:
    if "\x00" in value:
        raise ConfigError(f"{where} must not contain a NUL character, got {value!r}.")
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _path(value: str, base: Path, where: str = "a path") -> Path:
    return _absolute(value, base, where).resolve()


def _output_path(value: str, base: Path, where: str) -> Path:
    return _folder_resolved(_absolute(value, base, where))


def _folder_resolved(path: Path) -> Path:
    """An output's path with its folder resolved but not its own name: an output that is a
    symlink stays one, for the output checks to refuse (resolved, it would be followed), and
    every output is spelled the same way, for the checks that compare them."""
    if path.name in ("", ".."):  # `/`, or a path ending in `..`: not a link of its own
        return path.resolve()
    return path.parent.resolve() / path.name


def default_output(project: ProjectFacts, target: Target, layout: str, bundle: str | None = None) -> Path:
    """dist/lambda/<name>-<version>[-<bundle>]-<runtime>-<arch>[-<layout>].zip"""
    middle = f"-{bundle}" if bundle else ""
    suffix = "" if layout == "bundle" or bundle else f"-{layout}"
    stem = f"{project.name.replace('-', '_')}-{project.version}{middle}-{target.runtime.name}-{target.architecture}"
    return project.root / "dist" / "lambda" / f"{stem}{suffix}.zip"


def default_target_dir(project: ProjectFacts, target: Target, layout: str, bundle: str | None = None) -> Path:
    """build/lambda/[<bundle>-]<runtime>-<arch>[-<layout>]"""
    prefix = f"{bundle}-" if bundle else ""
    suffix = "" if layout == "bundle" or bundle else f"-{layout}"
    return project.root / "build" / "lambda" / f"{prefix}{target.runtime.name}-{target.architecture}{suffix}"


def source_epoch(environ: Mapping[str, str]) -> int:
    """Every entry's timestamp: SOURCE_DATE_EPOCH when set, else 1980-01-01 (ZIP's earliest).

    Earlier times are raised to 1980 (what ZIP and poetry-core do); times after 2107, which no
    ZIP can store, are refused here, before any build fails on them.
    """
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value.strip() == "":
        return DOS_EPOCH_MIN
    try:
        epoch = int(value)
    except ValueError:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got {value!r}."
        ) from None
    if epoch > DOS_EPOCH_MAX:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH={value} is after 2107-12-31, the latest time a ZIP or a wheel can"
            " store. Set it to an earlier time (e.g. `git log -1 --format=%ct`) or unset it."
        )
    return max(epoch, DOS_EPOCH_MIN)


def build_specs(
    config_table: Any,
    cli: Mapping[str, Any],
    project: ProjectFacts,
    cwd: Path,
    environ: Mapping[str, str] | None = None,
    selected: Sequence[str] = (),
) -> list[BundleSpec]:
    """One spec per bundle to build: the named bundles of the config (all, or `selected`), else one.

    Each `[tool.lambda-bundle.bundles.<name>]` table overrides the main table's keys; the CLI
    overrides both, for every selected bundle.
    """
    config = read_config(config_table)
    epoch = source_epoch(os.environ if environ is None else environ)
    bundles: dict[str, dict[str, Any]] = config.pop(BUNDLES_KEY, {})
    if not bundles:
        if selected:
            raise ConfigError(
                f"--bundle needs named bundles, and this project defines none: add tables such as"
                f" [{CONFIG_TABLE}.{BUNDLES_KEY}.api] to pyproject.toml, or leave out --bundle."
            )
        return [_spec(config, cli, project, cwd, epoch, None)]
    unknown = [name for name in selected if name not in bundles]
    if unknown:
        raise ConfigError(
            f"No bundle named {', '.join(map(repr, unknown))} in [{CONFIG_TABLE}.{BUNDLES_KEY}]."
            f" Defined bundles: {', '.join(bundles)}."
        )
    names = list(dict.fromkeys(selected)) or list(bundles)
    # A bundle of this project may serve as another's check layer (`check-layers = ["deps"]`):
    # its name stands for its ZIP, which this run writes before any handler is checked.
    # Only the bundles named so are specified for it (a broken bundle nobody names stays unread).
    named = {
        layer
        for name in names
        for layer in _path_list("check-layers", cli.get("check-layers") or bundles[name].get("check-layers", config.get("check-layers")) or [])
        if layer in bundles
    }
    unchecked = dict.fromkeys(("handler", "check-layers", "check-with"))
    siblings = {
        name: _spec({**config, **bundles[name], **unchecked}, {**cli, **unchecked}, project, cwd, epoch, name).output
        for name in named
    }
    specs = [_spec({**config, **bundles[name]}, cli, project, cwd, epoch, name, siblings) for name in names]
    _check_distinct_outputs(specs)
    return specs


def build_spec(
    config_table: Any,
    cli: Mapping[str, Any],
    project: ProjectFacts,
    cwd: Path,
    environ: Mapping[str, str] | None = None,
) -> BundleSpec:
    """The one spec of a project without named bundles."""
    specs = build_specs(config_table, cli, project, cwd, environ)
    if len(specs) != 1:
        raise ConfigError("This project defines several bundles: choose one with --bundle.")
    return specs[0]


def _check_distinct_outputs(specs: Sequence[BundleSpec]) -> None:
    """Two bundles writing the same ZIP or target dir, or one writing inside the other's target
    dir, would destroy each other's outputs: a run replaces its target dir whole. Paths are
    compared case-folded: bundles `api` and `API` write the same files on macOS's and Windows'
    case-insensitive file systems."""
    for spec in specs:
        for other in specs:
            if other is spec:
                continue
            if _folded(spec.output) == _folded(other.output):
                raise ConfigError(_shared_output(spec, other, "ZIP", spec.output))
            for what, path in (("ZIP", spec.output), ("target dir", spec.target_dir)):
                if _folded(path) == _folded(other.target_dir):
                    raise ConfigError(_shared_output(spec, other, what, path))
                if nested(_folded(path), _folded(other.target_dir)):  # (a target dir around another's: its turn comes)
                    raise ConfigError(
                        f"Bundle {spec.name!r} would write its {what} {path} inside the target dir of"
                        f" bundle {other.name!r} ({other.target_dir}), and a run replaces its"
                        " target dir whole. Give each bundle `output` and `target-dir` paths of their own,"
                        " outside every bundle's target dir."
                    )


def _folded(path: Path) -> Path:
    return Path(str(path).casefold())


def _shared_output(spec: BundleSpec, other: BundleSpec, what: str, path: Path) -> str:
    return (
        f"Bundles {other.name!r} and {spec.name!r} would both write the {what} {path}."
        " Give each bundle its own `output` and `target-dir` (or leave them to the"
        " defaults, which include the bundle's name); --output and --target-dir apply"
        " to every selected bundle, so use them with one --bundle."
    )


def _spec(
    config: Mapping[str, Any],
    cli: Mapping[str, Any],
    project: ProjectFacts,
    cwd: Path,
    epoch: int,
    name: str | None,
    siblings: Mapping[str, Path] | None = None,
) -> BundleSpec:
    """Merge config and CLI (CLI wins) into a validated spec.

    `cli` maps config key names to values; a value of None (or an empty list) means "not given".
    Relative paths from the CLI are taken from `cwd`, those from the config from the project root.
    """
    table = CONFIG_TABLE if name is None else f"{CONFIG_TABLE}.{BUNDLES_KEY}.{name}"

    def pick(key: str) -> tuple[Any, str, Path]:
        value = cli.get(key)
        if value not in (None, [], ()):
            where = CLI_NAMES.get(key, f"--{key}")
            if value == "" or (isinstance(value, (list, tuple)) and "" in value):
                raise ConfigError(f"{where} was given an empty value: give one, or leave the option out.")
            return value, where, cwd
        return config.get(key), f"[{table}] {key}", project.root

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
        _output_path(output_value, output_base, output_where)
        if output_value
        else _folder_resolved(default_output(project, target, layout, name))
    )
    if output.suffix.lower() != ".zip":
        raise ConfigError(f"The output must be a .zip file, got {output}.")
    target_value, target_where, target_base = pick("target-dir")
    target_dir = (
        _output_path(target_value, target_base, target_where)
        if target_value
        else _folder_resolved(default_target_dir(project, target, layout, name))
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
    slim_flag = bool(cli.get("slim")) or bool(config.get("slim", False))
    handler_value, handler_where, _ = pick("handler")
    handlers = tuple(_handler_list(handler_where, handler_value)) if handler_value else ()
    layers_value, layers_where, layers_base = pick("check-layers")
    siblings = siblings or {}
    check_layers = tuple(
        siblings[v] if v in siblings else _layer(layers_where, _path(v, layers_base, layers_where), bool(handlers) and layout != "layer")
        for v in _path_list(layers_where, layers_value or [])
    )
    check_value, check_where, check_base = pick("check-with")
    check_with = _path(check_value, check_base, check_where) if check_value else None
    _check_content(project, layout, include)
    warnings = []
    if include and layout == "layer":
        warnings.append("include is ignored by the layer layout: project files belong to the function's code.")
    return BundleSpec(
        name=name,
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
        slim=slim_flag,
        handlers=handlers,
        check_layers=check_layers,
        check_with=check_with,
        package_mode=project.package_mode,
        epoch=epoch,
        warnings=tuple(warnings),
    )


def _layer(where: str, path: Path, checked: bool) -> Path:
    """A check layer's path; it must exist only when a handler will be checked with it (a layer
    is often built in a run of its own, before its function)."""
    if not checked:
        return path
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
