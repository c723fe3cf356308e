"""The plugin loads on every `poetry` command: it must stay cheap and register the command."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.compat


def test_other_poetry_commands_do_not_import_the_command() -> None:
    from pathlib import Path

    example = Path(__file__).parents[2] / "docs" / "example" / "service"
    code = (
        "import runpy, sys\n"
        "sys.argv = ['poetry', 'check']\n"
        "try:\n    runpy.run_module('poetry', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('poetry_plugin_lambda')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=example)
    loaded = result.stdout.strip().splitlines()[-1]
    assert "'poetry_plugin_lambda.plugin'" in loaded  # the plugin is loaded...
    assert "poetry_plugin_lambda.command" not in loaded  # ...but nothing of the command
    assert "poetry_plugin_lambda.pipeline" not in loaded


def test_the_command_is_listed_with_its_description() -> None:
    result = subprocess.run([sys.executable, "-m", "poetry", "list"], capture_output=True, text=True, check=True)
    assert "lambda-bundle" in result.stdout
    assert "AWS Lambda ZIP" in result.stdout


def test_help_lists_every_option() -> None:
    from poetry_plugin_lambda.command import LambdaBundleCommand

    result = subprocess.run([sys.executable, "-m", "poetry", "lambda-bundle", "--help"],
                            capture_output=True, text=True, check=True)
    for opt in LambdaBundleCommand.options:
        assert f"--{opt.name}" in result.stdout
