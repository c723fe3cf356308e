"""build_spec / read_config: every key validated, CLI over config, paths, groups, extras, runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit
from packaging.utils import canonicalize_name
from poetry.core.constraints.version import Version
from poetry.core.constraints.version import parse_constraint

from poetry_plugin_lambda.errors import BundleError
from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.spec import CONFIG_KEYS
from poetry_plugin_lambda.spec import BundleSpec
from poetry_plugin_lambda.spec import ProjectFacts
from poetry_plugin_lambda.spec import build_spec
from poetry_plugin_lambda.spec import read_config
from poetry_plugin_lambda.targets import RUNTIMES


def facts(
    root: Path,
    *,
    python: str = ">=3.9,<4.0",
    name: str = "my-service",
    version: str = "0.1.0",
    groups: tuple[str, ...] = ("dev", "test", "docs"),
    extras: tuple[str, ...] = ("fast", "aws"),
) -> ProjectFacts:
    """ProjectFacts the way command.project_facts builds them, without a Poetry project."""
    constraint = parse_constraint(python)
    return ProjectFacts(
        root=root.resolve(),
        name=name,
        version=version,
        allows_python=lambda v: constraint.allows(Version.parse(v)),
        python_constraint=python,
        groups=frozenset(canonicalize_name(g) for g in (*groups, "main")),
        default_groups=frozenset({canonicalize_name("main")}),
        extras=frozenset(canonicalize_name(e) for e in extras),
    )


@pytest.fixture
def project(tmp_path: Path) -> ProjectFacts:
    root = tmp_path / "project"
    root.mkdir()
    return facts(root)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path.resolve()


def spec_of(project: ProjectFacts, cwd: Path, config: Any = None, **cli: Any) -> BundleSpec:
    """build_spec with CLI keys written as Python names (target_dir -> target-dir)."""
    cli_values = {key.replace("_", "-"): value for key, value in cli.items()}
    if "with-" in cli_values:
        cli_values["with"] = cli_values.pop("with-")
    return build_spec(config, cli_values, project, cwd)


# -- read_config: table shape, known keys, types ----------------------------------------------


def test_read_config_none_and_empty() -> None:
    assert read_config(None) == {}
    assert read_config({}) == {}


@pytest.mark.parametrize("table", ["runtime", 3, ["runtime"], True])
def test_read_config_table_must_be_a_table(table: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[tool\.lambda-bundle\] must be a table"):
        read_config(table)


def test_read_config_accepts_every_key_with_a_good_value() -> None:
    table = {
        "runtime": " python3.12 ",
        "architecture": "arm64",
        "output": "dist/fn.zip",
        "target-dir": "build/fn",
        "with": ["dev", "test,docs"],
        "without": "docs",
        "only": [],
        "extras": ["fast"],
        "all-extras": True,
        "layout": "layer",
    }
    assert set(table) <= set(CONFIG_KEYS)
    assert read_config(table) == {
        "runtime": "python3.12",
        "architecture": "arm64",
        "output": "dist/fn.zip",
        "target-dir": "build/fn",
        "with": ["dev", "test", "docs"],
        "without": ["docs"],
        "only": [],
        "extras": ["fast"],
        "all-extras": True,
        "layout": "layer",
    }


def test_read_config_unwraps_tomlkit_tables() -> None:
    doc = tomlkit.parse(
        '[tool.lambda-bundle]\nruntime = "python3.12"\narchitecture = "arm64"\n'
        'with = ["dev"]\nall-extras = false\n'
    )
    table = doc["tool"]["lambda-bundle"]
    assert read_config(table) == {
        "runtime": "python3.12",
        "architecture": "arm64",
        "with": ["dev"],
        "all-extras": False,
    }


BAD_VALUES = [
    ("runtime", 3.12, "must be a non-empty string"),
    ("runtime", "", "must be a non-empty string"),
    ("runtime", "   ", "must be a non-empty string"),
    ("runtime", ["python3.12"], "must be a non-empty string"),
    ("architecture", "ppc64le", "must be one of x86_64, arm64"),
    ("architecture", "aarch64", "must be one of x86_64, arm64"),
    ("architecture", "ARM64", "must be one of x86_64, arm64"),
    ("architecture", 64, "must be a non-empty string"),
    ("output", 1, "must be a non-empty string"),
    ("output", {"path": "x.zip"}, "must be a non-empty string"),
    ("output", "", "must be a non-empty string"),
    ("target-dir", True, "must be a non-empty string"),
    ("target-dir", ["build"], "must be a non-empty string"),
    ("with", 1, "must be a list of strings"),
    ("with", ["dev", 1], "must be a list of strings"),
    ("with", {"dev": True}, "must be a list of strings"),
    ("without", [["dev"]], "must be a list of strings"),
    ("only", True, "must be a list of strings"),
    ("extras", [None], "must be a list of strings"),
    ("all-extras", "true", "must be true or false"),
    ("all-extras", 1, "must be true or false"),
    ("all-extras", ["x"], "must be true or false"),
    ("layout", "zip", "must be one of bundle, layer, code"),
    ("layout", "Bundle", "must be one of bundle, layer, code"),
    ("layout", 0, "must be a non-empty string"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_read_config_rejects_bad_values_naming_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config({key: value})
    text = str(caught.value)
    assert f"[tool.lambda-bundle] {key} " in text
    assert message in text
    assert isinstance(caught.value, BundleError)


def test_every_config_key_has_a_rejection_case() -> None:
    covered = {key for key, _, _ in BAD_VALUES} | {key for key, _, _ in BAD_NEWER_VALUES}
    assert set(CONFIG_KEYS) <= covered, "a config key was added: add its bad values here"


# keys added after the first release: tested when the product has them
BAD_NEWER_VALUES = [
    ("exclude", 1, "must be a list of strings"),
    ("exclude", ["boto3", None], "must be a list of strings"),
    ("exclude-files", {"*": True}, "must be a list of strings"),
    ("max-unzipped-size", True, "must be a size"),
    ("max-unzipped-size", "lots", "must be a size"),
    ("max-unzipped-size", "200 parsecs", "must be a size"),
    ("max-unzipped-size", [200], "must be a size"),
    ("max-unzipped-size", 0, "must be positive"),
    ("max-unzipped-size", -5, "must be positive"),
    ("max-unzipped-size", "0MB", "must be positive"),
    ("include", 1, "must be a list of strings"),
    ("include", ["app.py", 2], "must be a list of strings"),
    ("compile", "yes", "must be true or false"),
    ("compile", 1, "must be true or false"),
    ("compile-with", 3, "must be a non-empty string"),
    ("slim", "yes", "must be true or false"),
    ("slim", 1, "must be true or false"),
    ("compile-with", "", "must be a non-empty string"),
    ("handler", 1, "must be a non-empty string"),
    ("handler", [1], "must be a non-empty string"),
    ("handler", [], "must be a handler (module.function) or a list of them"),
    ("handler", ["app"], "must look like module.function"),
    ("check-layers", 1, "must be a list of paths"),
    ("check-layers", [""], "must be a list of paths"),
    ("check-with", 3, "must be a non-empty string"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_NEWER_VALUES)
def test_read_config_rejects_bad_values_of_newer_keys(key: str, value: Any, message: str) -> None:
    if key not in CONFIG_KEYS:
        pytest.skip(f"{key} is not a config key in this version")
    with pytest.raises(ConfigError) as caught:
        read_config({key: value})
    assert f"[tool.lambda-bundle] {key} " in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "size"),
    [(1, 1), (262144000, 262144000), ("200MB", 200_000_000), ("250 MiB", 250 * 1024**2),
     (" 1.5kb ", 1500), ("10", 10), ("2GiB", 2 * 1024**3)],
)
def test_max_unzipped_size_values(value: Any, size: int) -> None:
    if "max-unzipped-size" not in CONFIG_KEYS:
        pytest.skip("max-unzipped-size is not a config key in this version")
    assert read_config({"max-unzipped-size": value}) == {"max-unzipped-size": size}


@pytest.mark.parametrize("value", ["9" * 400 + "MB", "\u0661\u0662MB", "１２MB"])
def test_max_unzipped_size_with_an_absurd_number_is_a_config_error(value: str) -> None:
    """Absurdly large, or written in other scripts' digits (which `\\d` and Decimal take)."""
    if "max-unzipped-size" not in CONFIG_KEYS:
        pytest.skip("max-unzipped-size is not a config key in this version")
    with pytest.raises(ConfigError, match="max-unzipped-size"):
        read_config({"max-unzipped-size": value})


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("runtim", "runtime"),
        ("Runtime", "runtime"),
        ("architectur", "architecture"),
        ("target_dir", "target-dir"),
        ("targetdir", "target-dir"),
        ("all_extras", "all-extras"),
        ("extra", "extras"),
        ("layouts", "layout"),
        ("without-groups", "without"),
        ("outputs", "output"),
    ],
)
def test_unknown_key_names_the_closest_valid_key(typo: str, closest: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config({typo: "x"})
    text = str(caught.value)
    assert f"Unknown key {typo!r}" in text
    assert f"Did you mean {closest!r}?" in text
    assert "Valid keys: runtime, architecture" in text


def test_unknown_key_far_from_any_key_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        read_config({"zzzzzz": 1})
    text = str(caught.value)
    assert "Unknown key 'zzzzzz'" in text
    assert "Did you mean" not in text
    for key in CONFIG_KEYS:
        assert key in text


def test_unknown_key_arch_suggests_architecture() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'architecture'"):
        read_config({"arch": "arm64"})


def test_first_bad_key_wins_even_when_later_keys_are_fine() -> None:
    with pytest.raises(ConfigError, match="Unknown key 'bogus'"):
        read_config({"bogus": 1, "runtime": "python3.12"})


# -- CLI wins over config ------------------------------------------------------------------------


def test_cli_wins_over_config(project: ProjectFacts, cwd: Path) -> None:
    config = {
        "runtime": "python3.11",
        "architecture": "arm64",
        "layout": "layer",
        "with": ["dev"],
        "extras": ["fast"],
        "output": "from-config.zip",
        "target-dir": "from-config",
    }
    spec = spec_of(
        project,
        cwd,
        config,
        runtime="python3.12",
        architecture="x86_64",
        layout="code",
        with_=["test"],
        extras=["aws"],
        output="from-cli.zip",
        target_dir="from-cli",
    )
    assert spec.target.runtime.name == "python3.12"
    assert spec.target.architecture == "x86_64"
    assert spec.layout == "code"
    assert spec.groups == {"main", "test"}
    assert spec.extras == {"aws"}
    assert spec.output == cwd / "from-cli.zip"
    assert spec.target_dir == cwd / "from-cli"


def test_config_is_used_when_the_cli_gives_nothing(project: ProjectFacts, cwd: Path) -> None:
    config = {"runtime": "python3.11", "architecture": "arm64", "layout": "layer", "with": "dev"}
    # None and empty lists mean "not given" on the command line
    spec = spec_of(project, cwd, config, runtime=None, architecture=None, with_=[], extras=())
    assert spec.target.runtime.name == "python3.11"
    assert spec.target.architecture == "arm64"
    assert spec.layout == "layer"
    assert spec.groups == {"main", "dev"}


def test_defaults(project: ProjectFacts, cwd: Path) -> None:
    spec = spec_of(project, cwd, None, runtime="python3.12")
    assert spec.target.architecture == "x86_64"
    assert spec.layout == "bundle"
    assert spec.format == "text"
    assert spec.groups == {"main"}
    assert spec.extras == frozenset()
    assert spec.includes_project and spec.includes_dependencies
    assert spec.output == project.root / "dist" / "lambda" / "my_service-0.1.0-python3.12-x86_64.zip"
    assert spec.target_dir == project.root / "build" / "lambda" / "python3.12-x86_64"


@pytest.mark.parametrize(
    ("layout", "project_in", "deps_in"),
    [("bundle", True, True), ("layer", False, True), ("code", True, False)],
)
def test_layout_default_paths_and_parts(
    project: ProjectFacts, cwd: Path, layout: str, project_in: bool, deps_in: bool
) -> None:
    spec = spec_of(project, cwd, None, runtime="python3.13", architecture="arm64", layout=layout)
    suffix = "" if layout == "bundle" else f"-{layout}"
    assert spec.output.name == f"my_service-0.1.0-python3.13-arm64{suffix}.zip"
    assert spec.target_dir.name == f"python3.13-arm64{suffix}"
    assert (spec.includes_project, spec.includes_dependencies) == (project_in, deps_in)


def test_cli_architecture_and_layout_are_validated(project: ProjectFacts, cwd: Path) -> None:
    with pytest.raises(ConfigError, match="--arch must be one of x86_64, arm64; got 'ppc64le'"):
        spec_of(project, cwd, None, runtime="python3.12", architecture="ppc64le")
    with pytest.raises(ConfigError, match="--layout must be one of bundle, layer, code"):
        spec_of(project, cwd, None, runtime="python3.12", layout="lambda")


@pytest.mark.parametrize(("key", "value", "option"), [
    ("output", "", "--output"), ("target-dir", "", "--target-dir"), ("architecture", "", "--arch"),
    ("exclude", [""], "--exclude"), ("exclude-files", ["*.pyi", ""], "--exclude-files"),
])  # fmt: skip
def test_an_empty_cli_value_is_an_error_not_the_default(project: ProjectFacts, cwd: Path, key: str, value: object, option: str) -> None:
    """`-o ""` (an unset variable in a script) is refused, as an empty value in the config is."""
    with pytest.raises(ConfigError, match=f"{option} was given an empty value"):
        spec_of(project, cwd, None, runtime="python3.12", **{key: value})


def test_format(project: ProjectFacts, cwd: Path) -> None:
    assert spec_of(project, cwd, None, runtime="python3.12", format="json").format == "json"
    with pytest.raises(ConfigError, match="--format must be one of text, json; got 'xml'"):
        spec_of(project, cwd, None, runtime="python3.12", format="xml")


def test_bad_config_value_fails_even_when_the_cli_overrides_it(project: ProjectFacts, cwd: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[tool\.lambda-bundle\] architecture"):
        spec_of(project, cwd, {"architecture": "sparc"}, runtime="python3.12", architecture="arm64")


# -- paths -------------------------------------------------------------------------------------


def test_relative_config_paths_are_taken_from_the_project_root(project: ProjectFacts, cwd: Path) -> None:
    spec = spec_of(project, cwd, {"output": "out/fn.zip", "target-dir": "build/fn"}, runtime="python3.12")
    assert spec.output == project.root / "out" / "fn.zip"
    assert spec.target_dir == project.root / "build" / "fn"


def test_relative_cli_paths_are_taken_from_the_cwd(project: ProjectFacts, cwd: Path) -> None:
    spec = spec_of(project, cwd, None, runtime="python3.12", output="out/fn.zip", target_dir="build/fn")
    assert spec.output == cwd / "out" / "fn.zip"
    assert spec.target_dir == cwd / "build" / "fn"


def test_paths_are_normalised(project: ProjectFacts, cwd: Path) -> None:
    spec = spec_of(project, cwd, {"output": "a/../b/./fn.zip"}, runtime="python3.12", target_dir="x/../y")
    assert spec.output == project.root / "b" / "fn.zip"
    assert spec.target_dir == cwd / "y"


def test_absolute_and_home_paths(project: ProjectFacts, cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = (tmp_path / "home").resolve()
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    absolute = (tmp_path / "abs" / "fn.zip").resolve()
    spec = spec_of(project, cwd, {"output": str(absolute), "target-dir": "~/lambda-build"}, runtime="python3.12")
    assert spec.output == absolute
    assert spec.target_dir == home / "lambda-build"


@pytest.mark.parametrize("output", ["dist/fn", "dist/fn.tar.gz", "dist/.zip", "fn.zip.bak", "fn.zip.d/x"])
def test_output_must_be_a_zip(project: ProjectFacts, cwd: Path, output: str) -> None:
    with pytest.raises(ConfigError, match="must be a .zip file"):
        spec_of(project, cwd, {"output": output}, runtime="python3.12")
    with pytest.raises(ConfigError, match="must be a .zip file"):
        spec_of(project, cwd, None, runtime="python3.12", output=output)


def test_output_zip_suffix_is_case_insensitive(project: ProjectFacts, cwd: Path) -> None:
    assert spec_of(project, cwd, None, runtime="python3.12", output="FN.ZIP").output == cwd / "FN.ZIP"


# -- groups ------------------------------------------------------------------------------------


def test_groups_with_without_only(project: ProjectFacts, cwd: Path) -> None:
    def groups(config: Any = None, **cli: Any) -> frozenset[str]:
        return spec_of(project, cwd, config, runtime="python3.12", **cli).groups

    assert groups() == {"main"}
    assert groups(with_=["dev", "test"]) == {"main", "dev", "test"}
    assert groups(with_=["dev,test"]) == {"main", "dev", "test"}
    assert groups(with_=["Dev"]) == {"main", "dev"}
    assert groups(without=["main"]) == frozenset()
    assert groups(with_=["dev"], without=["dev"]) == {"main"}
    assert groups(only=["dev"]) == {"dev"}
    assert groups(only=["dev", "main"]) == {"dev", "main"}
    assert groups({"with": ["docs"]}) == {"main", "docs"}
    assert groups({"only": "test"}) == {"test"}
    assert groups({"without": ["main"]}, with_=["dev"]) == {"dev"}


@pytest.mark.parametrize("option", ["with", "without", "only"])
def test_unknown_group_is_an_error_naming_it(project: ProjectFacts, cwd: Path, option: str) -> None:
    key = "with_" if option == "with" else option
    with pytest.raises(ConfigError) as caught:
        spec_of(project, cwd, None, runtime="python3.12", **{key: ["dev", "lint"]})
    text = str(caught.value)
    assert "'lint'" in text and f"--{option} / {option}:" in text
    assert "Groups: dev, docs, main, test" in text
    with pytest.raises(ConfigError, match="'lint'"):
        spec_of(project, cwd, {option: ["lint"]}, runtime="python3.12")


# -- extras ------------------------------------------------------------------------------------


def test_extras(project: ProjectFacts, cwd: Path) -> None:
    def extras(config: Any = None, **cli: Any) -> frozenset[str]:
        return spec_of(project, cwd, config, runtime="python3.12", **cli).extras

    assert extras() == frozenset()
    assert extras(extras=["fast"]) == {"fast"}
    assert extras(extras=["Fast,AWS"]) == {"fast", "aws"}
    assert extras({"extras": "aws"}) == {"aws"}
    assert extras(all_extras=True) == {"fast", "aws"}
    assert extras({"all-extras": True}) == {"fast", "aws"}
    assert extras({"all-extras": False}, extras=["fast"]) == {"fast"}


def test_unknown_extra_is_an_error_naming_it(project: ProjectFacts, cwd: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_of(project, cwd, None, runtime="python3.12", extras=["fast", "turbo"])
    assert "turbo" in str(caught.value)
    assert "Extras: aws, fast" in str(caught.value)
    with pytest.raises(ConfigError, match="turbo"):
        spec_of(project, cwd, {"extras": ["turbo"]}, runtime="python3.12")


def test_unknown_extra_in_a_project_without_extras(tmp_path: Path, cwd: Path) -> None:
    bare = facts(tmp_path, extras=())
    with pytest.raises(ConfigError, match="Extras: none"):
        spec_of(bare, cwd, None, runtime="python3.12", extras=["x"])
    assert spec_of(bare, cwd, None, runtime="python3.12", all_extras=True).extras == frozenset()


# -- runtimes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "runtime"),
    [
        ("~3.12", "python3.12"),
        (">=3.11,<3.12", "python3.11"),
        ("==3.13.*", "python3.13"),
        (">=3.14", "python3.14"),
        ("<3.10", "python3.9"),
    ],
)
def test_runtime_default_is_the_only_one_the_constraint_allows(
    tmp_path: Path, cwd: Path, python: str, runtime: str
) -> None:
    spec = spec_of(facts(tmp_path, python=python), cwd, None)
    assert spec.target.runtime is RUNTIMES[runtime]
    assert spec.output.name == f"my_service-0.1.0-{runtime}-x86_64.zip"


def test_runtime_default_with_several_allowed_lists_them(tmp_path: Path, cwd: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_of(facts(tmp_path, python=">=3.12,<4.0"), cwd, None)
    text = str(caught.value)
    assert "No Lambda runtime given" in text
    assert "allows python3.12, python3.13, python3.14." in text
    assert "python3.11" not in text
    assert "--runtime" in text


def test_runtime_default_with_none_allowed(tmp_path: Path, cwd: Path) -> None:
    with pytest.raises(ConfigError, match="allows none"):
        spec_of(facts(tmp_path, python=">=4.0"), cwd, None)


@pytest.mark.parametrize("where", ["cli", "config"])
def test_unknown_runtime(project: ProjectFacts, cwd: Path, where: str) -> None:
    if where == "cli":
        args: dict[str, Any] = {"runtime": "python4.2"}
        config = None
        label = "--runtime"
    else:
        args = {}
        config = {"runtime": "python4.2"}
        label = "[tool.lambda-bundle] runtime"
    with pytest.raises(ConfigError) as caught:
        spec_of(project, cwd, config, **args)
    text = str(caught.value)
    assert text.startswith(f"{label}: unknown Lambda runtime 'python4.2'")
    assert ", ".join(RUNTIMES) in text


@pytest.mark.parametrize(("name", "date"), [("python3.8", "2024-10-14"), ("python3.7", "2023-12-04"),
                                            ("python3.6", "2022-07-18"), ("python2.7", "2021-07-15")])
@pytest.mark.parametrize("where", ["cli", "config"])
def test_retired_runtime_names_the_nearest_supported_one(
    project: ProjectFacts, cwd: Path, where: str, name: str, date: str
) -> None:
    args: dict[str, Any] = {"runtime": name} if where == "cli" else {}
    config = {"runtime": name} if where == "config" else None
    with pytest.raises(ConfigError) as caught:
        spec_of(project, cwd, config, **args)
    text = str(caught.value)
    assert f"the {name} runtime is retired" in text and f"AWS Lambda deprecated it on {date}" in text
    assert "nearest supported runtime is python3.9: use --runtime python3.9" in text


def test_retired_runtime_advice_follows_the_projects_python(tmp_path: Path, cwd: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_of(facts(tmp_path, python=">=3.11"), cwd, None, runtime="python3.8")
    assert "nearest supported runtime is python3.11" in str(caught.value)


@pytest.mark.parametrize("where", ["cli", "config"])
def test_requires_python_excluding_the_runtime(tmp_path: Path, cwd: Path, where: str) -> None:
    project = facts(tmp_path, python=">=3.12")
    config = {"runtime": "python3.11"} if where == "config" else None
    cli = {"runtime": "python3.11"} if where == "cli" else {}
    with pytest.raises(ConfigError) as caught:
        spec_of(project, cwd, config, **cli)
    text = str(caught.value)
    assert "requires Python >=3.12" in text
    assert "excludes the python3.11 runtime (Python 3.11)" in text


def test_runtime_check_uses_the_runtime_patch_version(tmp_path: Path, cwd: Path) -> None:
    # python3.12 is 3.12.11 in the table: a project needing >=3.12.5 still fits it
    spec = spec_of(facts(tmp_path, python=">=3.12.5,<3.13"), cwd, None)
    assert spec.target.runtime.name == "python3.12"


def test_validation_order_never_touches_the_filesystem(project: ProjectFacts, cwd: Path) -> None:
    before = sorted(p.name for p in project.root.parent.rglob("*"))
    spec_of(project, cwd, {"output": "deep/er/fn.zip"}, runtime="python3.12", target_dir="t/d")
    assert sorted(p.name for p in project.root.parent.rglob("*")) == before


@pytest.mark.parametrize("key", ["output", "target-dir"])
def test_config_path_with_nul_is_a_config_error(project: ProjectFacts, cwd: Path, key: str) -> None:
    doc = tomlkit.parse(f'[tool.lambda-bundle]\n{key} = "fn\\u0000.zip"\n')
    with pytest.raises(ConfigError, match=key):
        spec_of(project, cwd, doc["tool"]["lambda-bundle"], runtime="python3.12")


def test_newer_list_keys_cli_wins(project: ProjectFacts, cwd: Path) -> None:
    if "exclude" not in CONFIG_KEYS:
        pytest.skip("exclude is not a config key in this version")
    config = {"exclude": ["boto3"], "exclude-files": ["*/tests/*"], "max-unzipped-size": "10MB"}
    spec = spec_of(project, cwd, config, runtime="python3.12")
    assert spec.exclude == {"boto3"}
    assert spec.exclude_files == ("*/tests/*",)
    assert spec.max_unzipped_size == 10_000_000
    spec = spec_of(
        project, cwd, config, runtime="python3.12", exclude=["Botocore"],
        exclude_files=["*.md"], max_unzipped_size="1MiB",
    )
    assert spec.exclude == {"botocore"}
    assert spec.exclude_files == ("*.md",)
    assert spec.max_unzipped_size == 1024**2
    with pytest.raises(ConfigError, match="--max-unzipped-size"):
        spec_of(project, cwd, None, runtime="python3.12", max_unzipped_size="huge")


def test_newer_checks_in_build_spec(project: ProjectFacts, cwd: Path) -> None:
    if "handler" not in CONFIG_KEYS or "include" not in CONFIG_KEYS:
        pytest.skip("handler/include are not config keys in this version")
    with pytest.raises(ConfigError, match=r"\[tool\.lambda-bundle\] handler must look like module\.function"):
        spec_of(project, cwd, {"handler": "not a handler"}, runtime="python3.12")
    with pytest.raises(ConfigError, match="--check-handler must look like module.function"):
        spec_of(project, cwd, None, runtime="python3.12", handler="app:handler")
    for pattern in ("../secrets/*", "/etc/*", "C:/x", "!../x"):
        with pytest.raises(ConfigError, match="include pattern"):
            spec_of(project, cwd, {"include": [pattern]}, runtime="python3.12")


def test_include_globs_with_commas_are_kept_whole_in_config(project: ProjectFacts, cwd: Path) -> None:
    if "include" not in CONFIG_KEYS:
        pytest.skip("include is not a config key in this version")
    from_cli = spec_of(project, cwd, None, runtime="python3.12", include=["data/a,b.json"]).include
    assert from_cli == ("data/a,b.json",)
    from_config = spec_of(project, cwd, {"include": ["data/a,b.json"]}, runtime="python3.12").include
    assert from_config == from_cli


def test_handlers_layers_and_check_with(project: ProjectFacts, cwd: Path) -> None:
    layer_dir = project.root / "layer-target"
    layer_dir.mkdir()
    config = {"handler": ["app.a.handler", "app.b.handler", "app.a.handler"], "check-layers": ["layer-target"],
              "check-with": "py/python3.12"}
    spec = spec_of(project, cwd, config, runtime="python3.12")
    assert spec.handlers == ("app.a.handler", "app.b.handler")
    assert spec.check_layers == (layer_dir.resolve(),)
    assert spec.check_with == (project.root / "py" / "python3.12").resolve()
    one = spec_of(project, cwd, {"handler": "app.a.handler"}, runtime="python3.12")
    assert one.handlers == ("app.a.handler",) and one.check_layers == ()
    cli = spec_of(project, cwd, config, runtime="python3.12", handler=["app.c.handler"])
    assert cli.handlers == ("app.c.handler",)
    missing = {"handler": "app.a.handler", "check-layers": ["dist/layer.zip"]}
    with pytest.raises(ConfigError, match=r"\[tool\.lambda-bundle\] check-layers: the layer .* does not exist"):
        spec_of(project, cwd, missing, runtime="python3.12")
    # Building the layer itself (or bundling without a check) does not need the layer yet.
    assert spec_of(project, cwd, missing, runtime="python3.12", layout="layer").check_layers
    with pytest.raises(ConfigError, match="--check-layer: the layer"):
        spec_of(project, cwd, None, runtime="python3.12", handler=["app.a.handler"], check_layers=["nope.zip"])


def test_slim_from_config_or_cli(project: ProjectFacts, cwd: Path) -> None:
    assert spec_of(project, cwd, runtime="python3.12").slim is False
    assert spec_of(project, cwd, {"slim": True}, runtime="python3.12").slim is True
    assert spec_of(project, cwd, runtime="python3.12", slim=True).slim is True


def test_slim_per_named_bundle(project: ProjectFacts, cwd: Path) -> None:
    from poetry_plugin_lambda.spec import build_specs

    table = {"runtime": "python3.12", "bundles": {"deps": {"layout": "layer", "slim": True}, "code": {"layout": "code"}}}
    specs = {s.name: s for s in build_specs(table, {}, project, cwd)}
    assert specs["deps"].slim is True and specs["code"].slim is False


def test_an_unselected_bundle_nobody_names_is_not_read(project: ProjectFacts, cwd: Path) -> None:
    """`--bundle api` builds api; a broken bundle that api does not name as a layer stays unread."""
    from poetry_plugin_lambda.spec import build_specs

    table = {"runtime": "python3.12", "bundles": {
        "deps": {"layout": "layer"},
        "api": {"layout": "code", "check-layers": ["deps"]},
        "broken": {"runtime": "python2.7"},
    }}
    [api] = build_specs(table, {}, project, cwd, selected=["api"])
    assert api.check_layers == (project.root / "dist" / "lambda" / "my_service-0.1.0-deps-python3.12-x86_64.zip",)
    with pytest.raises(ConfigError, match="python2.7"):
        build_specs(table, {}, project, cwd, selected=["broken"])


def test_an_output_path_keeps_a_symlink_at_its_end(project: ProjectFacts, cwd: Path, tmp_path: Path) -> None:
    """Folders above an output are resolved, the output's own name is not: a link there stays a
    link for the output checks to refuse (resolved, it would be written through)."""
    elsewhere = tmp_path / "victims"
    elsewhere.mkdir()
    (cwd / "out.zip").symlink_to(elsewhere / "victim.zip")
    (cwd / "tdir").symlink_to(elsewhere / "victim", target_is_directory=True)
    (cwd / "real").mkdir()
    (cwd / "via").symlink_to(cwd / "real", target_is_directory=True)
    spec = spec_of(project, cwd, None, runtime="python3.12", output="out.zip", target_dir="tdir")
    assert spec.output == cwd.resolve() / "out.zip" and spec.output.is_symlink()
    assert spec.target_dir == cwd.resolve() / "tdir" and spec.target_dir.is_symlink()
    spec = spec_of(project, cwd, None, runtime="python3.12", output="via/fn.zip", target_dir="via/t/..")
    assert spec.output == (cwd / "real" / "fn.zip").resolve()
    assert spec.target_dir == (cwd / "real").resolve()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"output": "build/b/a.zip"}, {"target-dir": "build/b"}),  # a's ZIP inside b's target dir
        ({"target-dir": "build/x/a"}, {"target-dir": "build/x"}),  # a's target dir inside b's
        ({}, {"target-dir": "build/lambda/a-python3.12-x86_64/inner"}),  # b's inside a's default one
    ],
)
def test_a_bundles_outputs_inside_anothers_target_dir_are_refused(
    project: ProjectFacts, cwd: Path, a: dict, b: dict
) -> None:
    from poetry_plugin_lambda.spec import build_specs

    table = {"runtime": "python3.12", "bundles": {"a": a, "b": b}}
    with pytest.raises(ConfigError, match="inside the target dir of bundle"):
        build_specs(table, {}, project, cwd)
    table = {"runtime": "python3.12", "bundles": {"a": {"target-dir": "build/a"}, "b": {"target-dir": "build/ab"}}}
    assert len(build_specs(table, {}, project, cwd)) == 2  # a shared prefix is not nesting


def test_bundles_whose_outputs_differ_only_in_case_are_refused(project: ProjectFacts, cwd: Path) -> None:
    """`api` and `API` write the same ZIP and target dir on a case-insensitive file system."""
    from poetry_plugin_lambda.spec import build_specs

    table = {"runtime": "python3.12", "bundles": {"api": {"layout": "code"}, "API": {"layout": "code"}}}
    with pytest.raises(ConfigError, match="would both write the ZIP"):
        build_specs(table, {}, project, cwd)


@pytest.mark.parametrize("name", ["api\n", "api\n\n", "-api", "api/x", ""])
def test_a_bundle_name_that_cannot_be_part_of_a_file_name_is_refused(name: str) -> None:
    """The whole name is checked: `$` let one ending in a newline through into the file names."""
    with pytest.raises(ConfigError, match="use letters, digits"):
        read_config({"bundles": {name: {"layout": "code"}}})
    assert read_config({"bundles": {"api.v2_x-1": {"layout": "code"}}}) == {"bundles": {"api.v2_x-1": {"layout": "code"}}}


def test_outputs_are_compared_with_their_folders_resolved(project: ProjectFacts, cwd: Path, tmp_path: Path) -> None:
    """`build` a link to a bigger disk: a default target dir and a configured path inside it are
    spelled the same way, so one inside the other is still found."""
    from poetry_plugin_lambda.spec import build_specs

    disk = tmp_path / "disk"
    disk.mkdir()
    (project.root / "build").symlink_to(disk, target_is_directory=True)
    table = {"runtime": "python3.12", "bundles": {"a": {}, "b": {"target-dir": "build/lambda/a-python3.12-x86_64/inner"}}}
    with pytest.raises(ConfigError, match="inside the target dir of bundle"):
        build_specs(table, {}, project, cwd)
    [a] = build_specs({"runtime": "python3.12", "bundles": {"a": {}}}, {}, project, cwd)
    assert a.target_dir == disk.resolve() / "lambda" / "a-python3.12-x86_64"


@pytest.mark.parametrize("handler", [" app.handler", "app.handler ", "app.handler\t", "app .handler"])
def test_a_handler_with_whitespace_is_refused_not_stripped(project: ProjectFacts, cwd: Path, handler: str) -> None:
    """Lambda's Handler setting takes no whitespace: a check that strips it would pass a name
    Lambda refuses."""
    with pytest.raises(ConfigError, match="must look like module.function"):
        spec_of(project, cwd, {"handler": handler}, runtime="python3.12")
    with pytest.raises(ConfigError, match="must look like module.function"):
        spec_of(project, cwd, None, runtime="python3.12", handler=[handler])
