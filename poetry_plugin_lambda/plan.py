"""The lock -> the packages the target needs.

Groups, extras and every environment marker are evaluated for the target (Linux, the runtime's
Python, the architecture), never for the machine running Poetry. Nothing is resolved against an
index: only what poetry.lock holds can be planned.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.errors import LockError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from poetry.core.packages.dependency import Dependency
    from poetry.core.packages.package import Package
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.spec import BundleSpec


@dataclass(frozen=True)
class Plan:
    """The locked packages to bundle, sorted by name; what `exclude` left out, and warnings about it."""

    packages: tuple[Package, ...]
    warnings: tuple[str, ...] = ()
    # `exclude` and what only it needed: the handler check says "excluded" when one is missing
    excluded: frozenset[str] = frozenset()
    # For each package built here from its source (a path, git or local file dependency), the
    # names its lock entry lists as requirements (its extras' too): a build that requires more
    # was edited since the lock was written (`builds`)
    listed: Mapping[str, frozenset[str]] = field(default_factory=dict)


def check_lock(poetry: Poetry) -> None:
    """A missing or stale lock would make the bundle differ from what the user reviewed."""
    try:
        locked, fresh = compat.lock_status(poetry)
    except (RuntimeError, ValueError) as error:  # Poetry's words for a lock it cannot read
        raise _unreadable_lock(" ".join(str(error).split()).rstrip(".")) from None
    if not locked:
        raise LockError(
            f"No poetry.lock in {poetry.pyproject_path.parent}. The bundle is built from the"
            " lock file: run `poetry lock` first."
        )
    if not fresh:
        raise LockError(
            "poetry.lock is out of date: pyproject.toml changed significantly since it was"
            " written. Run `poetry lock` to update it."
        )


def read_lock(poetry: Poetry) -> compat.LockedData:
    """poetry.lock parsed by Poetry; a lock it cannot parse (edited by hand, merged badly: a
    marker, version or constraint that does not parse, a file entry without its hash) is the
    user's to fix, said in one line, never a traceback."""
    try:
        lock = compat.read_lock(poetry)
    except BundleError:
        raise
    except Exception as error:  # Poetry's and poetry-core's parsers raise many types
        if isinstance(error, KeyError):
            cause = f"an entry lacks its {error} key"
        else:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            cause = (lines[0] if lines else type(error).__name__).rstrip(".")
        raise _unreadable_lock(cause) from None
    for package in lock.packages:  # what Poetry passes through as it found it
        files = package.files
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("file"), str) and isinstance(f.get("hash"), str) for f in files
        ):
            raise _unreadable_lock(f"the files of {package.pretty_name} ({package.version}) are not each a file and its hash")
    return lock


def _unreadable_lock(cause: str) -> LockError:
    return LockError(f"poetry.lock cannot be read: {cause}. Run `poetry lock` to write it again.")


def make_plan(poetry: Poetry, spec: BundleSpec, env: Env, lock: compat.LockedData | None = None) -> Plan:
    """The locked packages of `spec`'s groups and extras that apply to the target `env`.

    The caller checks the lock first (`check_lock`), before printing anything; a caller making
    several plans passes the lock, parsed once (`read_lock`).
    """
    if not spec.includes_dependencies:
        return Plan(())
    lock = lock or read_lock(poetry)
    locked = lock.packages
    try:
        packages = compat.packages_from_lock(poetry, env, spec.groups, spec.extras, locked, lock.info)
    except Exception as error:  # the solver's own error types differ between Poetry versions
        raise LockError(
            f"poetry.lock cannot satisfy the project for {spec.target.describe()}: {' '.join(str(error).split())}"
            " Run `poetry lock` and try again."
        ) from None
    # The project itself is never a locked package: a name equal to the project's (or to its
    # folder's, for a non-package project) is a real dependency and ships.
    packages = sorted(packages, key=lambda p: p.name)
    roots = _root_names(poetry, spec, env)
    # The walk above does not carry each package's requirements; the lock's own packages do.
    requires: dict[tuple[str, Any], list[Dependency]] = {(p.name, p.version): p.requires for p in locked}
    check_complete(packages, roots, dict(env.marker_env), requires, spec.target.describe(), poetry.package.name)
    listed = {str(p.name): _listed_names(p) for p in locked if p.source_type in ("directory", "git", "file")}
    if not spec.exclude:
        return Plan(tuple(packages), listed=listed)
    plan = apply_exclusions(
        packages, roots, spec.exclude, dict(env.marker_env), requires, frozenset(p.name for p in locked)
    )
    return replace(plan, listed=listed)


def _listed_names(package: Package) -> frozenset[str]:
    """The names a locked package's entry lists as its requirements, its extras' included."""
    names = {d.name for d in package.all_requires}
    names.update(d.name for deps in package.extras.values() for d in deps)
    return frozenset(names)


def _root_names(poetry: Poetry, spec: BundleSpec, env: Env) -> list[Dependency]:
    """The project's direct dependencies in the chosen groups and extras, for the target (an
    optional one only when a chosen extra names it)."""
    root = poetry.package.with_dependency_groups(list(spec.groups), only=True)
    marker_env = {**env.marker_env, "extra": set(spec.extras)}
    chosen = {dep.name for extra, deps in poetry.package.extras.items() if extra in spec.extras for dep in deps}
    return [
        dep for dep in root.all_requires
        if dep.marker.validate(marker_env) and (not dep.is_optional() or dep.name in chosen)
    ]


def check_complete(
    packages: list[Package],
    roots: list[Dependency],
    marker_env: dict[str, Any],
    requires: Mapping[tuple[str, Any], list[Dependency]],
    target: str,
    project: str = "",
) -> None:
    """Every package the project and the planned packages need on the target is planned.

    Poetry's walk of a lock skips a requirement the lock has no package for: a lock edited by
    hand, or merged badly, would make a bundle without a dependency, and no error until Lambda
    imports it. Extras asked of a package (`psycopg[binary]`) count, on the target only.
    """
    extras: dict[str, set[str]] = {}
    for dep in roots:
        extras.setdefault(dep.name, set()).update(str(e) for e in dep.extras)

    def applying(package: Package) -> list[Dependency]:
        return _applying(requires.get((package.name, package.version), []), marker_env, extras.get(package.name, set()))

    grown = True
    while grown:  # an extra asked of a package may make more of its requirements apply
        grown = False
        for dep in (d for package in packages for d in applying(package)):
            asked = {str(e) for e in dep.extras}
            if not asked <= extras.setdefault(dep.name, set()):
                extras[dep.name] |= asked
                grown = True
    planned = {p.name for p in packages}
    needed = [(dep, "the project") for dep in roots] + [(d, p.pretty_name) for p in packages for d in applying(p)]
    for dep, by in needed:
        if dep.name not in planned and dep.name != project:  # a package may need the project back
            raise LockError(
                f"poetry.lock holds no package {dep.pretty_name}, which {by} needs on {target}: the"
                " lock is incomplete (edited by hand, or merged badly). Run `poetry lock` to write it again."
            )


def apply_exclusions(
    packages: list[Package],
    root_deps: list[Dependency],
    exclude: frozenset[str],
    marker_env: dict[str, Any],
    requires: Mapping[tuple[str, Any], list[Dependency]],
    locked: frozenset[str] = frozenset(),
) -> Plan:
    """Leave out `exclude` and every package that only excluded packages need.

    Walks the dependency graph from the project's direct dependencies without entering an
    excluded package; whatever the walk does not reach is left out. A kept package that needs
    an excluded one is allowed (the runtime or a layer must provide it) and warned about.
    """
    by_name: dict[str, Package] = {p.name: p for p in packages}
    # A locked package this target does not need (a marker) is fine to name: one `exclude`
    # list then serves every runtime. Only names the lock does not know are mistakes.
    unknown = sorted(exclude - by_name.keys() - locked)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(set(by_name) | locked), n=3)
            hints.append(f"{name} (did you mean {', '.join(close)}?)" if close else name)
        raise ConfigError(
            f"Cannot exclude {'; '.join(hints)}: not a package in poetry.lock."
        )
    roots = {dep.name for dep in root_deps}
    needs: dict[str, list[Dependency]] = {p.name: requires.get((p.name, p.version), []) for p in packages}
    wanted_extras = _requested_extras(needs, root_deps)
    edges = {
        name: _needs(deps, by_name, marker_env, wanted_extras.get(name, set()))
        for name, deps in needs.items()
    }
    kept: set[str] = set()
    todo: list[str] = [name for name in roots if name in by_name and name not in exclude]
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept.add(name)
        todo.extend(n for n in edges[name] if n not in exclude and n not in kept)
    warnings = []
    for name in sorted(exclude):
        needed_by = sorted(k for k in kept if name in edges[k])
        if needed_by:
            warnings.append(
                f"{name} is excluded, but {', '.join(needed_by)} {'need' if len(needed_by) > 1 else 'needs'} it:"
                " it must come from the"
                " Lambda runtime or a layer."
            )
    return Plan(
        packages=tuple(p for p in packages if p.name in kept),
        warnings=tuple(warnings),
        excluded=frozenset(set(by_name) - kept),
    )


def _requested_extras(
    needs: Mapping[str, list[Dependency]], root_deps: list[Dependency]
) -> dict[str, set[str]]:
    """Every extra the project or a locked package asks of another (e.g. psycopg[binary])."""
    extras: dict[str, set[str]] = {}
    for dep in [*root_deps, *(d for deps in needs.values() for d in deps)]:
        extras.setdefault(dep.name, set()).update(str(e) for e in dep.extras)
    return extras


def _needs(
    deps: list[Dependency], by_name: Mapping[str, Package], marker_env: dict[str, Any], extras: set[str]
) -> set[str]:
    """The planned packages among `deps` on the target (markers and extras evaluated)."""
    return {dep.name for dep in _applying(deps, marker_env, extras) if dep.name in by_name}


def _applying(deps: list[Dependency], marker_env: dict[str, Any], extras: set[str]) -> list[Dependency]:
    """The requirements among `deps` that apply on the target, with these extras asked."""
    env = {**marker_env, "extra": extras}
    return [dep for dep in deps if dep.marker.validate(env)]
