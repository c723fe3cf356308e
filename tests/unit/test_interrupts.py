"""interrupts: Ctrl-C held over the steps that must not be cut, and the exit code it ends with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from poetry_plugin_lambda.interrupts import held


def test_held_interrupts_come_after_the_block() -> None:
    reached = False
    with held() as interrupt:
        signal.raise_signal(signal.SIGINT)
        reached = True
    assert reached and interrupt.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        interrupt.reraise()
    with held() as calm:
        pass
    calm.reraise()  # nothing came: nothing raised


def test_held_changes_nothing_off_the_main_thread() -> None:
    seen = []

    def work() -> None:
        with held() as interrupt:
            seen.append(signal.getsignal(signal.SIGINT))
        seen.append(interrupt.interrupted)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler, False]


_CAUGHT_IN_EXEC = """
import signal, sys
from poetry_plugin_lambda.interrupts import handled
try:
    exec("import signal; signal.raise_signal(signal.SIGINT)")  # as in a dataclass being made
except KeyboardInterrupt:
    if sys.argv[1] == "handled":
        handled()
sys.exit(130)
"""


@pytest.mark.parametrize("told", ["handled", "not told"])
def test_a_handled_ctrl_c_exits_with_the_commands_code(tmp_path: Path, told: str) -> None:
    """A KeyboardInterrupt that left an `exec` of a string makes CPython kill itself with SIGINT
    at exit, even once caught; `handled()` keeps the exit code the command returns. Run with
    `-m`, as `python -m poetry` runs (a script or `-c` exits before CPython looks at the mark)."""
    (tmp_path / "caught_in_exec.py").write_text(_CAUGHT_IN_EXEC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "caught_in_exec", told], check=False, capture_output=True, text=True, env=env
    )
    assert done.returncode == (130 if told == "handled" else -signal.SIGINT), done.stderr


def test_a_ctrl_c_python_would_only_print_is_raised_again(capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C landing in a weakref callback (an import's module-lock clean-up, in a run) is
    "Exception ignored" for Python: printed, and lost. Under `never_lost` it is raised again."""
    import time
    import weakref

    from poetry_plugin_lambda.interrupts import never_lost

    class Thing:
        pass

    def callback(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), never_lost():
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing  # the callback raises: Python can only report it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the Ctrl-C comes again at the next check
            time.sleep(0.001)
    assert "Exception ignored" not in capsys.readouterr().err
    assert ref() is None


def test_a_held_ctrl_c_python_would_only_print_is_held_too() -> None:
    import time
    import weakref

    from poetry_plugin_lambda.interrupts import never_lost

    class Thing:
        pass

    def callback(_: object) -> None:
        raise KeyboardInterrupt

    with never_lost(), held() as interrupt:
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        deadline = time.monotonic() + 5
        while not interrupt.interrupted and time.monotonic() < deadline:
            time.sleep(0.001)
    assert interrupt.interrupted and ref() is None
