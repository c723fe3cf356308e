"""The runtime's SDK for the handler check: boto3 and what it needs, at the lock's versions.

Lambda's Python runtimes ship boto3, botocore, s3transfer, jmespath, python-dateutil, six and
urllib3 in /var/runtime, behind the function and its layers: a function may leave them out
(`exclude = ["boto3"]`). The check puts there the versions the lock holds for the target, in any
group (boto3 is often a dev dependency), fetched like the bundle's own packages. The runtime's
exact versions cannot be known here; a module of the SDK the lock does not hold is reported as
"provided by the runtime, not checked".
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import BundleError

if TYPE_CHECKING:
    from cleo.io.io import IO
    from poetry.core.packages.package import Package
    from poetry.poetry import Poetry
    from poetry.utils.env import Env

    from poetry_plugin_lambda.fetch import Progress
    from poetry_plugin_lambda.spec import BundleSpec

# Distribution -> the top-level modules it installs.
SDK_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "boto3": ("boto3",),
    "botocore": ("botocore",),
    "s3transfer": ("s3transfer",),
    "jmespath": ("jmespath",),
    "python-dateutil": ("dateutil",),
    "six": ("six",),
    "urllib3": ("urllib3",),
}
SDK_MODULES: dict[str, str] = {m: dist for dist, modules in SDK_DISTRIBUTIONS.items() for m in modules}


@dataclass(frozen=True)
class RuntimeSdk:
    """What the check's /var/runtime holds, and which SDK modules it could not model."""

    installed: tuple[tuple[str, str], ...] = ()
    unchecked: frozenset[str] = frozenset(SDK_MODULES)  # top-level modules the lock lacks
    note: str | None = None

    def describe(self) -> str:
        if not self.installed:
            return "none in the lock"
        return "from the lock, " + ", ".join(f"{name} {version}" for name, version in self.installed)


def sdk_packages(poetry: Poetry, spec: BundleSpec, env: Env) -> list[Package]:
    """The lock's SDK packages for the target, from every group and extra of the project."""
    locked = poetry.locker.locked_repository().packages
    if not any(p.name in SDK_DISTRIBUTIONS for p in locked):
        return []
    packages = compat.packages_from_lock(poetry, env, spec.project.groups, spec.project.extras, locked)
    return sorted((p for p in packages if p.name in SDK_DISTRIBUTIONS), key=lambda p: p.name)


def install_sdk(
    poetry: Poetry, spec: BundleSpec, env: Env, io: IO, progress: Progress, dest: Path, scratch: Path
) -> RuntimeSdk:
    """Fetch the lock's SDK packages and install them into `dest` (the scratch /var/runtime).

    A failure here (offline, a lock that cannot be walked) never fails the bundle: the SDK is
    then reported as not checked.
    """
    import zipfile

    from poetry_plugin_lambda.fetch import Fetcher
    from poetry_plugin_lambda.plan import Plan
    from poetry_plugin_lambda.wheels import read_wheel
    from poetry_plugin_lambda.zipread import BrokenZip
    from poetry_plugin_lambda.zipread import parsing_zip
    from poetry_plugin_lambda.zipread import read_member

    try:
        packages = sdk_packages(poetry, spec, env)
    except Exception as error:  # the solver's own error types differ between Poetry versions
        return _not_prepared(error)
    if not packages:
        return RuntimeSdk()
    try:
        artifacts = Fetcher(poetry, spec.target, io, progress, scratch).fetch_all(Plan(tuple(packages)))
        for artifact in artifacts:
            contents = read_wheel(artifact.wheel)
            with parsing_zip(), zipfile.ZipFile(artifact.wheel) as zf:
                for member in contents.members:
                    path = dest / member.path
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(member.data if member.data is not None else read_member(zf, member.info))
    except (BundleError, OSError, BrokenZip) as error:
        shutil.rmtree(dest, ignore_errors=True)  # nothing half-installed on the check's path
        dest.mkdir(parents=True, exist_ok=True)
        return _not_prepared(error)
    have = {p.name for p in packages}
    unchecked = frozenset(m for m, dist in SDK_MODULES.items() if dist not in have)
    return RuntimeSdk(tuple((p.name, p.version.text) for p in packages), unchecked)


def _not_prepared(error: Exception) -> RuntimeSdk:
    reason = str(error).strip().rstrip(".")
    return RuntimeSdk(
        note=f"the runtime's SDK could not be prepared from the lock ({reason}): its modules are not checked."
    )
