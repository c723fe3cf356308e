"""The handler check's pieces: Lambda's world, the child import, explanations, interpreters."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.handler_import import Context
from poetry_plugin_lambda.handler_import import explain
from poetry_plugin_lambda.handler_import import run_import
from poetry_plugin_lambda.handler_import import sentence
from poetry_plugin_lambda.interpreters import base_interpreter
from poetry_plugin_lambda.lambda_env import DEFAULT_REGION
from poetry_plugin_lambda.lambda_env import LambdaRoot
from poetry_plugin_lambda.lambda_env import add_layer
from poetry_plugin_lambda.lambda_env import check_layer_path
from poetry_plugin_lambda.lambda_env import elf_machines
from poetry_plugin_lambda.lambda_env import lambda_environ
from tests.fixtures.interpreters import find_python
from tests.fixtures.wheelfactory import elf_bytes

BUNDLE = Context("bundle", frozenset({"docopt"}), frozenset({"boto3", "botocore"}), False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You must specify a region.", "You must specify a region."),
        ("You must specify a region", "You must specify a region."),
        ("  spread\n  over lines  ", "spread over lines."),
        ("Really?", "Really?"),
        ("", ""),
    ],
)
def test_sentence_ends_with_one_full_stop(text: str, expected: str) -> None:
    assert sentence(text) == expected


def test_an_error_message_ending_with_a_period_is_not_doubled() -> None:
    result = {"ok": False, "stage": "import", "type": "NoRegionError", "message": "You must specify a region.",
              "name": None, "module": "app.handler", "function": "handler"}
    check = explain("app.handler.handler", result, BUNDLE)
    assert check.status == "failed"
    assert ".." not in check.message
    assert check.message.startswith("NoRegionError: You must specify a region. The module raised")


def _missing(name: str, module: str = "app.handler") -> dict[str, object]:
    return {"ok": False, "stage": "import", "type": "ModuleNotFoundError", "message": f"No module named {name!r}",
            "name": name, "module": module, "function": "handler"}


def test_an_sdk_module_the_lock_lacks_is_a_pass_with_a_note() -> None:
    check = explain("app.handler.handler", _missing("boto3"), BUNDLE)
    assert check.status == "passed"
    assert "boto3 is provided by the runtime, not checked" in check.message
    sdk_in_lock = Context("bundle", frozenset(), frozenset(), False)
    assert explain("app.handler.handler", _missing("boto3"), sdk_in_lock).status == "failed"


def test_an_excluded_package_says_how_to_give_it() -> None:
    check = explain("app.handler.handler", _missing("docopt"), BUNDLE)
    assert check.status == "failed"
    assert "docopt is excluded: give the layer with --check-layer, or keep it." in check.message


def test_a_code_bundle_without_layers_says_to_give_one() -> None:
    code = Context("code", frozenset(), frozenset(), False)
    check = explain("app.handler.handler", _missing("requests.adapters"), code)
    assert "The bundle lacks 'requests'" in check.message and "--check-layer" in check.message


def test_a_typo_in_the_module_and_a_crash() -> None:
    assert "check the handler's module name" in explain("app.hndler.h", _missing("app.hndler", "app.hndler"), BUNDLE).message
    crash = explain("a.b", {"ok": False, "stage": "crash", "returncode": -9, "message": "Killed"}, BUNDLE)
    assert crash.status == "failed" and "(exit code -9)" in crash.message and crash.message.endswith("Killed.")


def test_lambda_environ_sets_lambdas_variables_and_passes_nothing_else(tmp_path: Path) -> None:
    root = LambdaRoot(tmp_path).create()
    user = {"PYTHONPATH": "/evil", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_PROFILE": "prod", "VIRTUAL_ENV": "/venv"}
    env = lambda_environ(root, "python3.12", "fn", "app.handler", Path("/py/bin/python3.12"), user)
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == DEFAULT_REGION
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["LAMBDA_TASK_ROOT"] == str(root.task)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["LANG"] == "en_US.UTF-8" and env["TZ"] == ":UTC"
    assert not {"PYTHONPATH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "VIRTUAL_ENV"} & set(env)
    regional = lambda_environ(root, "python3.12", "fn", "h.h", Path("/p"), {"AWS_DEFAULT_REGION": "eu-west-1"})
    assert regional["AWS_REGION"] == regional["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_sys_path_is_lambdas_order(tmp_path: Path) -> None:
    root = LambdaRoot(tmp_path)
    assert root.sys_path("3.12") == [
        str(tmp_path / "task"),
        str(tmp_path / "opt" / "python"),
        str(tmp_path / "opt" / "python" / "lib" / "python3.12" / "site-packages"),
        str(tmp_path / "runtime"),
    ]


def test_layers_merge_into_opt_in_order(tmp_path: Path) -> None:
    first = tmp_path / "first.zip"
    with zipfile.ZipFile(first, "w") as zf:
        zf.writestr("python/shared.py", "WHO = 'first'\n")
        zf.writestr("python/only_first.py", "")
    second = tmp_path / "second"
    (second / "python").mkdir(parents=True)
    (second / "python" / "shared.py").write_text("WHO = 'second'\n")
    (second / ".lambda-bundle-target").write_text("")
    opt = tmp_path / "opt"
    for layer in (first, second):
        add_layer(check_layer_path(layer, "--check-layer"), opt)
    assert (opt / "python" / "shared.py").read_text() == "WHO = 'second'\n"
    assert (opt / "python" / "only_first.py").exists()
    assert not (opt / ".lambda-bundle-target").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        check_layer_path(tmp_path / "nope.zip", "--check-layer")
    (tmp_path / "notzip.zip").write_text("x")
    with pytest.raises(ConfigError, match="is not a ZIP"):
        check_layer_path(tmp_path / "notzip.zip", "--check-layer")


def test_elf_machines(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    assert elf_machines(tmp_path) == set()
    (tmp_path / "pkg" / "_ext.so").write_bytes(elf_bytes("aarch64"))
    assert elf_machines(tmp_path) == {"arm64"}


@pytest.fixture
def python312() -> Path:
    python = find_python("3.12")
    if python is None:
        pytest.skip("no python3.12")
    return python


def test_the_child_sees_only_lambdas_path_and_no_site(tmp_path: Path, python312: Path) -> None:
    root = LambdaRoot(tmp_path / "lambda").create()
    (root.task / "probe.py").write_text(
        "import json, os, sys\n"
        "FACTS = {'path': sys.path, 'site': 'site' in sys.modules, 'cwd': os.getcwd()}\n"
        "with open(os.path.join(os.environ['TMPDIR'], 'facts.json'), 'w') as f:\n"
        "    json.dump(FACTS, f)\n"
        "def handler(event, context):\n    pass\n"
    )
    environ = lambda_environ(root, "python3.12", "fn", "probe.handler", python312, {"PYTHONPATH": "/evil"})
    result = run_import(python312, "probe.handler", root.sys_path("3.12"), root.task, environ, tmp_path / "r.json")
    assert result["ok"] is True, result
    facts = json.loads((root.tmp / "facts.json").read_text())
    assert facts["path"][:4] == root.sys_path("3.12")
    assert not [p for p in facts["path"][4:] if "site-packages" in p or "dist-packages" in p or p == "/evil"]
    assert facts["site"] is False
    assert Path(facts["cwd"]) == root.task


def test_a_handler_that_exits_or_hangs_around_does_not_hold_the_check(tmp_path: Path, python312: Path) -> None:
    root = LambdaRoot(tmp_path / "lambda").create()
    (root.task / "threads.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\n"
        "def handler(event, context):\n    pass\n"
    )
    (root.task / "quits.py").write_text("import os\nos._exit(7)\n")
    environ = lambda_environ(root, "python3.12", "fn", "x", python312, {})
    ok = run_import(python312, "threads.handler", root.sys_path("3.12"), root.task, environ, tmp_path / "a.json")
    assert ok["ok"] is True
    quits = run_import(python312, "quits.handler", root.sys_path("3.12"), root.task, environ, tmp_path / "b.json")
    assert quits["stage"] == "crash" and quits["returncode"] == 7


def test_a_venvs_interpreter_is_replaced_by_its_base(tmp_path: Path, python312: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([str(python312), "-m", "venv", "--without-pip", str(venv)], check=True)
    found = base_interpreter(venv / "bin" / "python3.12", "3.12")
    assert found is not None and not found.is_venv
    assert venv not in found.executable.parents
    assert base_interpreter(venv / "bin" / "python3.12", "3.11") is None
