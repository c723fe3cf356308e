"""Advice where poetry-core and the build tools leave the user alone: a missing package folder,
and the build tools' banners kept out of the progress lines."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest

from poetry_plugin_lambda import compat
from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.quiet import captured
from tests.fixtures.noisy import noisy_source

pytestmark = pytest.mark.compat  # compat.py's reading of Poetry's builders: run on the oldest Poetry too

BUILD = """
import sys
from pathlib import Path
from poetry.config.config import Config
from poetry.repositories import RepositoryPool
from poetry_plugin_lambda import compat

source, out, verbose = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
log = (lambda text: Path(sys.argv[4]).write_text(text)) if verbose else None
print("built", compat.build_isolated(RepositoryPool(config=Config.create()), source, out, log=log).name)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_isolated_build_keeps_banners_out_of_the_console(tmp_path: Path, verbose: bool) -> None:
    """As under `poetry lambda-bundle`: a fresh process whose warnings and logging reach stderr."""
    import os
    import subprocess

    source = noisy_source(tmp_path / "noisy")
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "verbose.log"
    env = {**os.environ, "POETRY_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(source), str(out), "1" if verbose else "0", str(log)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "built noisy-1.0-py3-none-any.whl\n"
    assert "BANNER" not in result.stderr and "DEPRECATION" not in result.stderr, result.stderr
    if verbose:
        assert "BANNER as a warning" in log.read_text()  # shown with -v


def test_capture_is_per_thread_and_restores_the_streams() -> None:
    real = sys.stdout, sys.stderr
    other: list[str] = []

    def elsewhere() -> None:
        other.append(str(sys.stderr.write("")))  # another thread writes to the real stream meanwhile

    with captured() as mine:
        print("mine", file=sys.stderr)
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert mine.getvalue() == "mine\n"
    assert (sys.stdout, sys.stderr) == real and other == ["0"]


def test_a_package_project_without_its_package_folder_is_told_what_to_write(tmp_path: Path) -> None:
    from poetry.factory import Factory

    project = tmp_path / "fn"
    project.mkdir()
    (project / "pyproject.toml").write_text(textwrap.dedent('''\
        [project]
        name = "my-fn"
        version = "1.0"
        requires-python = ">=3.9"

        [build-system]
        requires = ["poetry-core>=2"]
        build-backend = "poetry.core.masonry.api"
    '''))
    (project / "lambda_function.py").write_text("def handler(e, c): return 1\n")
    poetry = Factory().create_poetry(project)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BundleError) as error:
        compat.build_project_wheel(poetry, out)
    message = str(error.value)
    assert "my-fn" in message and "my_fn" in message and str(project) in message
    assert 'packages = [{ include = "your_package" }]' in message
    assert "package-mode = false" in message and 'include = ["lambda_function.py"]' in message
    with pytest.raises(BundleError) as as_dependency:
        compat.build_wheel_of(project, out)
    assert "packages = [" in str(as_dependency.value) and "package-mode" not in str(as_dependency.value)


def test_packages_naming_a_missing_folder_is_told_what_to_correct(tmp_path: Path) -> None:
    from poetry.factory import Factory

    project = tmp_path / "fn"
    project.mkdir()
    (project / "pyproject.toml").write_text(textwrap.dedent('''\
        [tool.poetry]
        name = "fn"
        version = "1.0"
        description = ""
        authors = []
        packages = [{ include = "app", from = "src" }]

        [build-system]
        requires = ["poetry-core>=2"]
        build-backend = "poetry.core.masonry.api"
    '''))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BundleError) as error:
        compat.build_project_wheel(Factory().create_poetry(project), out)
    message = str(error.value)
    assert str(project / "src" / "app") in message and "Correct its `include`" in message
    assert "package-mode = false" in message
