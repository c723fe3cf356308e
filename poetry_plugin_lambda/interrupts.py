"""Ctrl-C at a moment that must not be cut in two: held until the moment is over.

Python raises `KeyboardInterrupt` in the main thread between any two steps, including right
after a system call has done its work and before its result is stored: a temporary renamed but
not yet known under its new name, a target dir swapped in but its ZIP not yet. The few steps
that must happen together (making a temporary, committing the outputs, removing what was
staged) run inside `held()`, which records a Ctrl-C instead and lets the caller act on it once
the steps are done. Only the main thread ever receives `KeyboardInterrupt`, so elsewhere (and
when someone else owns SIGINT) `held()` changes nothing.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType


class Held:
    """Whether a Ctrl-C came while interrupts were held."""

    def __init__(self) -> None:
        self.interrupted = False

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True

    def reraise(self) -> None:
        """Raise the Ctrl-C that was held, if one came."""
        if self.interrupted:
            raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """Hold Ctrl-C for the duration of the block; the caller decides what it means afterwards."""
    state = Held()
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield state
        return
    signal.signal(signal.SIGINT, state.record)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def never_lost() -> Iterator[None]:
    """A Ctrl-C that lands in code Python runs for itself (a weakref callback, a finalizer, such
    as an import's module-lock clean-up) is raised again in the main thread instead of being
    printed as "Exception ignored" and lost, so the run stops as it does for any other Ctrl-C."""
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            # As if SIGINT came again (`held()` records it, elsewhere it raises), once this hook
            # has returned: raised in here, it would only be reported and lost once more.
            again = threading.Timer(0.01, _thread.interrupt_main)
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def handled() -> None:
    """Tell CPython a Ctrl-C was handled, so that the process exits with the command's code.

    CPython kills itself with SIGINT at exit when a `KeyboardInterrupt` left any `exec` or
    `eval` of a string (dataclasses and namedtuples make their methods that way) even if the
    exception was caught further up; the next such `exec` that ends normally clears the mark.
    """
    exec("None")  # a constant: clears the mark, runs nothing
