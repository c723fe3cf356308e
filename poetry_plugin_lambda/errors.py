"""The one exception type users see.

Every stage raises `BundleError` at the boundary where bad input is understood, with a message
that says what is wrong and what to do; the command prints it as one line and exits non-zero.
Also owns the helpers that word messages, and the one redaction of credentials in URLs.
"""

from __future__ import annotations

import contextlib
import errno
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Iterator


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


class Interrupted(BundleError):
    """Ctrl-C after the outputs were put in place: they are the new ones; what came after was not done."""

    exit_code = 130

    def __init__(self, unfinished: str) -> None:
        super().__init__(
            f"Interrupted after the outputs were written: the new ZIP and target dir are in place; {unfinished}."
        )


_OS_ADVICE = {
    errno.ENOSPC: "The disk is full: free some space and run again.",
    errno.EDQUOT: "The disk quota is used up: free some space and run again.",
    errno.EFBIG: "The file is larger than this process may write (`ulimit -f`).",
    errno.ENAMETOOLONG: (
        "A file name or path is too long: choose a shorter --output or --target-dir, or, if one"
        " file's own name is over the file system's limit (255 bytes), leave it out with exclude-files."
    ),
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


def unwritable_entry(path: str, owner: str, error: Exception) -> OutputError:
    """A file of the bundle that the ZIP cannot hold (its name, its size, a bad source member)."""
    return OutputError(f"Cannot write {path!r} of {owner}: {error}")


# Messages -----------------------------------------------------------------------------------
# One redaction for the whole code base: every URL a message or the bundle carries goes through
# `redact_url` (a URL) or `redact` (free text, e.g. an error from git or the network layer).

# User information ends at the host's last @, as Poetry, requests and urllib read a URL: a
# password may hold an @ (or a # or ?) that was not percent-encoded.
_USERINFO = re.compile(r"(?<=://)[^/\s]*@")
# A host given without its scheme (`user:password@host`, as Poetry's network errors and debug
# lines quote one): a word with a colon, then up to the last @ that a host name follows.
_BARE_USERINFO = re.compile(r"(?<![^\s'\"(\[<,=])[^\s/@:'\"<>()\[\],]+:[^\s/'\"<>()\[\],]*@(?=[\w\[])")
# A token passed in a URL's query (`?private_token=...`, `X-Amz-Signature=...`): the value of a
# parameter one of whose words (split at - _ .) names a secret.
_QUERY_SECRET = re.compile(
    r"(?<=[?&])((?:[^=&#\s'\"<>]*[-_.])?"
    r"(?:token|secret|password|passwd|pwd|key|apikey|sig|signature|credential|auth|authorization)"
    r"(?:[-_.][^=&#\s'\"<>]*)?=)[^&#\s'\"<>]+",
    re.IGNORECASE,
)
_SHORTEST_SECRET = 6  # shorter strings are too common to hide wherever they appear
_secrets: set[str] = set()  # passwords and tokens this run knows of (`hide`)


def redact_url(url: str) -> str:
    """`url` without its user information (`user:token@`, up to the host's last @) and with the
    value of a query parameter that names a secret hidden; everything else is kept."""
    url = _USERINFO.sub("", url, count=1)
    return _QUERY_SECRET.sub(r"\1***", url) if "?" in url else url


def redact(text: str) -> str:
    """Free text with the user information of every URL (or `user:password@host`) in it removed,
    every password or token the run knows of (`hide`) and the value of every query parameter
    named like a token, key, signature or password replaced with `***`."""
    for secret in _secrets:  # first: a password holding an @ is whole only before the URL rules
        if secret in text:
            text = text.replace(secret, "***")
    text = _BARE_USERINFO.sub("", _USERINFO.sub("", text))
    return _QUERY_SECRET.sub(r"\1***", text) if "?" in text else text  # a query follows a ?


def holds_secret(text: str) -> bool:
    """Whether `text` holds a password or token the run knows of (`hide`)."""
    return any(secret in text for secret in _secrets)


def redactable(text: str) -> bool:
    """Whether `redact` could change `text`: it holds a password or token the run knows of, an
    `@` (the user information rules need one) or a query parameter naming a secret."""
    return "@" in text or holds_secret(text) or ("?" in text and _QUERY_SECRET.search(text) is not None)


def hide(secrets: Iterable[str]) -> None:
    """Have `redact` also hide these passwords and tokens wherever they appear: a token given as
    a URL's user name (`https://TOKEN@host`) reaches some messages as `TOKEN@host`."""
    _secrets.update(s for s in secrets if len(s) >= _SHORTEST_SECRET)


@contextlib.contextmanager
def secrets_hidden() -> Iterator[None]:
    """The secrets `hide` is given while this runs are forgotten after it."""
    try:
        yield
    finally:
        _secrets.clear()


def first_line(error: BaseException) -> str:
    """The line of a (build) error that says what went wrong, redacted, without console markup."""
    return cause_line(str(error)) or type(error).__name__


def cause_line(text: str) -> str:
    """The line of an error's (or a build's) output that says what went wrong, redacted.

    In order: a compiler's or CMake's error (the first: what follows is its fallout), the last
    Python exception raised (not the `CalledProcessError` that only says a command failed), the
    last `error:` line (setuptools, pip), Poetry's summary before a log, else the last line.
    """
    text = re.sub(r"</?[a-z0-9=;_,]*>", "", text).strip()
    lines = [line.strip(" |") for line in text.splitlines() if line.strip(" |")]
    if not lines:
        return ""
    for index, line in enumerate(lines):
        if "fatal error:" in line or line.startswith("CMake Error"):
            return redact(" ".join(lines[index : index + 2]) if line.endswith(":") else line)
    raised = [
        line for line in lines
        if re.match(r"^[\w.]+(Error|Exception):", line) and "CalledProcessError" not in line
    ]
    if raised:
        return redact(raised[-1])
    said = [line for line in lines if re.match(r"^(error|ERROR)\b", line)]
    if said:
        return redact(said[-1])
    if "Output:" in lines[1:]:  # Poetry's "Failed to install X.\n\nOutput:\n<the log>"
        return redact(" ".join(lines[: lines.index("Output:")]))
    return redact(lines[-1])


def env_name(source: str) -> str:
    """A source's name as Poetry spells it in environment variables (POETRY_HTTP_BASIC_<NAME>_...)."""
    return re.sub(r"[^A-Z0-9]", "_", source.upper())


_LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def download_failure(label: str, error: Exception, url: str | None = None) -> str:
    """A download or index error, said so that the user knows what to fix (no credentials).

    A local file system's refusal (a full disk, a read-only or unwritable cache) is said as one,
    with or without a file name (a failed write has none), not as a network failure."""
    if isinstance(error, OSError) and (error.filename or error.errno in _LOCAL_ERRNOS):
        where = f" ({error.filename})" if error.filename else ""
        return (
            f"Could not store {label} in Poetry's cache: {error.strerror or error}{where}. Check the free"
            " space and the permissions of Poetry's cache dir (`poetry config cache-dir`), or point"
            " POETRY_CACHE_DIR at another folder."
        )
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if url is None:
        url = str(getattr(response, "url", "") or "")
    where = redact_url(url) if url else "its source"
    if status in (401, 403):
        return (
            f"Could not download {label} from {where}: the index answered {status}"
            " (credentials missing or refused). Configure them with"
            " `poetry config http-basic.<source> <user> <password>` or"
            " POETRY_HTTP_BASIC_<SOURCE>_USERNAME/PASSWORD."
        )
    if status is not None:
        return f"Could not download {label} from {where}: the index answered {status}."
    reason = first_line(error)[:200].rstrip(".")
    return (
        f"Could not download {label} from {where}: {reason}."
        " Check your network, proxy settings and the source's URL."
    )
