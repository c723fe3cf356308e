"""The outputs' guarantees through the real command (issue: trust at the edges).

Each test breaks one promise of docs/design.md's "Guarantees" on the version before it was
kept: the ZIP and the target dir always agree, a target dir shares no inode with anything, a
symlink in a target dir is never followed, OS errors are explained (even with -q), a timestamp
no ZIP can hold is refused before any build, and a killed run's temporaries are cleaned.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import Bundled
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.limits import file_size_limit
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel

RUNTIME = ("--runtime", "python3.12")
MEMBER_SIZE = 1_000_000  # three random members: the ZIP is ~3 MB, no single file over 1 MB


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("trust-outputs")
    index_root = base / "index"
    index_root.mkdir()
    noise = random.Random(13)
    build_wheel(index_root, "blobs", "1.0", files={
        "blobs/__init__.py": "", **{f"blobs/part{i}.bin": noise.randbytes(MEMBER_SIZE) for i in range(3)},
    })
    build_wheel(index_root, "requests", "2.32.3", files={"requests/__init__.py": "VERSION = '2.32.3'\n"})
    with LoopbackIndex(index_root) as index:
        cache = base / "cache"
        cache.mkdir()
        for name in ("alpha", "beta"):
            project = write_project(base / name, name, dependencies={"blobs": "1.0", "requests": "2.32.3"},
                                    index_url=index.url, requires_python=">=3.12,<3.13")
            poetry_lock(project, cache)
        yield {"base": base, "cache": cache, "index": index}


@pytest.fixture
def alpha(world: dict, tmp_path: Path) -> Path:
    """A private copy of the locked project `alpha`, never bundled yet (a fresh clone)."""
    shutil.copytree(world["base"] / "alpha", tmp_path / "alpha")
    return tmp_path / "alpha"


def _ok(result: Bundled) -> Bundled:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _clean_failure(result: Bundled, *needles: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    assert "Traceback" not in text and "Errno" not in text, text
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


def _outputs(project: Path) -> tuple[Path, Path]:
    """The default ZIP and target dir of a bundled project."""
    zips = sorted((project / "dist" / "lambda").glob("*.zip"))
    assert len(zips) == 1
    return zips[0], project / "build" / "lambda" / "python3.12-x86_64"


def _snapshot(*roots: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]) if root.exists() else []:
            found[str(path)] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


# -- 1. the ZIP and the target dir never disagree ------------------------------------------------


def test_failed_zip_write_leaves_both_outputs_as_they_were(world: dict, alpha: Path) -> None:
    _ok(bundle(alpha, world["cache"], *RUNTIME))
    zip_path, target = _outputs(alpha)
    (alpha / "alpha" / "handler.py").write_text("def handler(event, context):\n    return 2\n")
    before = _snapshot(zip_path.parent, target.parent)
    with file_size_limit(2_000_000):  # every file fits; the ~3 MB ZIP does not
        result = bundle(alpha, world["cache"], *RUNTIME)
    _clean_failure(result, str(zip_path.parent), "File too large")
    assert _snapshot(zip_path.parent, target.parent) == before
    assert dir_files(target) == zip_files(zip_path)


def test_immutable_output_folder_leaves_both_outputs_as_they_were(world: dict, alpha: Path) -> None:
    _ok(bundle(alpha, world["cache"], *RUNTIME))
    zip_path, target = _outputs(alpha)
    (alpha / "alpha" / "handler.py").write_text("def handler(event, context):\n    return 3\n")
    before = _snapshot(zip_path.parent, target.parent)
    if subprocess.run(["chattr", "+i", str(zip_path.parent)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not available on this file system")
    try:
        result = bundle(alpha, world["cache"], *RUNTIME, "-q")
    finally:
        subprocess.run(["chattr", "-i", str(zip_path.parent)], check=True)
    _clean_failure(result, str(zip_path.parent), "not permitted")
    assert _snapshot(zip_path.parent, target.parent) == before


# -- 2. a target dir shares no inode with the cache or another target dir -----------------------


def test_writing_into_a_target_dir_changes_nothing_else(world: dict, tmp_path: Path) -> None:
    projects = {}
    for name in ("alpha", "beta"):
        shutil.copytree(world["base"] / name, tmp_path / name)
        projects[name] = tmp_path / name
        _ok(bundle(projects[name], world["cache"], *RUNTIME))
    cache_before = _snapshot(world["cache"])
    alpha_zip, alpha_target = _outputs(projects["alpha"])
    beta_zip, beta_target = _outputs(projects["beta"])
    for target in (alpha_target, beta_target):
        assert {p.stat().st_nlink for p in target.rglob("*") if p.is_file()} == {1}
    victim = alpha_target / "requests" / "__init__.py"
    with victim.open("a") as f:  # what a root process in a CI container may do
        f.write("STOLEN = True\n")
    assert _snapshot(world["cache"]) == cache_before
    assert dir_files(beta_target) == zip_files(beta_zip)
    shutil.rmtree(beta_target)  # a fresh clone of beta bundles the right bytes
    _ok(bundle(projects["beta"], world["cache"], *RUNTIME))
    assert dir_files(beta_target) == zip_files(beta_zip)
    assert b"STOLEN" not in (beta_target / "requests" / "__init__.py").read_bytes()
    _ok(bundle(projects["alpha"], world["cache"], *RUNTIME))
    assert dir_files(alpha_target) == zip_files(alpha_zip)


# -- 3. a symlink in the target dir is replaced, never followed ---------------------------------


def test_symlinked_folder_in_the_target_dir_is_replaced_not_followed(world: dict, alpha: Path, tmp_path: Path) -> None:
    _ok(bundle(alpha, world["cache"], *RUNTIME))
    zip_path, target = _outputs(alpha)
    checkout = tmp_path / "src" / "requests"
    checkout.mkdir(parents=True)
    (checkout / "__init__.py").write_text("# my working copy of requests\n")
    (checkout / "api.py").write_text("def get(): ...\n")
    shutil.rmtree(target / "requests")
    (target / "requests").symlink_to(checkout, target_is_directory=True)
    before = _snapshot(checkout)
    _ok(bundle(alpha, world["cache"], *RUNTIME))
    assert _snapshot(checkout) == before
    assert not (target / "requests").is_symlink()
    assert dir_files(target) == zip_files(zip_path)


# -- 9. OS errors are explained, even with -q ----------------------------------------------------


@pytest.mark.parametrize("option", ["--target-dir", "--output"])
def test_file_name_too_long_is_explained_even_with_q(world: dict, alpha: Path, option: str) -> None:
    name = "x" * 300 + (".zip" if option == "--output" else "")
    result = bundle(alpha, world["cache"], *RUNTIME, "-q", option, str(alpha / "out" / name))
    stderr = _clean_failure(result, "File name too long", "shorter --output or --target-dir")
    assert stderr.strip(), "nothing printed with -q"
    assert [p for root in ("dist", "build", "out") for p in (alpha / root).rglob("*") if not p.is_dir()] == []


def test_output_under_a_file_is_explained(world: dict, alpha: Path) -> None:
    (alpha / "notafolder").write_text("a file\n")
    result = bundle(alpha, world["cache"], *RUNTIME, "-q", "--output", str(alpha / "notafolder" / "fn.zip"))
    _clean_failure(result, "notafolder", "is a file, not a folder")


# -- 10. SOURCE_DATE_EPOCH that no ZIP can hold ---------------------------------------------------


def test_source_date_epoch_after_2107_is_refused_before_any_build(world: dict, alpha: Path) -> None:
    result = bundle(alpha, world["cache"], *RUNTIME, extra_env={"SOURCE_DATE_EPOCH": "4354819200"})
    _clean_failure(result, "SOURCE_DATE_EPOCH=4354819200 is after 2107-12-31")
    assert "ushort" not in result.stderr
    assert not (alpha / "dist").exists() and not (alpha / "build").exists()


def test_source_date_epoch_before_1980_is_raised_without_a_warning(world: dict, alpha: Path, tmp_path: Path) -> None:
    """Raised to 1980, as documented (and as poetry-core does, saying so on every build)."""
    result = bundle(alpha, world["cache"], *RUNTIME, "-o", str(tmp_path / "e.zip"), "--target-dir",
                    str(tmp_path / "e"), extra_env={"SOURCE_DATE_EPOCH": "-1"})
    assert result.returncode == 0, result.stderr
    assert "1980" not in result.stdout + result.stderr


# -- 11. no litter: what a killed run left is removed -------------------------------------------


def test_litter_of_killed_runs_is_removed(world: dict, alpha: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(world["cache"], cache)
    legacy = cache / "lambda-bundle" / "unpacked" / "ab"
    (legacy / ".tmp-killed" / "pkg").mkdir(parents=True)
    (legacy / ".tmp-killed" / "pkg" / "mod.py").write_text("half\n")
    dist = alpha / "dist" / "lambda"
    dist.mkdir(parents=True)
    killed_zip = dist / ".alpha-0.1.0-python3.12-x86_64.zip.tmp-killed"
    killed_zip.write_bytes(b"PK\x03\x04 half")
    killed_dir = alpha / "build" / "lambda" / ".python3.12-x86_64.tmp-killed"
    (killed_dir / "requests").mkdir(parents=True)
    _ok(bundle(alpha, cache, *RUNTIME))
    assert not (cache / "lambda-bundle" / "unpacked").exists()
    assert not killed_zip.exists() and not killed_dir.exists()
    leftovers = [p for root in (dist, alpha / "build" / "lambda", cache) for p in root.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


# -- 12. never written through a symlink, never into another target dir or Poetry's cache --------


@pytest.mark.parametrize("which", ["--output", "--target-dir"])
@pytest.mark.parametrize("dangling", [False, True])
def test_an_output_that_is_a_symlink_is_refused_untouched(
    world: dict, alpha: Path, tmp_path: Path, which: str, dangling: bool
) -> None:
    """A link given as an output (relative, as a user types it) is refused, never followed: the
    path is resolved up to its folder only."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / ("victim.zip" if which == "--output" else "victim")
    if not dangling:
        _ok(bundle(alpha, world["cache"], *RUNTIME, "--output", str(elsewhere / "victim.zip"),
                   "--target-dir", str(elsewhere / "victim")))
        (elsewhere / "victim" / "precious.txt").write_text("keep me\n")
    link = alpha / ("out.zip" if which == "--output" else "tdir")
    link.symlink_to(victim, target_is_directory=which == "--target-dir")
    before = _snapshot(elsewhere)
    result = bundle(alpha, world["cache"], *RUNTIME, which, link.name)
    _clean_failure(result, link.name, "is a symlink" if which == "--target-dir" else "not a regular file")
    assert _snapshot(elsewhere) == before
    assert link.is_symlink() and not victim.exists() if dangling else link.is_symlink()


def test_poetrys_cache_is_never_the_target_dir(world: dict, alpha: Path, tmp_path: Path) -> None:
    cache = tmp_path / "caches" / "pcache"  # not made yet: Poetry makes it during the run
    for target in (cache, cache / "inner", cache.parent):
        result = bundle(alpha, cache, *RUNTIME, "--target-dir", str(target))
        _clean_failure(result, "Poetry's cache", str(target))
        assert not (target / ".lambda-bundle-target").exists()


def test_outputs_inside_another_bundles_target_dir_are_refused(world: dict, tmp_path: Path) -> None:
    """Named bundles checked against each other before anything is built; and a bundle built
    alone never writes inside a target dir an earlier run made (it would vanish with it)."""
    cases = {
        "zip-inside": {"a": {"output": "build/b/a.zip"}, "b": {"target-dir": "build/b"}},
        "dir-inside": {"a": {}, "b": {"target-dir": "build/lambda/a-python3.12-x86_64/inner", "output": "dist/b.zip"}},
        "dir-around": {"a": {"target-dir": "build/x/a"}, "b": {"target-dir": "build/x"}},
    }
    for name, bundles in cases.items():
        project = tmp_path / name
        shutil.copytree(world["base"] / "alpha", project)
        text = (project / "pyproject.toml").read_text()
        tables = "".join(
            f'\n[tool.lambda-bundle.bundles.{b}]\n' + "".join(f'{k} = "{v}"\n' for k, v in keys.items())
            for b, keys in bundles.items()
        )
        (project / "pyproject.toml").write_text(text + tables)
        result = bundle(project, world["cache"], *RUNTIME)
        _clean_failure(result, "inside the target dir of bundle")
        assert not (project / "dist").exists() and not (project / "build").exists(), name
    project = tmp_path / "dir-inside"
    _ok(bundle(project, world["cache"], *RUNTIME, "--bundle", "a"))
    target = project / "build" / "lambda" / "a-python3.12-x86_64"
    before = _snapshot(project / "build", project / "dist")
    result = bundle(project, world["cache"], *RUNTIME, "--bundle", "b")
    _clean_failure(result, "the target dir of another bundle", str(target))
    assert _snapshot(project / "build", project / "dist") == before


@pytest.mark.parametrize("option", ["--output", "--target-dir"])
def test_an_output_inside_the_projects_package_is_refused(world: dict, alpha: Path, option: str) -> None:
    """The project's wheel ships every file of its package folder: an output there would be in
    the next bundle, which would grow on every run."""
    inside = alpha / "alpha" / ("bundle.zip" if option == "--output" else "tdir")
    result = bundle(alpha, world["cache"], *RUNTIME, option, str(inside))
    _clean_failure(result, "a folder of the project's package", str(alpha / "alpha"))
    assert not inside.exists() and not (alpha / "dist").exists() and not (alpha / "build").exists()
    _ok(bundle(alpha, world["cache"], *RUNTIME, option, str(alpha / ("out.zip" if option == "--output" else "out"))))
