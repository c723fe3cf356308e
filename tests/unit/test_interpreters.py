"""interpreters: where `python3.X` is looked for, and what is never run to find out."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from poetry_plugin_lambda.interpreters import candidates
from poetry_plugin_lambda.interpreters import find_interpreter

if TYPE_CHECKING:
    import pytest


def test_pyenv_shims_on_path_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shim only runs pyenv's shell script (which may fail: version not selected); pyenv's own
    versions are listed anyway, so the first real `python3.X` on PATH comes first."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pyenv = tmp_path / "pyenv"
    shims = pyenv / "shims"
    shims.mkdir(parents=True)
    shim = shims / f"python{version}"
    ran = tmp_path / "shim-ran"
    shim.write_text(f"#!/bin/sh\ntouch {ran}\nexit 127\n")
    shim.chmod(0o755)
    real = tmp_path / "bin"
    real.mkdir()
    (real / f"python{version}").symlink_to(sys.executable)
    monkeypatch.setenv("PYENV_ROOT", str(pyenv))
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), str(real)]))

    assert candidates(version)[0] == real / f"python{version}"
    assert find_interpreter(version) == real / f"python{version}"
    assert not ran.exists()
