"""spec -> plan -> fetch -> assemble -> emit: the whole bundle in one readable function."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.assemble import assemble
from poetry_plugin_lambda.assemble import file_filter
from poetry_plugin_lambda.assemble import unzipped_size
from poetry_plugin_lambda.emit import check_outputs
from poetry_plugin_lambda.emit import source_epoch
from poetry_plugin_lambda.emit import write_target_dir
from poetry_plugin_lambda.emit import write_zip
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.fetch import Fetcher
from poetry_plugin_lambda.plan import check_lock
from poetry_plugin_lambda.plan import make_plan
from poetry_plugin_lambda.report import BundleReport
from poetry_plugin_lambda.report import check_unzipped_size
from poetry_plugin_lambda.report import largest_packages
from poetry_plugin_lambda.report import size_warnings
from poetry_plugin_lambda.targets import marker_environment
from poetry_plugin_lambda.targets import supported_tags
from poetry_plugin_lambda.wheels import read_wheel

if TYPE_CHECKING:
    from cleo.io.io import IO
    from poetry.poetry import Poetry

    from poetry_plugin_lambda.fetch import Progress
    from poetry_plugin_lambda.spec import BundleSpec


def bundle(poetry: Poetry, spec: BundleSpec, io: IO, progress: Progress) -> BundleReport:
    """Build the bundle `spec` describes and return what was written."""
    target = spec.target
    check_outputs(spec.output, spec.target_dir, spec.project.root)
    env = compat.target_env(
        marker_environment(target), list(supported_tags(target)), target.runtime.python
    )

    check_lock(poetry)

    progress.line(f"Bundling for <c1>{target.describe()}</> from the lock file")
    plan = make_plan(poetry, spec, env)
    with tempfile.TemporaryDirectory(prefix="lambda-bundle-") as scratch:
        artifacts = Fetcher(poetry, env, target, io, progress, Path(scratch)).fetch_all(plan)
        wheels = [a.wheel for a in artifacts]
        if spec.includes_project:
            if not compat.project_is_package(poetry):
                raise BundleError(
                    "This project is not a package (package-mode = false), so it has no code"
                    " to bundle. Use --layout layer for a dependencies-only ZIP."
                )
            progress.line(f"  - Building <c1>{spec.project.name} ({spec.project.version})</>")
            wheels.append(compat.build_project_wheel(poetry, Path(scratch)))

        progress.line("  - Assembling")
        prefix = "python/" if spec.layout == "layer" else ""
        drop = file_filter(spec.exclude_files, prefix)
        entries = assemble((read_wheel(w, drop) for w in wheels), prefix)
        check_unzipped_size(entries, spec.max_unzipped_size)

        progress.line(f"  - Writing <c1>{spec.target_dir}</>")
        write_target_dir(entries, spec.target_dir)
        progress.line(f"  - Writing <c1>{spec.output}</>")
        result = write_zip(entries, spec.output, source_epoch(os.environ))

    warnings = [*spec.warnings, *plan.warnings, *size_warnings(result.size)]
    packages = [(a.name, a.version) for a in artifacts]
    if spec.includes_project:
        packages.append((spec.project.name, spec.project.version))
    return BundleReport(
        zip=result.path,
        target_dir=spec.target_dir,
        sha256=result.sha256,
        size=result.size,
        unzipped_size=unzipped_size(entries),
        files=len(entries),
        runtime=target.runtime.name,
        architecture=target.architecture,
        layout=spec.layout,
        packages=tuple(sorted(packages)),
        largest=largest_packages(entries),
        warnings=tuple(warnings),
    )
