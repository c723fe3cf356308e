"""The lock -> the packages the target needs.

Groups, extras and every environment marker are evaluated for the target (Linux, the runtime's
Python, the architecture), never for the machine running Poetry. Nothing is resolved against an
index: only what poetry.lock holds can be planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import LockError

if TYPE_CHECKING:
    from poetry.core.packages.package import Package
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.spec import BundleSpec


@dataclass(frozen=True)
class Plan:
    """The locked packages to bundle, sorted by name."""

    packages: tuple[Package, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.packages]


def check_lock(poetry: Poetry) -> None:
    """A missing or stale lock would make the bundle differ from what the user reviewed."""
    locker = poetry.locker
    if not locker.is_locked():
        raise LockError(
            f"No poetry.lock in {poetry.pyproject_path.parent}. The bundle is built from the"
            " lock file: run `poetry lock` first."
        )
    if not locker.is_fresh():
        raise LockError(
            "poetry.lock is out of date: pyproject.toml changed significantly since it was"
            " written. Run `poetry lock` to update it."
        )


def make_plan(poetry: Poetry, spec: BundleSpec, env: Env) -> Plan:
    """The locked packages of `spec`'s groups and extras that apply to the target `env`.

    The caller checks the lock first (`check_lock`), before printing anything.
    """
    if not spec.includes_dependencies:
        return Plan(())
    try:
        packages = compat.packages_from_lock(poetry, env, spec.groups, spec.extras)
    except LockError:
        raise
    except Exception as error:  # the solver's own error types differ between Poetry versions
        raise LockError(
            f"poetry.lock cannot satisfy the project for {spec.target.describe()}: {error}"
            " Run `poetry lock` and try again."
        ) from None
    own = spec.project.name
    return Plan(tuple(sorted((p for p in packages if p.name != own), key=lambda p: p.name)))
