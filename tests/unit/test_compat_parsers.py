"""poetry-core's PEP 508 parsers built once and kept in the cache: the same answers, whatever the
cache holds (nothing, a saved parser, garbage, or a file where its folder should be)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.compat  # compat.py reaches into poetry-core's parsers: run on the oldest Poetry too

PARSE = """
import sys
from pathlib import Path
if sys.argv[1] != "-":
    from poetry_plugin_lambda import compat
    compat.prime_pep508_parsers(Path(sys.argv[1]))
from poetry.core.packages.dependency import Dependency
from poetry.core.version.markers import parse_marker
markers = [
    'python_version >= "3.9" and platform_machine == "aarch64"',
    'sys_platform == "linux" or (implementation_name == "cpython" and extra == "speed")',
    'platform_python_implementation != "PyPy" and python_full_version < "3.13.1"',
]
requirements = [
    'requests[socks] (>=2.31,<3) ; python_version >= "3.9"',
    'numpy>=1.26; platform_machine == "x86_64"',
    'attrs @ https://example.invalid/attrs-23.2.0-py3-none-any.whl',
]
for text in markers:
    print(parse_marker(text))
for text in requirements:
    dependency = Dependency.create_from_pep_508(text)
    print(dependency.to_pep_508(), dependency.marker, sorted(dependency.extras))
"""


def _parse(folder: Path | str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_saved_parsers_answer_as_freshly_built_ones(tmp_path: Path) -> None:
    folder = tmp_path / "grammars"
    expected = _parse("-")  # poetry-core on its own
    assert _parse(folder) == expected  # builds both and saves them
    saved = sorted(folder.glob("*.checked"))
    assert [p.name.split("-")[0] for p in saved] == ["markers", "pep508"]
    stamps = [p.stat().st_mtime_ns for p in saved]
    assert _parse(folder) == expected  # loads them
    assert [p.stat().st_mtime_ns for p in saved] == stamps  # read, not written again
    assert not [p for p in folder.iterdir() if p not in saved]  # no temporaries left


def test_an_unreadable_saved_parser_is_built_again(tmp_path: Path) -> None:
    folder = tmp_path / "grammars"
    expected = _parse(folder)
    for saved in folder.glob("*.checked"):
        saved.write_bytes(b"not a pickle\n" + bytes(range(256)))
    assert _parse(folder) == expected
    truncated = next(folder.glob("markers-*.checked"))
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert _parse(folder) == expected
    assert _parse(folder) == expected  # and the rewritten one loads


@pytest.mark.parametrize("offset", [200, 2000, -50])
def test_a_saved_parser_with_a_flipped_bit_is_built_again(tmp_path: Path, offset: int) -> None:
    """Most single flips still load as a pickle and then mis-parse markers: never believed."""
    folder = tmp_path / "grammars"
    expected = _parse(folder)
    for saved in folder.glob("*.checked"):
        blob = bytearray(saved.read_bytes())
        blob[offset] ^= 0x10
        saved.write_bytes(bytes(blob))
    assert _parse(folder) == expected
    assert _parse(folder) == expected  # and the rewritten one loads


def test_an_unwritable_cache_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "grammars"
    blocker.write_text("a file where the folder should be")
    assert _parse(blocker) == _parse("-")
    assert blocker.read_text() == "a file where the folder should be"
