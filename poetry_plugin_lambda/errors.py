"""The one exception type users see.

Every stage raises `BundleError` at the boundary where bad input is understood, with a message
that says what is wrong and what to do; the command prints it as one line and exits non-zero.
"""

from __future__ import annotations

import errno


class BundleError(Exception):
    """A failure the user can act on; `str(error)` is the whole message."""

    exit_code = 1


class ConfigError(BundleError):
    """Bad `[tool.lambda-bundle]` configuration or CLI option."""


class LockError(BundleError):
    """poetry.lock is missing, stale, or does not fit the request."""


class FetchError(BundleError):
    """An artifact could not be chosen, downloaded, built or verified."""


class WheelError(BundleError):
    """A wheel is malformed or hostile."""


class OutputError(BundleError):
    """The outputs cannot be written where asked, safely."""


_OS_ADVICE = {
    errno.ENOSPC: "The disk is full: free some space and run again.",
    errno.EDQUOT: "The disk quota is used up: free some space and run again.",
    errno.EFBIG: "The file is larger than this process may write (`ulimit -f`).",
    errno.ENAMETOOLONG: "A file name or path is too long: choose a shorter --output or --target-dir.",
    errno.EROFS: "The file system is read-only: choose --output and --target-dir on a writable one.",
    errno.EACCES: "Check that the folder is writable by you.",
    errno.EPERM: "The operation is not permitted there (permissions, or an immutable folder: `lsattr`).",
    errno.ENOTDIR: "A part of the path is a file, not a folder.",
    errno.ELOOP: "The path goes through a symlink loop.",
}


def os_error(error: OSError, action: str) -> OutputError:
    """The operating system's refusal, said with the path it concerns and what to do."""
    reason = error.strerror or type(error).__name__
    where = f" ({error.filename})" if error.filename else ""
    advice = _OS_ADVICE.get(error.errno or 0, "Check the path, its permissions and the free disk space.")
    return OutputError(f"Could not {action}: {reason}{where}. {advice}")
