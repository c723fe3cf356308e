"""Helpers for end-to-end tests: a small world of wheels like the real ones, and bundle checks."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.projects import run_poetry
from tests.fixtures.wheelfactory import build_wheel
from tests.fixtures.wheelfactory import elf_bytes

X86_TAG = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
ARM_TAG = "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64"

HANDLER = '''\
from importlib.metadata import version

import aws_requests_auth
import charset_normalizer
import requests


def handler(event, context):
    return {
        "requests": version("requests"),
        "auth": aws_requests_auth.hello(),
        "charset": charset_normalizer.hello(),
        "event": event,
    }
'''


def build_core_wheels(dest: Path) -> None:
    """Wheels shaped like requests, aws-requests-auth, boto3 and pytest and their dependencies."""
    build_wheel(dest, "requests", "2.32.3", requires=[
        "charset-normalizer<4,>=2", "idna<4,>=2.5", "urllib3<3,>=1.21.1", "certifi>=2017.4.17",
        'win-inet-pton; sys_platform == "win32"',
    ])
    for name, version in (("urllib3", "2.2.1"), ("idna", "3.7"), ("certifi", "2024.2.2"),
                          ("win-inet-pton", "1.1.0"), ("tomli", "2.0.1"), ("jmespath", "1.0.1"),
                          ("iniconfig", "2.0.0"), ("colorama", "0.4.6")):
        build_wheel(dest, name, version)
    charset_files = {"charset_normalizer/__init__.py": 'def hello():\n    return "native"\n'}
    for tag, arch in ((X86_TAG, "x86_64"), (ARM_TAG, "aarch64")):
        files = dict(charset_files)
        files[f"charset_normalizer/md.cpython-311-{arch}-linux-gnu.so"] = elf_bytes(arch)
        build_wheel(dest, "charset-normalizer", "3.3.2", tag=tag, files=files)
    build_wheel(dest, "charset-normalizer", "3.3.2", tag="cp311-cp311-macosx_11_0_arm64",
                files={"charset_normalizer/__init__.py": "raise ImportError('macOS build')\n"})
    build_wheel(dest, "charset-normalizer", "3.3.2", tag="py3-none-any",
                files={"charset_normalizer/__init__.py": 'def hello():\n    return "pure"\n'})
    build_wheel(dest, "aws-requests-auth", "0.4.3", requires=["requests>=0.14.0"],
                scripts={"aws-auth-cli": "#!python\nprint('cli')\n"},
                files={"aws_requests_auth/__init__.py": 'def hello():\n    return "auth"\n',
                       "aws_requests_auth/__pycache__/__init__.cpython-311.pyc": b"junk"})
    build_wheel(dest, "botocore", "1.34.0", requires=["jmespath<2.0.0,>=0.7.1"])
    build_wheel(dest, "boto3", "1.34.0", requires=["botocore<1.35.0,>=1.34.0"])
    build_wheel(dest, "pytest", "8.0.0", requires=["iniconfig", 'colorama; sys_platform == "win32"'])


def write_devlib(root: Path) -> Path:
    lib = root / "devlib"
    (lib / "devlib").mkdir(parents=True)
    (lib / "devlib" / "__init__.py").write_text("VALUE = 1\n")
    (lib / "pyproject.toml").write_text(
        '[project]\nname = "devlib"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    return lib


def dist_infos(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return {n.split("/", 1)[0] for n in zf.namelist() if n.split("/", 1)[0].endswith(".dist-info")}


def zip_files(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def dir_files(root: Path, ignore: tuple[str, ...] = (".lambda-bundle-target",)) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() not in ignore
    }


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


@dataclass
class Bundled:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def bundle(project: Path, cache: Path, *args: str, extra_env: dict[str, str] | None = None) -> Bundled:
    """Run `poetry lambda-bundle` in `project` the way a user does (a real `poetry` process)."""
    result = run_poetry(project, cache, "lambda-bundle", "--no-ansi", *args, extra_env=extra_env)
    return Bundled(result.returncode, result.stdout, result.stderr)
