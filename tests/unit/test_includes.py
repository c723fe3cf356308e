"""`include`: Poetry-like patterns on every Python, symlinks kept inside, only our outputs left out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.includes import Outputs
from poetry_plugin_lambda.includes import matches
from poetry_plugin_lambda.includes import project_files
from poetry_plugin_lambda.includes import segments
from poetry_plugin_lambda.includes import selects
from poetry_plugin_lambda.target_dir import MARKER


def _tree(root: Path, *files: str) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return root


def _paths(root: Path, *patterns: str, outputs: Outputs | None = None) -> list[str]:
    return [e.path for e in project_files(root, list(patterns), "fn", outputs)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _tree(
        tmp_path / "fn", "lambda_function.py", "config/a.json", "config/sub/b.json", "config/sub/c.txt",
        "data/d.json", "README.md",
    )


@pytest.mark.parametrize(("pattern", "expected"), [
    # A folder's name takes its files, recursively (Path.glob("config") gave only the folder before 3.13).
    ("config", ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]),
    ("config/", ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]),
    # `config/**` is everything under config (Path.glob gave folders only before 3.13).
    ("config/**", ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]),
    ("**/*.json", ["config/a.json", "config/sub/b.json", "data/d.json"]),
    ("config/*.json", ["config/a.json"]),
    ("config/*", ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]),
    ("*.py", ["lambda_function.py"]),
    ("./lambda_function.py", ["lambda_function.py"]),
    ("config/**/*.txt", ["config/sub/c.txt"]),
    ("c?nfig/s[tu]b/*.json", ["config/sub/b.json"]),
])
def test_patterns_select_like_poetrys_include(project: Path, pattern: str, expected: list[str]) -> None:
    assert _paths(project, pattern) == expected


def test_matcher_keeps_star_inside_one_segment_and_lets_double_star_span_folders() -> None:
    assert matches(segments("*.json"), ("a.json",))
    assert not matches(segments("*.json"), ("config", "a.json"))
    assert matches(segments("**/*.json"), ("a.json",))
    assert matches(segments("**/*.json"), ("x", "y", "a.json"))
    assert matches(segments("a/**/b"), ("a", "b")) and matches(segments("a/**/b"), ("a", "x", "y", "b"))
    assert selects(segments("config"), ("config", "deep", "x.txt"))
    assert not selects(segments("config"), ("configs", "x.txt"))


def test_negation_uses_the_same_matcher(project: Path) -> None:
    assert _paths(project, "config", "!config/sub") == ["config/a.json"]
    assert _paths(project, "**/*.json", "!**/b.json") == ["config/a.json", "data/d.json"]


def test_a_symlink_to_a_file_outside_the_project_is_an_error_naming_it(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("token")
    (project / "config" / "leak.json").symlink_to(secret)
    with pytest.raises(ConfigError) as error:
        _paths(project, "config/*.json")
    message = str(error.value)
    assert "config/leak.json" in message and str(secret) in message and "outside the project" in message
    with pytest.raises(ConfigError, match="config/leak.json"):
        _paths(project, "config/leak.json")  # named exactly: still refused
    assert _paths(project, "config/*.json", "!config/leak.json") == ["config/a.json"]


def test_a_symlinked_folder_outside_the_project_is_an_error(project: Path, tmp_path: Path) -> None:
    outside = _tree(tmp_path / "elsewhere", "x.json")
    (project / "config" / "shared").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"config/shared, a symlink to .*elsewhere"):
        _paths(project, "**/*.json")
    # A pattern that cannot reach the link does not trip on it.
    assert _paths(project, "data/*.json") == ["data/d.json"]


def test_symlinks_inside_the_project_are_followed(project: Path) -> None:
    (project / "config" / "alias.json").symlink_to(project / "data" / "d.json")
    (project / "more").symlink_to(project / "config" / "sub", target_is_directory=True)
    (project / "config" / "loop").symlink_to(project / "config", target_is_directory=True)
    files = project_files(project, ["config/*.json", "more"], "fn")
    assert [e.path for e in files] == ["config/a.json", "config/alias.json", "more/b.json", "more/c.txt"]
    assert files[1].file == (project / "data" / "d.json").resolve()


def test_only_the_plugins_own_files_are_left_out(project: Path) -> None:
    target = _tree(project / "build" / "lambda" / "python3.12-x86_64", "pkg/x.json")
    (project / "build" / "lambda" / ".python3.12-x86_64.manifest.json").write_text("{}")
    (project / "build" / "lambda" / "kept.json").write_text("{}")
    _tree(project / "build" / "lambda", ".python3.12-x86_64.tmp-killed/pkg/y.json")  # a killed run's staging
    _tree(project / "build" / "lambda", ".python3.12-x86_64.new-abc/z.json", ".python3.12-x86_64.other.json")
    out = project / "dist" / "fn.zip"
    _tree(project, "dist/fn.zip", "dist/.fn.zip.tmp-123", "dist/notes.json")
    outputs = Outputs(zips=(out,), target_dirs=(target,))
    assert _paths(project, "**/*.json", outputs=outputs) == [
        "build/lambda/.python3.12-x86_64.other.json", "build/lambda/kept.json", "config/a.json", "config/sub/b.json", "data/d.json", "dist/notes.json",
    ]
    assert _paths(project, "dist/*", outputs=outputs) == ["dist/notes.json"]


def test_every_bundles_outputs_and_any_marked_target_dir_are_left_out(project: Path) -> None:
    """Another bundle's ZIP and target dir, and a target dir of an earlier run or config (it
    holds the marker), are outputs: a second run must not bundle the first run's files."""
    _tree(project / "build" / "lambda" / "deps", "python/requests/x.json")
    _tree(project / "old-target", "pkg/y.json")
    (project / "old-target" / MARKER).write_text("ours\n")
    _tree(project, "dist/fn.zip", "dist/deps.zip", "dist/.deps.zip.tmp-1", "dist/notes.json")
    outputs = Outputs(
        zips=(project / "dist" / "fn.zip", project / "dist" / "deps.zip"),
        target_dirs=(project / "build" / "lambda" / "fn", project / "build" / "lambda" / "deps"),
    )
    assert _paths(project, "**/*.json", outputs=outputs) == ["config/a.json", "config/sub/b.json", "data/d.json", "dist/notes.json"]
    assert _paths(project, "dist/*", outputs=outputs) == ["dist/notes.json"]


def test_an_output_in_the_projects_parent_hides_nothing(project: Path) -> None:
    """`-o ../fn.zip`: the output's folder holds the project; every file must stay selectable."""
    outputs = Outputs(zips=(project.parent / "fn.zip",), target_dirs=(project / "build" / "lambda" / "t",))
    assert _paths(project, "**/*.json", outputs=outputs) == ["config/a.json", "config/sub/b.json", "data/d.json"]


def test_wildcards_skip_vcs_bytecode_and_git_ignored_files_but_a_named_file_is_taken(project: Path) -> None:
    _tree(project, ".git/x.json", "config/__pycache__/m.pyc", "config/ignored.json")
    if subprocess.run(["git", "init", "-q", str(project)], check=False).returncode != 0:
        pytest.skip("git is not available")
    (project / ".gitignore").write_text("config/ignored.json\n")
    assert _paths(project, "config") == ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]
    assert _paths(project, "config/ignored.json") == ["config/ignored.json"]


def _git_available() -> bool:
    return shutil.which("git") is not None


def test_git_ignore_rules_are_the_checkouts_not_the_users(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's global excludes file (`*.json` here) never decides what ships: the same checkout
    bundles the same files whoever builds it."""
    if not _git_available():
        pytest.skip("git is not available")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text("config/sub/\n")
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "ignore").write_text("*.json\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert _paths(project, "config") == ["config/a.json"]


def test_a_copy_without_git_still_obeys_its_gitignore(project: Path) -> None:
    """A CI artifact or a Docker context: no `.git`, but the `.gitignore` files came along."""
    if not _git_available():
        pytest.skip("git is not available")
    _tree(project, "config/.env")
    (project / ".gitignore").write_text(".env\nconfig/sub/c.txt\n")
    assert _paths(project, "config") == ["config/a.json", "config/sub/b.json"]


def test_ignore_rules_without_git_are_an_error_not_ignored(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without git, the rules cannot be read: the files are not shipped unchecked (a `.env`
    listed in `.gitignore` would ship). Named files need no git; without rules, nothing to read."""
    monkeypatch.setenv("PATH", str(project / "no-such-bin"))
    assert _paths(project, "config") == ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]
    (project / ".gitignore").write_text(".env\n")
    with pytest.raises(ConfigError, match="git cannot be run here .* Install git, or name each file"):
        _paths(project, "config")
    assert _paths(project, "config/a.json") == ["config/a.json"]


def test_an_unreadable_folder_or_file_a_pattern_reaches_is_an_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a silent omission (a wildcard), nor 'matches no file' (a named file in it), nor an
    error blaming the ZIP (an unreadable file): the folder or file is named. (The tests run as
    root, whom permissions do not stop: the refusals are the operating system's, simulated.)"""
    import errno

    real_scandir, real_open = os.scandir, Path.open

    def scandir(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("/config/sub"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    def open_(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.name == "lambda_function.py":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    for pattern in ("config/**/*.json", "config/sub/b.json"):
        with pytest.raises(ConfigError, match=r"cannot read the folder config/sub \(Permission denied\)"):
            _paths(project, pattern)
    assert _paths(project, "config/a.json") == ["config/a.json"]
    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(ConfigError, match=r"include cannot read lambda_function.py \(Permission denied\)"):
        _paths(project, "lambda_function.py")


def test_a_pattern_matching_nothing_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="'nothing/\\*.sql' matches no file"):
        _paths(project, "nothing/*.sql")


def test_executable_bit_is_kept(project: Path) -> None:
    os.chmod(project / "lambda_function.py", 0o755)
    (entry,) = project_files(project, ["lambda_function.py"], "fn")
    assert entry.executable


def test_vcs_folders_are_never_walked_but_a_file_named_in_one_is_taken(project: Path) -> None:
    _tree(project, ".git/objects/x.json", ".hg/store.json")
    assert _paths(project, "**/*.json") == ["config/a.json", "config/sub/b.json", "data/d.json"]
    assert _paths(project, ".hg/store.json") == [".hg/store.json"]


def test_a_file_name_that_is_not_utf8_is_refused_naming_it_unless_left_out(project: Path) -> None:
    """Asked of git as the bytes on disk (it was a UnicodeEncodeError); a ZIP cannot hold such a
    name, so including it is a config error naming it. A '!' pattern or .gitignore leaves it out."""
    (project / os.fsdecode(b"config/x\xff\xfe.json")).write_text("{}")
    with pytest.raises(ConfigError, match=r"include would ship config/x\\xff\\xfe\.json, whose name is not valid UTF-8"):
        _paths(project, "config")
    assert _paths(project, "config", "!config/x*") == ["config/a.json", "config/sub/b.json", "config/sub/c.txt"]
    if subprocess.run(["git", "init", "-q", str(project)], check=False).returncode != 0:
        pytest.skip("git is not available")
    (project / ".gitignore").write_bytes(b"config/x\xff\xfe.json\n")
    assert _paths(project, "config/*.json") == ["config/a.json"]
