"""The tag matrix: what each Lambda target accepts, in which order, and what it rejects."""

from __future__ import annotations

import pytest

from poetry_plugin_lambda.targets import RUNTIMES
from poetry_plugin_lambda.targets import Target
from poetry_plugin_lambda.targets import marker_environment
from poetry_plugin_lambda.targets import platform_tags
from poetry_plugin_lambda.targets import supported_tags
from poetry_plugin_lambda.targets import wheel_rank

pytestmark = pytest.mark.compat


def target(runtime: str = "python3.12", arch: str = "x86_64") -> Target:
    return Target(RUNTIMES[runtime], arch)


def wheel(tag: str) -> str:
    return f"pkg-1.0-{tag}.whl"


@pytest.mark.parametrize(
    ("runtime", "arch", "tag"),
    [
        ("python3.12", "x86_64", "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"),
        ("python3.12", "x86_64", "cp312-cp312-manylinux_2_34_x86_64"),
        ("python3.12", "arm64", "cp312-cp312-manylinux_2_28_aarch64"),
        ("python3.12", "arm64", "cp312-cp312-manylinux2014_aarch64"),
        ("python3.12", "x86_64", "cp312-abi3-manylinux_2_17_x86_64"),
        ("python3.12", "x86_64", "cp38-abi3-manylinux_2_17_x86_64"),
        ("python3.12", "x86_64", "cp312-none-manylinux_2_17_x86_64"),
        ("python3.12", "x86_64", "py312-none-any"),
        ("python3.12", "x86_64", "py3-none-any"),
        ("python3.12", "x86_64", "py2.py3-none-any"),
        ("python3.12", "x86_64", "cp312-none-any"),
        ("python3.9", "x86_64", "cp39-cp39-manylinux1_x86_64"),
        ("python3.9", "x86_64", "cp39-cp39-manylinux2010_x86_64"),
        ("python3.9", "x86_64", "cp39-cp39-manylinux_2_26_x86_64"),
        ("python3.11", "arm64", "cp311-cp311-manylinux_2_17_aarch64"),
        ("python3.14", "x86_64", "cp314-cp314-manylinux_2_34_x86_64"),
        ("python3.13", "arm64", "cp313-cp313-manylinux_2_34_aarch64"),
    ],
)
def test_accepted(runtime: str, arch: str, tag: str) -> None:
    assert wheel_rank(wheel(tag), target(runtime, arch)) is not None


@pytest.mark.parametrize(
    ("runtime", "arch", "tag", "why"),
    [
        ("python3.12", "x86_64", "cp312-cp312-musllinux_1_2_x86_64", "musllinux"),
        ("python3.13", "x86_64", "cp313-cp313t-manylinux_2_17_x86_64", "free-threaded"),
        ("python3.11", "x86_64", "cp312-abi3-manylinux_2_17_x86_64", "abi3 newer than runtime"),
        ("python3.11", "x86_64", "cp311-cp311-manylinux_2_28_x86_64", "glibc newer than AL2's 2.26"),
        ("python3.12", "x86_64", "cp312-cp312-manylinux_2_35_x86_64", "glibc newer than AL2023's 2.34"),
        ("python3.12", "x86_64", "cp312-cp312-manylinux_2_17_aarch64", "other architecture"),
        ("python3.12", "arm64", "cp312-cp312-manylinux_2_17_x86_64", "other architecture"),
        ("python3.12", "arm64", "cp312-cp312-manylinux1_aarch64", "no manylinux1 on aarch64"),
        ("python3.12", "x86_64", "cp312-cp312-macosx_11_0_arm64", "macOS"),
        ("python3.12", "x86_64", "cp312-cp312-macosx_10_9_x86_64", "macOS"),
        ("python3.12", "x86_64", "cp312-cp312-win_amd64", "Windows"),
        ("python3.12", "x86_64", "cp312-cp312-linux_x86_64", "a host build, not manylinux"),
        ("python3.12", "x86_64", "cp311-cp311-manylinux_2_17_x86_64", "another CPython ABI"),
        ("python3.12", "x86_64", "pp310-pypy310_pp73-manylinux_2_17_x86_64", "PyPy"),
        ("python3.12", "x86_64", "py2-none-any", "Python 2 only"),
        ("python3.9", "x86_64", "py310-none-any", "newer Python"),
    ],
)
def test_rejected(runtime: str, arch: str, tag: str, why: str) -> None:
    assert wheel_rank(wheel(tag), target(runtime, arch)) is None, why


@pytest.mark.parametrize(
    "name",
    [
        "pkg-1.0-py3-none-.whl",
        "pkg-1.0-py3..py2-none-any.whl",
        "pkg-1.0-3py-none-any.whl",
        "pkg-1.0-py3-none-any-.whl",
        "pkg-1.0-cp312-cp312-.manylinux_2_17_x86_64.whl",
        "pkg-not.a.version!-py3-none-any.whl",
        "pkg-1.0-x-py3-none-any.whl",  # a build tag must start with a digit
        "pkg-1.0-py3-none-any.zip",
        "pkg-py3-none-any.whl",
    ],
)
def test_a_malformed_wheel_name_fits_nothing(name: str) -> None:
    """Never an error: a lock may list a file with a bad name beside good ones (it is skipped,
    as `packaging.utils.parse_wheel_filename` refuses it)."""
    assert wheel_rank(name, target()) is None


def test_a_bad_name_beside_a_good_wheel_leaves_the_good_one_chosen() -> None:
    from types import SimpleNamespace

    from poetry_plugin_lambda.locked_files import choose_locked_file

    package = SimpleNamespace(
        files=[{"file": "pkg-1.0-py3..py2-none-any.whl"}, {"file": "pkg-1.0-py3-none-any.whl"}],
        pretty_name="pkg", pretty_version="1.0",
    )
    assert choose_locked_file(package, target()) == "pkg-1.0-py3-none-any.whl"  # type: ignore[arg-type]


def test_priority_follows_packaging_order() -> None:
    t = target()
    order = [
        "cp312-cp312-manylinux_2_34_x86_64",
        "cp312-cp312-manylinux_2_17_x86_64",
        "cp312-abi3-manylinux_2_17_x86_64",
        "cp312-none-manylinux_2_17_x86_64",
        "cp38-abi3-manylinux_2_17_x86_64",
        "py3-none-manylinux_2_17_x86_64",
        "cp312-none-any",
        "py312-none-any",
        "py3-none-any",
    ]
    ranks = [wheel_rank(wheel(tag), t) for tag in order]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_platform_tags_include_legacy_aliases_next_to_their_glibc() -> None:
    x86 = platform_tags((2, 26), "x86_64")
    assert x86[0] == "manylinux_2_26_x86_64"
    assert x86.index("manylinux2014_x86_64") == x86.index("manylinux_2_17_x86_64") + 1
    assert "manylinux2010_x86_64" in x86 and "manylinux1_x86_64" in x86
    arm = platform_tags((2, 34), "aarch64")
    assert arm[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert not [p for p in arm if "manylinux1" in p or "2010" in p]


def test_every_runtime_has_tags_and_markers() -> None:
    for runtime in RUNTIMES.values():
        for arch in ("x86_64", "arm64"):
            t = Target(runtime, arch)
            tags = supported_tags(t)
            assert str(tags[0]).startswith(f"{runtime.interpreter}-{runtime.interpreter}-manylinux_")
            env = marker_environment(t)
            assert env["python_version"] == runtime.python_version
            assert env["sys_platform"] == "linux" and env["platform_system"] == "Linux"
            assert env["platform_machine"] == ("aarch64" if arch == "arm64" else "x86_64")


@pytest.mark.parametrize(
    ("glibc", "runtime", "fits"),
    [
        ("2_26", "python3.11", True),   # Amazon Linux 2: glibc 2.26
        ("2_28", "python3.11", False),
        ("2_28", "python3.12", True),   # Amazon Linux 2023: glibc 2.34
        ("2_34", "python3.12", True),
        ("2_35", "python3.12", False),
    ],
)
def test_manylinux_wheels_fit_the_runtime_os_glibc(glibc: str, runtime: str, fits: bool) -> None:
    """What the glibc column means: a manylinux_2_X wheel is chosen only where glibc >= 2.X."""
    tag = f"cp3{runtime[-2:]}-cp3{runtime[-2:]}-manylinux_{glibc}_x86_64"
    rank = wheel_rank(f"pkg-1.0-{tag}.whl", Target(RUNTIMES[runtime], "x86_64"))
    assert (rank is not None) == fits


def test_no_wheel_says_when_the_wheels_need_a_newer_glibc() -> None:
    """numpy 2.4 publishes manylinux_2_27+ wheels only: the python3.11 runtime (glibc 2.26) fits
    none, and the message says so, with the tags for its Python and architecture shown first."""
    from types import SimpleNamespace

    from poetry_plugin_lambda.locked_files import no_wheel_error

    files = [f"numpy-2.4.6-{t}.whl" for t in (
        "cp310-cp310-manylinux_2_27_x86_64", "cp311-cp311-macosx_14_0_arm64", "cp311-cp311-manylinux_2_28_aarch64",
        "cp311-cp311-manylinux_2_27_x86_64", "cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-win_amd64",
    )]
    package = SimpleNamespace(files=[{"file": f} for f in files], pretty_name="numpy", pretty_version="2.4.6")
    message = str(no_wheel_error(package, target("python3.11"), "building it gave a wheel for this machine"))  # type: ignore[arg-type]
    assert "Wheel tags in the lock: cp311-cp311-manylinux_2_27_x86_64, cp311-cp311-manylinux_2_28_x86_64, cp310" in message
    assert "need glibc 2.27 or newer (manylinux_2_27); the python3.11 runtime has glibc 2.26." in message
    arm = str(no_wheel_error(package, target("python3.11", "arm64"), "x"))  # type: ignore[arg-type]
    assert "glibc 2.28 or newer" in arm
    assert "glibc" not in str(no_wheel_error(package, target("python3.12"), "x"))  # type: ignore[arg-type]
