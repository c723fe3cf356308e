"""Poetry's JSON-schema validators kept compiled in the cache: pyproject.toml is judged exactly as
Poetry judges it, whatever the cache holds (nothing, saved validators, garbage, a flipped bit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.compat  # compat.py swaps a name in Poetry's validating modules: run on the oldest Poetry too

VALIDATE = """
import sys
from pathlib import Path
from types import SimpleNamespace
from poetry.factory import Factory
documents = [
    {"tool": {"poetry": {"name": "svc", "version": "1.0", "description": "", "authors": []}}},
    {"tool": {"poetry": {"name": "svc", "version": "1.0", "package-mode": "yes", "readme": 4}}},
    {"project": {"name": "svc", "version": 3, "dependencies": "requests"}},
    {"project": {"name": "svc", "version": "1.0"}, "tool": {"poetry": {"packages": [{"include": 5}]}}},
    {"project": {"name": "svc"}, "dependency-groups": {"dev": [1]}, "tool": {"poetry": {"extra-key": 1}}},
]
def judge():
    for document in documents:
        print(sorted(Factory.validate(document).items()))
if sys.argv[1] == "-":
    judge()
else:
    from poetry_plugin_lambda import compat
    with compat.schema_validators_kept(SimpleNamespace(project_directory=Path(sys.argv[1]))):
        judge()
    import poetry.core.json, poetry.json
    assert type(poetry.core.json.fastjsonschema).__name__ == "module"  # put back
    assert type(poetry.json.fastjsonschema).__name__ == "module"
"""


def _judge(project: Path | str, cache: Path) -> str:
    env = {**os.environ, "POETRY_CACHE_DIR": str(cache), "POETRY_CONFIG_DIR": str(cache / "_config")}
    result = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(project)], capture_output=True, text=True, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "svc"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "svc"\nversion = "1.0"\n')
    return project


def test_kept_validators_judge_as_poetry_does(tmp_path: Path) -> None:
    project, cache = _project(tmp_path), tmp_path / "cache"
    expected = _judge("-", cache)  # Poetry on its own
    assert "Additional properties are not allowed" in expected and "must be string" in expected
    folder = cache / "lambda-bundle" / "schemas"
    assert not folder.exists()
    assert _judge(project, cache) == expected  # generates them and keeps them
    kept = sorted(folder.glob("*.checked"))
    assert len(kept) >= 3  # project, tool.poetry, Poetry's own (and dependency-groups, since Poetry 2.2)
    stamps = [p.stat().st_mtime_ns for p in kept]
    assert _judge(project, cache) == expected  # reads them
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # not written again
    assert not [p for p in folder.iterdir() if p not in kept]  # no temporaries left


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped bit"])
def test_a_damaged_kept_validator_is_generated_again(tmp_path: Path, damage: str) -> None:
    project, cache = _project(tmp_path), tmp_path / "cache"
    expected = _judge(project, cache)
    for kept in (cache / "lambda-bundle" / "schemas").glob("*.checked"):
        blob = bytearray(kept.read_bytes())
        if damage == "garbage":
            blob = bytearray(b"not a code object\n" + bytes(range(256)))
        elif damage == "truncated":
            blob = blob[:100]
        else:
            blob[len(blob) // 2] ^= 0x10
        kept.write_bytes(bytes(blob))
    assert _judge(project, cache) == expected
    assert _judge(project, cache) == expected  # and the rewritten ones load


def test_a_project_with_its_own_poetry_toml_is_left_to_poetry(tmp_path: Path) -> None:
    """Its poetry.toml may move the cache dir: nothing is written where the project did not say."""
    project, cache = _project(tmp_path), tmp_path / "cache"
    (project / "poetry.toml").write_text("[virtualenvs]\nin-project = true\n")
    assert _judge(project, cache) == _judge("-", cache)
    assert not (cache / "lambda-bundle").exists()
