"""`--check-handler` imports handlers as Lambda would: isolated, Lambda's path and variables,
the runtime's SDK from the lock, layers, several handlers, other architectures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import ARM_TAG
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.interpreters import find_python
from tests.fixtures.projects import poetry_env
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import elf_bytes

# botocore as far as a handler module's first line sees it: a client needs a region.
FAKE_BOTOCORE = '''\
import os


class NoRegionError(Exception):
    pass


def client(service, region_name=None):
    region = region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise NoRegionError("You must specify a region.")
    return {"service": service, "region": region}
'''
FAKE_BOTO3 = "import botocore\n\n\ndef client(service, **kwargs):\n    return botocore.client(service, **kwargs)\n"
BOTO3_HANDLER = '''\
import os

import boto3

EC2 = boto3.client("ec2")


def handler(event, context):
    return {"region": EC2["region"], "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}
'''
ALPHA_HANDLER = '''\
import os

import alpha

try:  # a handler writing beside itself at import time must not reach the target dir
    with open(os.path.join(os.path.dirname(__file__), "written-at-import.txt"), "w") as f:
        f.write("x")
except OSError:
    pass


def handler(event, context):
    return alpha.hello()
'''
CTRL_C_HANDLER = '''\
import os
import signal
import time

os.kill(os.getppid(), signal.SIGINT)  # the user presses Ctrl-C while the handler is checked
time.sleep(30)


def handler(event, context):
    return 1
'''
# A handler whose import fails quoting a URL with credentials (a database, a private index).
LEAKY_HANDLER = 'raise RuntimeError("could not connect to postgres://admin:HuNtEr2@db.internal:5432/app")\n'
PY = "3.12"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    if find_python(PY) is None:
        pytest.skip(f"no python{PY} to check handlers with")
    base = tmp_path_factory.mktemp("handlercheck")
    root = base / "index"
    root.mkdir()
    build_wheel(root, "botocore", "1.34.0", requires=["jmespath<2,>=0.7.1"],
                files={"botocore/__init__.py": FAKE_BOTOCORE, "botocore/exceptions.py": "from botocore import NoRegionError\n"})
    build_wheel(root, "boto3", "1.34.0", requires=["botocore<1.35,>=1.34"], files={"boto3/__init__.py": FAKE_BOTO3})
    build_wheel(root, "jmespath", "1.0.1")
    build_wheel(root, "alpha", "1.0")
    build_wheel(root, "docopt", "0.6.2")
    build_wheel(root, "native", "1.0", tag=ARM_TAG.replace("cp311", "cp312"), files={
        "native/__init__.py": "from native._speed import *\n",
        "native/_speed.cpython-312-aarch64-linux-gnu.so": elf_bytes("aarch64"),
    })
    cache = base / "cache"
    cache.mkdir()
    with LoopbackIndex(root) as index:
        def project(name: str, **kwargs) -> Path:
            path = write_project(base / name, name, index_url=index.url,
                                 requires_python=">=3.12,<3.13", **kwargs)
            poetry_lock(path, cache)
            return path

        yield {
            "cache": cache,
            "base": base,
            # boto3 where the seed workflow keeps it: the dev group.
            "dev_sdk": project("devsdk", dependencies={"alpha": "1.0"}, groups={"dev": {"boto3": "1.34.0"}},
                               handler_source=BOTO3_HANDLER),
            "main_sdk": project("mainsdk", dependencies={"boto3": "1.34.0"}, handler_source=BOTO3_HANDLER),
            "no_sdk": project("nosdk", dependencies={"alpha": "1.0"}, handler_source=BOTO3_HANDLER),
            "alpha": project("alphafn", dependencies={"alpha": "1.0", "docopt": "0.6.2"},
                             handler_source=ALPHA_HANDLER + "import docopt\n"),
            "ctrl_c": project("ctrlcfn", dependencies={"alpha": "1.0"}, handler_source=CTRL_C_HANDLER),
            "leaky": project("leakyfn", dependencies={"alpha": "1.0"}, handler_source=LEAKY_HANDLER),
            "native": project("nativefn", dependencies={"native": "1.0"},
                              handler_source="import native\n\n\ndef handler(event, context):\n    return 1\n"),
        }


def _run(world, name: str, tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None):
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "", **(extra_env or {})}
    return bundle(world[name], world["cache"], "--format", "json", "-o", str(tmp_path / f"{name}.zip"),
                  "--target-dir", str(tmp_path / f"{name}-target"), *args, extra_env=env)


def _checks(result) -> dict[str, dict]:
    return {c["handler"]: c for c in result.report["handler_checks"]}


@pytest.mark.parametrize("exclude", [[], ["--exclude", "boto3"]])
def test_module_level_boto3_client_passes_with_the_sdk_from_the_dev_group(world, tmp_path: Path, exclude) -> None:
    result = _run(world, "dev_sdk", tmp_path, *exclude, "--check-handler", "devsdk.handler.handler")
    assert result.returncode == 0, result.stderr
    check = _checks(result)["devsdk.handler.handler"]
    assert check["status"] == "passed", check
    assert "runtime SDK: from the lock, boto3 1.34.0, botocore 1.34.0, jmespath 1.0.1" in check["message"]


def test_module_level_boto3_client_passes_bundled_and_excluded(world, tmp_path: Path) -> None:
    bundled = _run(world, "main_sdk", tmp_path, "--check-handler", "mainsdk.handler.handler")
    assert bundled.returncode == 0, bundled.stderr
    assert _checks(bundled)["mainsdk.handler.handler"]["status"] == "passed"
    excluded = _run(world, "main_sdk", tmp_path, "--exclude", "boto3", "--check-handler", "mainsdk.handler.handler")
    assert excluded.returncode == 0, excluded.stderr
    assert {p["name"] for p in excluded.report["packages"]} == {"mainsdk"}
    assert _checks(excluded)["mainsdk.handler.handler"]["status"] == "passed"


def test_boto3_absent_from_the_lock_is_provided_by_the_runtime_not_checked(world, tmp_path: Path) -> None:
    result = _run(world, "no_sdk", tmp_path, "--check-handler", "nosdk.handler.handler")
    assert result.returncode == 0, result.stderr
    check = _checks(result)["nosdk.handler.handler"]
    assert check["status"] == "passed"
    assert "boto3 is provided by the runtime, not checked" in check["message"]


def test_a_venv_on_path_does_not_supply_what_the_bundle_lacks(world, tmp_path: Path) -> None:
    python = find_python(PY)
    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob(f"lib/python{PY}/site-packages"))
    (site / "docopt").mkdir()
    (site / "docopt" / "__init__.py").write_text("def docopt():\n    return 'from the venv'\n")
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    for extra in ([], ["--check-with", str(venv / "bin" / f"python{PY}")]):
        result = _run(world, "alpha", tmp_path, "--exclude", "docopt", "--check-handler", "alphafn.handler.handler",
                      *extra, extra_env=env)
        assert result.returncode == 3, result.stderr
        check = _checks(result)["alphafn.handler.handler"]
        assert check["status"] == "failed"
        assert "The bundle lacks 'docopt'" in check["message"]
        assert "docopt is excluded: give the layer with --check-layer, or keep it." in check["message"]
        assert str(venv) not in check["message"]


def test_two_handlers_one_missing_exit_3_naming_it(world, tmp_path: Path) -> None:
    good, bad = "alphafn.handler.handler", "alphafn.handler.missing"
    result = _run(world, "alpha", tmp_path, "--check-handler", good, "--check-handler", bad)
    assert result.returncode == 3
    checks = result.report["handler_checks"]
    assert [c["handler"] for c in checks] == [good, bad]
    assert [c["status"] for c in checks] == ["passed", "failed"]
    assert "has no function 'missing'" in checks[1]["message"]
    assert f"The handler check failed for {bad} " in result.stderr
    assert good not in result.stderr.split("failed for", 1)[1]
    # Text, quiet: the failure is still printed.
    quiet = bundle(world["alpha"], world["cache"], "-q", "-o", str(tmp_path / "q.zip"), "--target-dir",
                   str(tmp_path / "q-target"), "--check-handler", good, "--check-handler", bad)
    assert quiet.returncode == 3
    assert "has no function 'missing'" in quiet.stderr and f"failed for {bad}" in quiet.stderr


def test_import_time_writes_do_not_reach_the_target_dir_or_the_project(world, tmp_path: Path) -> None:
    result = _run(world, "alpha", tmp_path, "--check-handler", "alphafn.handler.handler")
    assert result.returncode == 0, result.stderr
    assert not list((tmp_path / "alpha-target").rglob("written-at-import.txt"))
    assert not list(world["alpha"].rglob("written-at-import.txt"))


def test_handler_list_in_config(world, tmp_path: Path) -> None:
    project = world["alpha"]
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text()
    pyproject.write_text(original + '\n[tool.lambda-bundle]\nhandler = ["alphafn.handler.handler", "alphafn.nothere.handler"]\n')
    try:
        result = _run(world, "alpha", tmp_path)
    finally:
        pyproject.write_text(original)
    assert result.returncode == 3
    statuses = {c["handler"]: c["status"] for c in result.report["handler_checks"]}
    assert statuses == {"alphafn.handler.handler": "passed", "alphafn.nothere.handler": "failed"}


def test_a_code_bundle_passes_with_its_layer_and_fails_without(world, tmp_path: Path) -> None:
    layer = _run(world, "alpha", tmp_path, "--layout", "layer", "-o", str(tmp_path / "layer.zip"),
                 "--target-dir", str(tmp_path / "layer-target"))
    assert layer.returncode == 0, layer.stderr
    handler = ["--layout", "code", "--check-handler", "alphafn.handler.handler"]
    alone = _run(world, "alpha", tmp_path, *handler)
    assert alone.returncode == 3
    message = _checks(alone)["alphafn.handler.handler"]["message"]
    assert "The bundle lacks 'alpha'" in message and "--check-layer" in message
    for given in (tmp_path / "layer.zip", tmp_path / "layer-target"):
        with_layer = _run(world, "alpha", tmp_path, *handler, "--check-layer", str(given))
        assert with_layer.returncode == 0, with_layer.stderr
        assert _checks(with_layer)["alphafn.handler.handler"]["status"] == "passed"


def test_a_missing_layer_is_a_config_error_before_bundling(world, tmp_path: Path) -> None:
    result = _run(world, "alpha", tmp_path, "--layout", "code", "--check-handler", "alphafn.handler.handler",
                  "--check-layer", str(tmp_path / "nope.zip"))
    assert result.returncode == 1
    assert "--check-layer: the layer" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "alpha.zip").exists()


@pytest.mark.skipif(__import__("platform").machine() != "x86_64", reason="needs an x86_64 host")
def test_arm64_binaries_are_skipped_with_advice_unless_an_arm64_python_is_given(world, tmp_path: Path) -> None:
    result = _run(world, "native", tmp_path, "--arch", "arm64", "--check-handler", "nativefn.handler.handler")
    assert result.returncode == 0, result.stderr
    check = _checks(result)["nativefn.handler.handler"]
    assert check["status"] == "skipped"
    assert "arm64 binaries" in check["message"] and "--check-with" in check["message"]
    host = _run(world, "native", tmp_path, "--arch", "arm64", "--check-handler", "nativefn.handler.handler",
                "--check-with", str(find_python(PY)))
    assert host.returncode == 0, host.stderr
    assert "runs x86_64 code" in _checks(host)["nativefn.handler.handler"]["message"]


def test_check_with_of_another_version_fails_before_bundling(world, tmp_path: Path) -> None:
    other = find_python("3.11")
    if other is None:
        pytest.skip("no python3.11")
    result = _run(world, "alpha", tmp_path, "--check-handler", "alphafn.handler.handler", "--check-with", str(other))
    assert result.returncode == 1
    assert "is CPython 3.11; the handler check needs CPython 3.12" in result.stderr
    assert not (tmp_path / "alpha.zip").exists()


def test_credentials_in_a_handlers_import_error_are_never_printed(world, tmp_path: Path) -> None:
    """The failure is reported with its URL, without the URL's user information: in the JSON
    report, on stderr, and in the text report."""
    result = _run(world, "leaky", tmp_path, "--check-handler", "leakyfn.handler.handler")
    assert result.returncode == 3, result.stderr
    assert "postgres://db.internal:5432/app" in _checks(result)["leakyfn.handler.handler"]["message"]
    text = bundle(world["leaky"], world["cache"], "-o", str(tmp_path / "t.zip"), "--target-dir",
                  str(tmp_path / "t-target"), "--check-handler", "leakyfn.handler.handler")
    assert text.returncode == 3
    assert "postgres://db.internal:5432/app" in text.stdout
    for printed in (result.stdout, result.stderr, text.stdout, text.stderr):
        assert "HuNtEr2" not in printed and "admin:" not in printed


def test_ctrl_c_during_the_handler_check_says_the_outputs_are_written(world, tmp_path: Path) -> None:
    """Once the outputs are committed, a Ctrl-C does not claim they were left as they were."""
    out, target = tmp_path / "fn.zip", tmp_path / "fn-target"
    done = subprocess.run(
        [sys.executable, "-m", "poetry", "lambda-bundle", "--no-ansi", "-o", str(out), "--target-dir", str(target),
         "--check-handler", "ctrlcfn.handler.handler"],
        cwd=world["ctrl_c"], env=poetry_env(world["cache"]), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=120, check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as in a terminal
    )
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Interrupted after the outputs were written" in lines[0], done.stderr
    assert dir_files(target) == zip_files(out)
    assert "ctrlcfn/handler.py" in zip_files(out)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".new-" in p.name]
