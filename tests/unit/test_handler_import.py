"""The handler check's pieces: Lambda's world, the child import, explanations, interpreters."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from poetry_plugin_lambda.errors import ConfigError
from poetry_plugin_lambda.handler_check import check_handler_name
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
from poetry_plugin_lambda.lambda_env import extract_zip
from poetry_plugin_lambda.lambda_env import lambda_environ
from poetry_plugin_lambda.lambda_env import layer_notes
from tests.fixtures.interpreters import find_python
from tests.fixtures.wheelfactory import claims
from tests.fixtures.wheelfactory import elf_bytes
from tests.fixtures.wheelfactory import rename_raw

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
    os.mkfifo(tmp_path / "fifo.zip")
    with pytest.raises(ConfigError, match="is not a file or a folder"):
        check_layer_path(tmp_path / "fifo.zip", "--check-layer")
    (tmp_path / "notzip.zip").write_text("x")
    with pytest.raises(ConfigError, match="is not a ZIP"):
        check_layer_path(tmp_path / "notzip.zip", "--check-layer")


def _links(top: Path) -> list[Path]:
    return [Path(folder) / name for folder, dirs, files in os.walk(top) for name in (*dirs, *files)
            if (Path(folder) / name).is_symlink()]


@pytest.mark.parametrize("target", ["outside", "nowhere"])
def test_a_layer_folder_holding_a_symlink_is_refused(tmp_path: Path, target: str) -> None:
    """A link in a layer's folder would be copied into the scratch /opt, and a later layer
    written through it, outside the scratch (a dev checkout). Our target dirs never hold one."""
    (tmp_path / "outside").mkdir()
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "requests").symlink_to(tmp_path / target)
    with pytest.raises(ConfigError, match=r"--check-layer: the layer folder .* holds a symlink \(.*python/requests\)"):
        check_layer_path(layer, "--check-layer")


def test_nothing_in_the_scratch_opt_is_a_link_a_later_layer_writes_through(tmp_path: Path) -> None:
    """Even a link that appears after the check is copied as what it points to, and a ZIP's
    symlink member is extracted as a plain file: the later layers' files land in the scratch."""
    outside = tmp_path / "devsrc" / "requests"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("# my dev checkout\n")
    folder = tmp_path / "layerA"
    (folder / "python").mkdir(parents=True)
    (folder / "python" / "requests").symlink_to(outside)
    linked = tmp_path / "linked.zip"
    with zipfile.ZipFile(linked, "w") as zf:
        link = zipfile.ZipInfo("python/six.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, str(tmp_path / "devsrc" / "six.py"))
    later = tmp_path / "layerB.zip"
    with zipfile.ZipFile(later, "w") as zf:
        zf.writestr("python/requests/__init__.py", "# from layer B\n")
        zf.writestr("python/six.py", "# from layer B\n")
    opt = tmp_path / "opt"
    for layer in (folder, linked, later):
        add_layer(layer, opt)
    assert _links(opt) == []
    assert (outside / "__init__.py").read_text() == "# my dev checkout\n"
    assert not (tmp_path / "devsrc" / "six.py").exists()
    assert (opt / "python" / "requests" / "__init__.py").read_text() == "# from layer B\n"


def test_a_layer_zip_zipfile_cannot_parse_or_that_lies_is_a_config_error(tmp_path: Path) -> None:
    """A member name that is not UTF-8, or a member inflating past its declared size (refused
    once that size is written, never inflated whole): one line naming the ZIP, no traceback."""
    bad_name = tmp_path / "name.zip"
    with zipfile.ZipFile(bad_name, "w") as zf:
        zf.writestr("python/ab.py", "X = 1\n")
    rename_raw(bad_name, "python/ab.py", b"python/\xff\xfe.py")
    with pytest.raises(ConfigError, match=r"The layer .*name\.zip cannot be read as a ZIP: a member name or text is not valid UTF-8\."):
        add_layer(bad_name, tmp_path / "opt")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("python/zeros.bin", bytes(64 << 20))
    claims(bomb, "python/zeros.bin", size=1000, crc=zlib.crc32(bytes(1000)) ^ 1)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"bomb\.zip cannot be read as a ZIP: Bad CRC-32"):
            extract_zip(bomb, tmp_path / "opt", "The layer")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("handler", ["app.handler\n", "app.handler ", "app", "app.handler.", "app:handler"])
def test_a_handler_that_is_not_module_function_is_refused(handler: str) -> None:
    with pytest.raises(ConfigError, match="--check-handler must look like module.function"):
        check_handler_name(handler, "--check-handler")


def test_a_handler_is_at_most_128_characters_as_lambdas_handler_setting() -> None:
    longest = "app." + "m" * 120 + ".fn"
    assert len(longest) == 127 and check_handler_name(longest + "n", "--check-handler") == longest + "n"
    with pytest.raises(ConfigError, match="is 129 characters; Lambda's Handler setting takes at most 128"):
        check_handler_name(longest + "nn", "--check-handler")


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


def _lambda_root(tmp_path: Path, **modules: str) -> LambdaRoot:
    """Lambda's folders in scratch, with `modules` (name -> source) in the task folder."""
    root = LambdaRoot(tmp_path / "lambda").create()
    for name, source in modules.items():
        (root.task / f"{name}.py").write_text(source)
    return root


def _import(python: Path, root: LambdaRoot, handler: str, tmp_path: Path, **environ: str) -> dict[str, object]:
    env = lambda_environ(root, "python3.12", "fn", handler, python, environ)
    return run_import(python, handler, root.sys_path("3.12"), root.task, env, tmp_path / f"{handler}.json")


def test_the_child_sees_only_lambdas_path_and_no_site(tmp_path: Path, python312: Path) -> None:
    root = _lambda_root(tmp_path, probe=(
        "import json, os, sys\n"
        "FACTS = {'path': sys.path, 'site': 'site' in sys.modules, 'cwd': os.getcwd()}\n"
        "with open(os.path.join(os.environ['TMPDIR'], 'facts.json'), 'w') as f:\n"
        "    json.dump(FACTS, f)\n"
        "def handler(event, context):\n    pass\n"
    ))
    result = _import(python312, root, "probe.handler", tmp_path, PYTHONPATH="/evil")
    assert result["ok"] is True, result
    facts = json.loads((root.tmp / "facts.json").read_text())
    assert facts["path"][:4] == root.sys_path("3.12")
    assert not [p for p in facts["path"][4:] if "site-packages" in p or "dist-packages" in p or p == "/evil"]
    assert facts["site"] is False
    assert Path(facts["cwd"]) == root.task


def test_a_handler_that_exits_or_hangs_around_does_not_hold_the_check(tmp_path: Path, python312: Path) -> None:
    root = _lambda_root(
        tmp_path,
        threads="import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\n"
        "def handler(event, context):\n    pass\n",
        quits="import os\nos._exit(7)\n",
    )
    assert _import(python312, root, "threads.handler", tmp_path)["ok"] is True
    quits = _import(python312, root, "quits.handler", tmp_path)
    assert quits["stage"] == "crash" and quits["returncode"] == 7


def test_an_async_handler_fails_lambda_would_not_await_it(tmp_path: Path, python312: Path) -> None:
    root = _lambda_root(tmp_path, app=(
        "import asyncio\n"
        "async def handler(event, context):\n    return 1\n"
        "class Handler:\n    async def __call__(self, event, context):\n        return 1\n"
        "instance = Handler()\n"
        "import functools\npartial = functools.partial(handler)\n"
        "def plain(event, context):\n    return asyncio.run(handler(event, context))\n"
        "plain_partial = functools.partial(plain)\n"
    ))
    assert _import(python312, root, "app.plain_partial", tmp_path)["ok"] is True
    for name in ("handler", "instance", "partial"):
        check = explain(f"app.{name}", _import(python312, root, f"app.{name}", tmp_path), Context("bundle", (), (), False))
        assert check.status == "failed" and "does not await" in check.message and "asyncio.run" in check.message
    assert _import(python312, root, "app.plain", tmp_path)["ok"] is True


def test_a_module_named_like_the_standard_librarys_is_checked_as_lambda_imports_it(tmp_path: Path, python312: Path) -> None:
    """Lambda's runtime has imported logging, decimal, numbers, ... before the handler: a bundled
    package of such a name is never imported there. One it has not imported (inspect) is."""
    root = _lambda_root(tmp_path)
    for name in ("numbers", "inspect"):
        (root.task / name).mkdir()
        (root.task / name / "__init__.py").write_text("")
        (root.task / name / "handler.py").write_text("def handler(event, context):\n    return 1\n")
    hidden = explain("numbers.handler.handler", _import(python312, root, "numbers.handler.handler", tmp_path),
                     Context("bundle", (), (), False))
    assert hidden.status == "failed" and "never imported there: rename yours" in hidden.message
    assert _import(python312, root, "inspect.handler.handler", tmp_path)["ok"] is True
    builtin = explain("sys.handler", _import(python312, root, "sys.handler", tmp_path), Context("bundle", (), (), False))
    assert builtin.status == "failed" and "built into Python" in builtin.message


def test_modules_outside_python_are_noted_even_beside_a_python_folder(tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    (opt / "python" / "lib").mkdir(parents=True)
    (opt / "dep").mkdir()
    (opt / "dep" / "__init__.py").write_text("")
    (opt / "tool.py").write_text("")
    [note] = layer_notes(opt, "3.12")
    assert "dep, tool.py outside python/" in note
    (opt / "dep" / "__init__.py").unlink()
    (opt / "tool.py").unlink()
    assert layer_notes(opt, "3.12") == []


def test_a_submodule_left_out_of_a_bundled_package_is_said_so(tmp_path: Path, python312: Path) -> None:
    """--slim or exclude-files left out lib/tests, which lib imports: the bundle holds lib, so
    "lacks lib" would send the user looking for a missing dependency."""
    root = _lambda_root(tmp_path, app="import lib\ndef handler(event, context):\n    return 1\n")
    (root.task / "lib").mkdir()
    (root.task / "lib" / "__init__.py").write_text("from lib.tests import helpers\n")
    (root.task / "ns" / "auth").mkdir(parents=True)  # a namespace package: another distribution's part
    (root.task / "ns" / "auth" / "__init__.py").write_text("")
    (root.task / "nsapp.py").write_text("import ns.protobuf\ndef handler(event, context):\n    return 1\n")
    check = explain("app.handler", _import(python312, root, "app.handler", tmp_path), Context("bundle", (), (), False))
    assert "The bundle holds 'lib' but not 'lib.tests'" in check.message and "--slim" in check.message
    other = explain("nsapp.handler", _import(python312, root, "nsapp.handler", tmp_path), Context("bundle", (), (), False))
    assert "The bundle lacks 'ns'" in other.message


def test_a_venvs_interpreter_is_replaced_by_its_base(tmp_path: Path, python312: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([str(python312), "-m", "venv", "--without-pip", str(venv)], check=True)
    found = base_interpreter(venv / "bin" / "python3.12", "3.12")
    assert found is not None and not found.is_venv
    assert venv not in found.executable.parents
    assert base_interpreter(venv / "bin" / "python3.12", "3.11") is None
