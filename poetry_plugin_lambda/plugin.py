"""The `poetry.application.plugin` entry point: registers `lambda-bundle`, lazily.

This module loads on every `poetry` command a user runs, so it imports nothing of its own: the
command's module is imported only when `poetry lambda-bundle` (or its help) is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetry.plugins.application_plugin import ApplicationPlugin

if TYPE_CHECKING:
    from cleo.commands.command import Command
    from poetry.console.application import Application

COMMAND_NAME = "lambda-bundle"


def _make_command() -> Command:
    from poetry_plugin_lambda.command import LambdaBundleCommand

    return LambdaBundleCommand()


class LambdaBundlePlugin(ApplicationPlugin):
    def activate(self, application: Application) -> None:
        application.command_loader.register_factory(COMMAND_NAME, _make_command)
