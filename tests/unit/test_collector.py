"""The command pauses Python's cycle collector while it bundles, and freezes it only at exit."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from poetry_plugin_lambda.command import _collector_paused


def test_the_collector_is_paused_while_bundling_and_restored_after() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with _collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _collector_paused():
        raise RuntimeError
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # a process that goes on is not frozen


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with _collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_are_frozen_when_the_process_exits() -> None:
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"  # runs after ours
        "from poetry_plugin_lambda.command import _collector_paused\n"
        "with _collector_paused():\n    pass\n"
        "with _collector_paused():\n    pass\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["frozen before exit: False", "frozen at exit: True"]
