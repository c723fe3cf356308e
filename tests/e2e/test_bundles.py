"""Several bundles from one project in one run: `[tool.lambda-bundle.bundles.<name>]`."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from tests.e2e.helpers import HANDLER
from tests.e2e.helpers import build_core_wheels
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import elf_machine
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project

BUNDLES = {
    "deps": {"layout": "layer"},
    "api": {"layout": "code"},
    "worker": {"with": ["worker"], "exclude": ["boto3"]},
    "arm": {"architecture": "arm64"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("bundles")
    index_root = base / "index"
    index_root.mkdir()
    build_core_wheels(index_root)
    with LoopbackIndex(index_root) as index:
        project = write_project(
            base / "service", "service",
            dependencies={"requests": "^2.32", "aws-requests-auth": "^0.4", "boto3": "^1.34"},
            groups={"worker": {"tomli": "^2"}},
            index_url=index.url, requires_python=">=3.11,<3.12", handler_source=HANDLER,
            tool_lambda_bundle={"runtime": "python3.11", "bundles": BUNDLES},
        )
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(project, cache)
        yield {"project": project, "cache": cache, "index": index}


@pytest.fixture
def service(world: dict, tmp_path: Path) -> Path:
    shutil.copytree(world["project"], tmp_path / "service")
    return tmp_path / "service"


def _names(zip_path: str) -> set[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return set(zf.namelist())


def _tops(zip_path: str) -> set[str]:
    return {n.split("/", 1)[0] for n in _names(zip_path) if not n.startswith("python/")} | {
        n.split("/", 2)[1] for n in _names(zip_path) if n.startswith("python/")
    }


def test_every_bundle_is_built_with_its_own_outputs_and_overrides(world: dict, service: Path) -> None:
    result = bundle(service, world["cache"], "--format", "json")
    assert result.returncode == 0, result.stderr
    reports = {r["name"]: r for r in result.report["bundles"]}
    assert list(reports) == ["deps", "api", "worker", "arm"]  # the order of the config
    dist = service / "dist" / "lambda"
    assert {Path(r["zip"]) for r in reports.values()} == {
        dist / "service-0.1.0-deps-python3.11-x86_64.zip",
        dist / "service-0.1.0-api-python3.11-x86_64.zip",
        dist / "service-0.1.0-worker-python3.11-x86_64.zip",
        dist / "service-0.1.0-arm-python3.11-arm64.zip",
    }
    assert Path(reports["api"]["target_dir"]) == service / "build" / "lambda" / "api-python3.11-x86_64"
    for report in reports.values():
        assert dir_files(Path(report["target_dir"])) == zip_files(Path(report["zip"]))
    # layout: the layer holds the dependencies under python/, the code bundle only the project
    assert all(n.startswith("python/") for n in _names(reports["deps"]["zip"]))
    assert "service" not in _tops(reports["deps"]["zip"]) and "boto3" in _tops(reports["deps"]["zip"])
    assert {n.split("/", 1)[0] for n in _names(reports["api"]["zip"])} == {"service", "service-0.1.0.dist-info"}
    # groups and exclude: worker has tomli, and neither boto3 nor what only boto3 needs
    worker = _tops(reports["worker"]["zip"])
    assert "tomli" in worker and "requests" in worker
    assert not {"boto3", "botocore", "jmespath"} & worker
    assert "tomli" not in _tops(reports["arm"]["zip"])
    # arch: the arm64 bundle holds the aarch64 build of the native package
    with zipfile.ZipFile(reports["arm"]["zip"]) as zf:
        so = [n for n in zf.namelist() if n.endswith(".so")]
        assert so and all(elf_machine(zf.read(n)) == 183 for n in so)
    # shared work: each wheel downloaded once, though four bundles use it (the native package
    # twice: one wheel per architecture)
    downloads = [line.strip() for line in result.stderr.splitlines() if "Downloading" in line]
    assert {d: downloads.count(d) for d in downloads if downloads.count(d) > 1} == {
        "- Downloading charset-normalizer (3.3.2)": 2
    }
    assert result.stderr.count("Building service (0.1.0)") == 1


def test_bundle_option_selects_and_text_shows_each_and_a_total(world: dict, service: Path) -> None:
    result = bundle(service, world["cache"], "--bundle", "api", "--bundle", "worker")
    assert result.returncode == 0, result.stderr
    built = sorted(p.name for p in (service / "dist" / "lambda").iterdir())
    assert built == ["service-0.1.0-api-python3.11-x86_64.zip", "service-0.1.0-worker-python3.11-x86_64.zip"]
    assert "Built bundle api:" in result.stdout and "Built bundle worker:" in result.stdout
    assert "2 of 2 bundles built" in result.stdout


def test_unknown_bundle_names_the_defined_ones(world: dict, service: Path) -> None:
    result = bundle(service, world["cache"], "--bundle", "apii")
    assert result.returncode == 1
    assert "No bundle named 'apii'" in result.stderr
    assert "Defined bundles: deps, api, worker, arm." in result.stderr
    assert not (service / "dist").exists()


def test_unknown_key_in_a_bundle_table_is_named(world: dict, service: Path) -> None:
    _edit_bundles(service, {**BUNDLES, "api": {"layuot": "code"}})
    result = bundle(service, world["cache"])
    assert result.returncode == 1
    assert "Unknown key 'layuot' in [tool.lambda-bundle.bundles.api]. Did you mean 'layout'?" in result.stderr


def test_one_failing_bundle_leaves_the_others_built_and_its_own_outputs(world: dict, service: Path) -> None:
    first = bundle(service, world["cache"], "--format", "json")
    assert first.returncode == 0, first.stderr
    before = {r["name"]: Path(r["zip"]).read_bytes() for r in first.report["bundles"]}
    handler = service / "service" / "handler.py"
    handler.write_text(handler.read_text() + "\nCHANGED = 1\n")
    _edit_bundles(service, {**BUNDLES, "worker": {**BUNDLES["worker"], "max-unzipped-size": 100},
                            "arm": {"architecture": "arm64", "exclude": ["no-such-package"]}})
    second = bundle(service, world["cache"], "--format", "json", "-q")
    assert second.returncode == 1
    reports = {r["name"]: r for r in second.report["bundles"]}
    assert "over the limit" in reports["worker"]["error"]
    assert "Cannot exclude no-such-package" in reports["arm"]["error"]
    assert "Bundle worker failed" in second.stderr and "Bundle arm failed" in second.stderr
    for name in ("worker", "arm"):  # the failed ones keep their previous outputs
        previous = Path(first.report["bundles"][list(BUNDLES).index(name)]["zip"])
        assert previous.read_bytes() == before[name]
    api = Path(reports["api"]["zip"])
    assert api.read_bytes() != before["api"]  # the others were rebuilt
    with zipfile.ZipFile(api) as zf:
        assert b"CHANGED = 1" in zf.read("service/handler.py")


def test_same_output_for_two_bundles_is_refused(world: dict, service: Path) -> None:
    result = bundle(service, world["cache"], "--output", str(service / "one.zip"))
    assert result.returncode == 1
    assert "would both write the ZIP" in result.stderr
    assert "use them with one --bundle" in result.stderr
    single = bundle(service, world["cache"], "--output", str(service / "one.zip"), "--bundle", "api")
    assert single.returncode == 0, single.stderr


def test_bundle_option_without_bundles_says_how_to_define_them(world: dict, tmp_path: Path) -> None:
    project = tmp_path / "plain"
    shutil.copytree(world["project"], project)
    doc = tomlkit.parse((project / "pyproject.toml").read_text())
    del doc["tool"]["lambda-bundle"]["bundles"]
    (project / "pyproject.toml").write_text(tomlkit.dumps(doc))
    result = bundle(project, world["cache"], "--bundle", "api")
    assert result.returncode == 1
    assert "--bundle needs named bundles" in result.stderr
    plain = bundle(project, world["cache"], "--format", "json")
    assert plain.returncode == 0, plain.stderr
    assert "bundles" not in plain.report and "name" not in plain.report  # the single-report shape


def _edit_bundles(project: Path, bundles: dict) -> None:
    doc = tomlkit.parse((project / "pyproject.toml").read_text())
    table = tomlkit.table(is_super_table=True)
    for name, values in bundles.items():
        sub = tomlkit.table()
        for key, value in values.items():
            sub[key] = value
        table[name] = sub
    doc["tool"]["lambda-bundle"]["bundles"] = table
    (project / "pyproject.toml").write_text(tomlkit.dumps(doc))


def test_a_code_bundle_is_checked_with_its_sibling_layer_bundle(world: dict, service: Path) -> None:
    api = {"layout": "code", "handler": ["service.handler.handler"]}
    _edit_bundles(service, {"deps": {"layout": "layer"}, "api": {**api, "check-layers": ["deps"]}})
    result = bundle(service, world["cache"], "--format", "json")
    assert result.returncode == 0, result.stderr
    checks = {r["name"]: r["handler_checks"] for r in result.report["bundles"]}
    assert checks["deps"] is None
    assert [c["status"] for c in checks["api"]] == ["passed"], checks["api"]

    _edit_bundles(service, {"deps": {"layout": "layer"}, "api": api})  # the same, without its layer
    alone = bundle(service, world["cache"], "--format", "json")
    assert alone.returncode == 3, alone.stderr
    [check] = next(r for r in alone.report["bundles"] if r["name"] == "api")["handler_checks"]
    assert check["status"] == "failed"
    assert "aws_requests_auth" in check["message"] or "requests" in check["message"]
    assert "Bundle api: the handler check failed for service.handler.handler" in alone.stderr

    # the layer bundle fails in this run: its previous ZIP is not what the function deploys with
    _edit_bundles(service, {"deps": {"layout": "layer", "max-unzipped-size": 1000}, "api": {**api, "check-layers": ["deps"]}})
    stale = bundle(service, world["cache"], "--format", "json")
    assert stale.returncode == 1, stale.stderr
    [check] = next(r for r in stale.report["bundles"] if r["name"] == "api")["handler_checks"]
    assert check["status"] == "skipped" and "its layer bundle deps failed in this run" in check["message"], check
