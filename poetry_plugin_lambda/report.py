"""What a run made: sizes, hashes, packages and warnings, as text or one JSON object.

`code_sha256` is the base64 of the ZIP's sha256 digest: what Lambda's CodeSha256 and
Terraform's `source_code_hash` compare, so deploy tools can skip unchanged bundles.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from cleo.formatters.formatter import Formatter

from poetry_plugin_lambda.assemble import unzipped_size
from poetry_plugin_lambda.errors import BundleError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from poetry_plugin_lambda.assemble import Entry
    from poetry_plugin_lambda.handler_import import HandlerCheck
    from poetry_plugin_lambda.slim import SlimReport

LARGEST_SHOWN = 10
# Lambda's limit for a ZIP uploaded directly (larger ones go through S3).
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024


@dataclass(frozen=True)
class BundleReport:
    zip: Path
    target_dir: Path
    sha256: bytes
    size: int
    unzipped_size: int
    files: int
    runtime: str
    architecture: str
    layout: str
    packages: tuple[tuple[str, str], ...]
    largest: tuple[tuple[str, int], ...]
    warnings: tuple[str, ...]
    compiled_modules: int | None = None
    bytecode_size: int | None = None
    handler_checks: tuple[HandlerCheck, ...] | None = None  # None: no check was asked for
    slim: SlimReport | None = None  # what --slim removed, when it was asked for
    name: str | None = None  # the bundle's name, for a project with named bundles

    @property
    def failed_checks(self) -> tuple[HandlerCheck, ...]:
        return tuple(c for c in self.handler_checks or () if c.status == "failed")

    @property
    def failed(self) -> bool:
        return bool(self.failed_checks)

    @property
    def code_sha256(self) -> str:
        return base64.b64encode(self.sha256).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        named = {} if self.name is None else {"name": self.name}
        return {
            **named,
            "zip": str(self.zip),
            "target_dir": str(self.target_dir),
            "sha256": self.sha256.hex(),
            "code_sha256": self.code_sha256,
            "size": self.size,
            "unzipped_size": self.unzipped_size,
            "files": self.files,
            "runtime": self.runtime,
            "architecture": self.architecture,
            "layout": self.layout,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
            "largest_packages": [
                {"name": owner, "unzipped_size": size} for owner, size in self.largest
            ],
            "warnings": list(self.warnings),
            "compiled_modules": self.compiled_modules,
            "bytecode_size": self.bytecode_size,
            "handler_checks": (
                None if self.handler_checks is None else [c.to_json() for c in self.handler_checks]
            ),
            "slim": self.slim.to_json() if self.slim else None,
        }


def largest_packages(entries: Sequence[Entry], count: int = LARGEST_SHOWN) -> tuple[tuple[str, int], ...]:
    """The distributions with the most unzipped bytes, largest first."""
    sizes: dict[str, int] = defaultdict(int)
    for entry in entries:
        sizes[entry.owner] += entry.size
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ranked[:count])


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def render_text(report: BundleReport) -> list[str]:
    """The summary printed after a run, in Poetry's colour tags."""
    named = f"bundle <c1>{report.name}</>: " if report.name else ""
    lines = [
        "",
        f"<info>Built</> {named}<c1>{report.zip}</> for <c1>{report.runtime} {report.architecture}</>"
        f" ({report.layout})",
        f"  size:      {human_size(report.size)} zipped, {human_size(report.unzipped_size)}"
        f" unzipped, {report.files} files",
        f"  sha256:    {report.sha256.hex()}",
        f"  CodeSha256: {report.code_sha256}",
        f"  target dir: {report.target_dir}",
        f"  packages:  {len(report.packages)}",
    ]
    if report.largest and report.unzipped_size:
        lines.append("  largest (unzipped):")
        for owner, size in report.largest:
            share = 100 * size / report.unzipped_size
            lines.append(f"    {human_size(size):>9}  {share:5.1f}%  {owner}")
    if report.compiled_modules is not None:
        lines.append(
            f"  bytecode:  {report.compiled_modules} modules compiled,"
            f" {human_size(report.bytecode_size or 0)} added"
        )
    if report.slim is not None:
        lines += _slim_lines(report.slim)
    for check in report.handler_checks or ():
        style = {"passed": "info", "failed": "error", "skipped": "comment"}[check.status]
        lines.append(f"  handler:   <c1>{Formatter.escape(check.handler)}</> <{style}>{check.status}</>: {Formatter.escape(check.message)}")
    for warning in report.warnings:
        lines.append(f"<warning>Warning: {Formatter.escape(warning)}</>")
    return lines


def _slim_lines(slim: SlimReport, shown: int = LARGEST_SHOWN) -> list[str]:
    lines = [
        f"  slim:      {human_size(slim.removed_bytes)} removed ({slim.files_removed} files left out,"
        f" {slim.shared_objects_stripped} shared objects stripped)"
    ]
    for owner, size in slim.packages[:shown]:
        lines.append(f"    {human_size(size):>9}  {owner}")
    if len(slim.packages) > shown:
        rest = sum(size for _, size in slim.packages[shown:])
        lines.append(f"    {human_size(rest):>9}  {len(slim.packages) - shown} more packages")
    return lines


def render_many(reports: Sequence[BundleReport], failures: Sequence[tuple[str, str]]) -> list[str]:
    """One block per bundle built, one line per bundle that failed, then the total."""
    lines = [line for report in reports for line in render_text(report)]
    for name, message in failures:
        lines.append(f"<error>Bundle {Formatter.escape(name)} failed: {Formatter.escape(message)}</>")
    zipped = sum(r.size for r in reports)
    unzipped = sum(r.unzipped_size for r in reports)
    lines += [
        "",
        f"<info>{len(reports)} of {len(reports) + len(failures)} bundles built</>:"
        f" {human_size(zipped)} zipped, {human_size(unzipped)} unzipped in all",
    ]
    return lines


def check_unzipped_size(entries: Sequence[Entry], limit: int) -> None:
    """Refuse, before writing anything, a bundle Lambda would refuse at deploy time."""
    total = unzipped_size(entries)
    if total <= limit:
        return
    largest = ", ".join(f"{owner} ({human_size(size)})" for owner, size in largest_packages(entries, 5))
    raise BundleError(
        f"The bundle is {human_size(total)} ({total:,} bytes) unzipped, over the limit of"
        f" {human_size(limit)} ({limit:,} bytes). Largest packages: {largest}. Leave out what the"
        " runtime or a layer provides (--exclude), filter files (exclude-files), or raise"
        " max-unzipped-size."
    )


def size_warnings(zipped: int) -> list[str]:
    if zipped <= DIRECT_UPLOAD_LIMIT:
        return []
    return [
        f"The ZIP is {human_size(zipped)}, over Lambda's 50 MB limit for a direct upload:"
        " upload it through S3, or move dependencies to a layer (--layout layer)."
    ]
