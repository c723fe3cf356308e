"""Projects that are not packages, extra project files, and the handler check."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import tomlkit

from tests.e2e.helpers import bundle
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel

LAMBDA_FUNCTION = '''\
import json
import os

import alpha
import beta

HERE = os.path.dirname(__file__)


def lambda_handler(event, context):
    with open(os.path.join(HERE, "config", "settings.json")) as f:
        settings = json.load(f)
    return {"greeting": settings["greeting"], "alpha": alpha.hello(), "beta": beta.hello()}
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("nonpkg")
    root = base / "index"
    root.mkdir()
    build_wheel(root, "alpha", "1.0")
    build_wheel(root, "beta", "2.0")
    with LoopbackIndex(root) as index:
        project = write_project(base / "fn", "fn", dependencies={"alpha": "1.0", "beta": "2.0"},
                                index_url=index.url, requires_python=">=3.12,<3.13", package_mode=False)
        (project / "lambda_function.py").write_text(LAMBDA_FUNCTION)
        (project / "config").mkdir()
        (project / "config" / "settings.json").write_text('{"greeting": "hi"}\n')
        (project / "config" / "notes.txt").write_text("not shipped\n")
        (project / "app" / "tests").mkdir(parents=True)
        (project / "app" / "__init__.py").write_text("")
        (project / "app" / "logic.py").write_text("X = 1\n")
        (project / "app" / "tests" / "test_logic.py").write_text("def test(): pass\n")
        (project / "app" / "secret.py").write_text("IGNORED = True\n")
        (project / ".gitignore").write_text("app/secret.py\n")
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache}


def _configure(project: Path, **table) -> str:
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text()
    doc = tomlkit.parse(original)
    doc["tool"]["lambda-bundle"] = table
    pyproject.write_text(tomlkit.dumps(doc))
    return original


def test_non_package_project_bundles_dependencies_and_included_files(world, tmp_path: Path) -> None:
    project = world["project"]
    original = _configure(project, include=["lambda_function.py", "config/*.json"])
    try:
        result = bundle(project, world["cache"], "--format", "json", "-o", str(tmp_path / "fn.zip"))
    finally:
        (project / "pyproject.toml").write_text(original)
    assert result.returncode == 0, result.stderr
    files = zip_files(Path(result.report["zip"]))
    assert {"lambda_function.py", "config/settings.json", "alpha/__init__.py", "beta/__init__.py"} <= set(files)
    assert "config/notes.txt" not in files
    assert not [n for n in files if n.startswith("non_package_mode")]
    python = find_python("3.12")
    if python is None:
        pytest.skip("no python3.12")
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(result.report["zip"]) as zf:
        zf.extractall(unzipped)
    code = "import json, lambda_function; print(json.dumps(lambda_function.lambda_handler({}, None)))"
    out = subprocess.run([str(python), "-I", "-c", "import sys; sys.path.insert(0, '.'); " + code],
                         cwd=unzipped, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"greeting": "hi", "alpha": "alpha 1.0", "beta": "beta 2.0"}


def test_non_package_project_without_include_explains_what_to_add(world) -> None:
    result = bundle(world["project"], world["cache"])
    assert result.returncode == 1
    assert "package-mode = false" in result.stderr and "include = [" in result.stderr
    assert "--layout layer" in result.stderr
    layer = bundle(world["project"], world["cache"], "--layout", "layer", "--format", "json")
    assert layer.returncode == 0, layer.stderr


def test_globs_negation_gitignore_and_errors(world, tmp_path: Path) -> None:
    project = world["project"]
    result = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "app/**/*.py",
                    "--include", "!app/tests/*", "--format", "json", "-o", str(tmp_path / "a.zip"))
    assert result.returncode == 0, result.stderr
    files = set(zip_files(Path(result.report["zip"])))
    assert {"app/__init__.py", "app/logic.py"} <= files
    assert "app/tests/test_logic.py" not in files
    assert "app/secret.py" not in files  # git-ignored
    none = bundle(project, world["cache"], "--include", "nothing/*.sql", "-o", str(tmp_path / "b.zip"))
    assert none.returncode == 1 and "'nothing/*.sql' matches no file" in none.stderr
    outside = bundle(project, world["cache"], "--include", "../x.py", "-o", str(tmp_path / "c.zip"))
    assert outside.returncode == 1 and "inside the project" in outside.stderr


def test_include_colliding_with_a_dependency_names_both(world, tmp_path: Path) -> None:
    project = world["project"]
    (project / "alpha").mkdir(exist_ok=True)
    (project / "alpha" / "__init__.py").write_text("SHADOW = 1\n")
    try:
        result = bundle(project, world["cache"], "--include", "lambda_function.py",
                        "--include", "alpha/__init__.py", "-o", str(tmp_path / "x.zip"))
    finally:
        (project / "alpha" / "__init__.py").unlink()
        (project / "alpha").rmdir()
    assert result.returncode == 1
    assert "alpha 1.0 and fn (include) both install 'alpha/__init__.py'" in result.stderr
    assert not (tmp_path / "x.zip").exists()


@pytest.fixture
def check_args(world, tmp_path: Path) -> list[str]:
    if find_python("3.12") is None:
        pytest.skip("no python3.12 to check the handler with")
    return ["--include", "lambda_function.py", "--include", "config/*.json", "-o", str(tmp_path / "h.zip"),
            "--format", "json"]


def test_check_handler_passes_on_a_correct_bundle(world, check_args: list[str]) -> None:
    result = bundle(world["project"], world["cache"], *check_args, "--check-handler", "lambda_function.lambda_handler")
    assert result.returncode == 0, result.stderr
    assert result.report["handler_checks"][0]["status"] == "passed"


def test_check_handler_explains_a_misspelt_module_and_keeps_the_bundle(world, check_args: list[str], tmp_path: Path) -> None:
    result = bundle(world["project"], world["cache"], *check_args, "--check-handler", "lambda_functon.lambda_handler")
    assert result.returncode == 3
    check = result.report["handler_checks"][0]
    assert check["status"] == "failed"
    assert "No module 'lambda_functon' in the bundle" in check["message"]
    assert (tmp_path / "h.zip").exists()
    wrong_function = bundle(world["project"], world["cache"], *check_args, "--check-handler", "lambda_function.handler")
    assert wrong_function.returncode == 3
    assert "has no function 'handler'" in wrong_function.report["handler_checks"][0]["message"]


def test_check_handler_explains_a_missing_dependency(world, check_args: list[str]) -> None:
    result = bundle(world["project"], world["cache"], *check_args, "--exclude", "beta",
                    "--check-handler", "lambda_function.lambda_handler")
    assert result.returncode == 3
    message = result.report["handler_checks"][0]["message"]
    assert "The bundle lacks 'beta'" in message and "beta is excluded: give the layer with --check-layer, or keep it." in message


def test_check_handler_checks_a_pure_python_bundle_for_another_architecture(world, check_args: list[str]) -> None:
    result = bundle(world["project"], world["cache"], *check_args, "--arch", "arm64",
                    "--check-handler", "lambda_function.lambda_handler")
    assert result.returncode == 0, result.stderr
    assert result.report["handler_checks"][0]["status"] == "passed"


def test_bad_handler_name_is_a_config_error(world) -> None:
    result = bundle(world["project"], world["cache"], "--include", "lambda_function.py", "--check-handler", "nodot")
    assert result.returncode == 1 and "module.function" in result.stderr


def test_include_takes_folders_like_poetry_on_every_python(world, tmp_path: Path) -> None:
    """`config` and `app/**` take every file under them (they matched nothing before Python 3.13)."""
    result = bundle(world["project"], world["cache"], "--include", "lambda_function.py", "--include", "config",
                    "--include", "app/**", "--format", "json", "-o", str(tmp_path / "f.zip"))
    assert result.returncode == 0, result.stderr
    files = set(zip_files(Path(result.report["zip"])))
    assert {"config/settings.json", "config/notes.txt", "app/__init__.py", "app/logic.py",
            "app/tests/test_logic.py"} <= files
    assert "app/secret.py" not in files  # git-ignored


def test_include_refuses_a_symlink_leading_out_of_the_project(world, tmp_path: Path) -> None:
    project = world["project"]
    secret = tmp_path / "credentials.json"
    secret.write_text('{"token": "s3cr3t"}')
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "x.json").write_text("{}")
    leak = project / "config" / "leak.json"
    folder = project / "config" / "shared"
    inside = project / "config" / "alias.json"
    try:
        leak.symlink_to(secret)
        result = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "config/*.json",
                        "-o", str(tmp_path / "s.zip"))
        assert result.returncode == 1
        assert "config/leak.json" in result.stderr and str(secret) in result.stderr
        assert "outside the project" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "s.zip").exists()
        leak.unlink()
        folder.symlink_to(outside, target_is_directory=True)
        result = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "**/*.json",
                        "-o", str(tmp_path / "s.zip"))
        assert result.returncode == 1 and "config/shared" in result.stderr and str(outside) in result.stderr
        folder.unlink()
        inside.symlink_to(project / "config" / "settings.json")  # inside the project: followed
        result = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "config/*.json",
                        "-o", str(tmp_path / "s.zip"), "--format", "json")
        assert result.returncode == 0, result.stderr
        with zipfile.ZipFile(tmp_path / "s.zip") as archive:
            assert archive.read("config/alias.json") == b'{"greeting": "hi"}\n'
    finally:
        for link in (leak, folder, inside):
            if link.is_symlink():
                link.unlink()


def test_include_leaves_out_only_the_plugins_own_files(world) -> None:
    """The manifest beside the target dir, the target dir and the ZIP are ours; their neighbours are not."""
    import shutil

    project = world["project"]
    shutil.rmtree(project / "build", ignore_errors=True)  # other tests' target dirs are not this run's
    try:
        first = bundle(project, world["cache"], "--include", "lambda_function.py", "--format", "json")
        assert first.returncode == 0, first.stderr
        zip_path = Path(first.report["zip"])
        target_dir = Path(first.report["target_dir"])
        (zip_path.parent / "meta.json").write_text("{}")
        (target_dir.parent / "kept.json").write_text("{}")
        again = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "**/*.json",
                       "--format", "json")
        assert again.returncode == 0, again.stderr
        jsons = sorted(f for f in zip_files(zip_path) if f.endswith(".json") and "/" in f)
        outside_config = [f for f in jsons if not f.startswith("config/")]
        assert outside_config == [
            (target_dir.parent / "kept.json").relative_to(project).as_posix(),
            (zip_path.parent / "meta.json").relative_to(project).as_posix(),
        ]
    finally:
        shutil.rmtree(project / "build", ignore_errors=True)
        shutil.rmtree(project / "dist", ignore_errors=True)


def test_include_wildcards_work_with_the_zip_in_the_projects_parent(world) -> None:
    project = world["project"]
    output = project.parent / "fn.zip"
    try:
        result = bundle(project, world["cache"], "--include", "lambda_function.py", "--include", "**/*.json",
                        "-o", str(output), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert "config/settings.json" in zip_files(output)
    finally:
        output.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(project / "build", ignore_errors=True)


def test_include_never_picks_up_another_bundles_outputs(world) -> None:
    """A layer and a code bundle in one project, `include = ["**/*.py", "**/*.json"]`: the second
    run must not bundle the layer's target dir (or any bundle's outputs) the first run wrote."""
    import shutil

    project = world["project"]
    original = _configure(project, include=["**/*.py", "**/*.json"], runtime="python3.12",
                          bundles={"deps": {"layout": "layer"}, "fn": {"layout": "code"}})
    try:
        first = bundle(project, world["cache"], "--format", "json")
        assert first.returncode == 0, first.stderr
        zips = {b["name"]: Path(b["zip"]) for b in first.report["bundles"]}
        before = {name: path.read_bytes() for name, path in zips.items()}
        again = bundle(project, world["cache"], "--format", "json")
        assert again.returncode == 0, again.stderr
        assert {name: path.read_bytes() for name, path in zips.items()} == before
        shipped = zip_files(zips["fn"])
        assert [f for f in shipped if f.startswith(("build/", "dist/"))] == []
        assert "lambda_function.py" in shipped and "config/settings.json" in shipped
    finally:
        (project / "pyproject.toml").write_text(original)
        shutil.rmtree(project / "build", ignore_errors=True)
        shutil.rmtree(project / "dist", ignore_errors=True)
