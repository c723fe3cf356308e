"""The one exception type users see.

Every stage raises `BundleError` at the boundary where bad input is understood, with a message
that says what is wrong and what to do; the command prints it as one line and exits non-zero.
"""

from __future__ import annotations


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
