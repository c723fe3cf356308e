"""Keep what third-party build tools print to the process's streams out of the progress lines.

An isolated build prints in-process: virtualenv logs deprecations through `logging`'s last-resort
handler, pyproject_hooks re-raises the backend's warnings (setuptools' banners) with
`warnings.warn`. Both reach `sys.stderr`/`sys.stdout` when they write, so a capture swaps those
for a proxy that sends each thread's writes to that thread's buffer while it captures, and
everything else to the real stream: builds on other threads and our own output are untouched.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from typing import TYPE_CHECKING
from typing import Any
from typing import TextIO

if TYPE_CHECKING:
    from collections.abc import Iterator

_lock = threading.Lock()
_local = threading.local()
_real: list[tuple[TextIO, TextIO]] = []  # the real (stdout, stderr) while the proxies are in place
_users = [0]  # how many threads capture now (a list: mutated, never rebound)


class _Proxy(io.TextIOBase):
    """Writes go to the current thread's capture buffer, if any, else to the real stream."""

    def __init__(self, real: TextIO) -> None:
        self._real = real  # kept: a logging handler may hold the proxy after the capture ends

    def _target(self) -> Any:
        buffer = getattr(_local, "buffer", None)
        return buffer if buffer is not None else self._real

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    """Capture what this thread prints to sys.stdout/sys.stderr (warnings, logging) meanwhile."""
    with _lock:
        if _users[0] == 0:
            _real.append((sys.stdout, sys.stderr))
            sys.stdout, sys.stderr = _Proxy(sys.stdout), _Proxy(sys.stderr)  # type: ignore[assignment,unused-ignore]
        _users[0] += 1
    buffer = io.StringIO()
    _local.buffer = buffer
    try:
        yield buffer
    finally:
        _local.buffer = None
        with _lock:
            _users[0] -= 1
            if _users[0] == 0:
                sys.stdout, sys.stderr = _real.pop()
