"""elf_strip: debug sections and .symtab leave; program headers, .dynamic and .dynsym do not move.

Checked with a real ELF reader (pyelftools) on real gcc output (which must still load and
answer) and on hand-laid-out x86_64 and aarch64 files, including the layouts it must refuse.
"""

from __future__ import annotations

import ctypes
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from poetry_plugin_lambda import elf_strip
from tests.fixtures.elffactory import Layout
from tests.fixtures.elffactory import gcc
from tests.fixtures.elffactory import gcc_so
from tests.fixtures.elffactory import synthetic_so

elffile = pytest.importorskip("elftools.elf.elffile")
needs_gcc = pytest.mark.skipif(gcc() is None, reason="gcc is not installed")


def _elf(data: bytes):  # type: ignore[no-untyped-def]
    return elffile.ELFFile(io.BytesIO(data))


def _sections(data: bytes) -> list[str]:
    return [s.name for s in _elf(data).iter_sections()]


def _loaded_view(data: bytes) -> tuple[list[tuple[object, bytes]], list[tuple[str, int]], list[str]]:
    """What the loader sees: every segment's header and bytes, the dynamic tags, the dynamic symbols.

    The ELF header's e_shoff, e_shnum and e_shstrndx (which the loader never reads) are masked.
    """
    elf = _elf(data)
    masked = bytearray(data)
    masked[0x28:0x30] = bytes(8)
    masked[0x3C:0x40] = bytes(4)
    segments = [
        (sorted(dict(seg.header).items()), bytes(masked[seg.header.p_offset : seg.header.p_offset + seg.header.p_filesz]))
        for seg in elf.iter_segments()
    ]
    dynamic = elf.get_section_by_name(".dynamic")
    tags = [(t.entry.d_tag, t.entry.d_val) for t in dynamic.iter_tags()] if dynamic else []
    dynsym = elf.get_section_by_name(".dynsym")
    symbols = [f"{s.name}:{s['st_value']}:{s['st_shndx']}" for s in dynsym.iter_symbols()] if dynsym else []
    return segments, tags, symbols


@needs_gcc
def test_gcc_library_loses_debug_and_symtab_and_still_loads(tmp_path: Path) -> None:
    original = gcc_so(tmp_path / "in").read_bytes()
    assert any(n.startswith(".debug_") for n in _sections(original))
    stripped = elf_strip.strip(original)
    assert stripped is not None and len(stripped) < len(original)
    names = _sections(stripped)
    assert not [n for n in names if n.startswith((".debug_", ".zdebug_"))]
    assert ".symtab" not in names and ".strtab" not in names
    assert {".dynsym", ".dynstr", ".dynamic", ".text", ".comment", ".shstrtab"} <= set(names)
    assert _loaded_view(stripped) == _loaded_view(original)
    end = max(s.header.p_offset + s.header.p_filesz for s in _elf(original).iter_segments())
    assert stripped[64:end] == original[64:end]  # only e_shoff/e_shnum/e_shstrndx of the header change
    out = tmp_path / "out" / "libdemo.so"
    out.parent.mkdir()
    out.write_bytes(stripped)
    library = ctypes.CDLL(str(out))
    assert library.answer() == 42
    assert library.twice(21) == 42


@needs_gcc
def test_debug_only_keeps_symtab_with_the_right_section_numbers(tmp_path: Path) -> None:
    original = gcc_so(tmp_path).read_bytes()
    stripped = elf_strip.strip(original, elf_strip.DEBUG)
    assert stripped is not None
    elf = _elf(stripped)
    assert ".symtab" in _sections(stripped) and not any(n.startswith(".debug_") for n in _sections(stripped))
    answer = next(s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name == "answer")
    assert elf.get_section(answer["st_shndx"]).name == ".text"
    assert _loaded_view(stripped) == _loaded_view(original)


@needs_gcc
def test_stripping_again_or_a_file_without_debug_changes_nothing(tmp_path: Path) -> None:
    stripped = elf_strip.strip(gcc_so(tmp_path / "a").read_bytes())
    assert stripped is not None
    assert elf_strip.strip(stripped) is None
    plain = gcc_so(tmp_path / "b", debug=False).read_bytes()
    once = elf_strip.strip(plain)  # .symtab only
    assert once is not None and elf_strip.strip(once) is None


@needs_gcc
def test_same_input_same_bytes(tmp_path: Path) -> None:
    data = gcc_so(tmp_path).read_bytes()
    assert elf_strip.strip(data) == elf_strip.strip(data)


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_synthetic_library_of_each_machine(machine: str) -> None:
    original = synthetic_so(Layout(machine=machine))
    assert elf_strip.machine(original) == machine
    stripped = elf_strip.strip(original)
    assert stripped is not None
    elf = _elf(stripped)
    assert elf["e_machine"] == {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}[machine]
    assert _sections(stripped) == ["", ".dynstr", ".dynamic", ".comment", ".shstrtab"]
    assert _loaded_view(stripped) == _loaded_view(original)
    assert elf.get_section_by_name(".dynamic").header.sh_link == 1
    assert elf.get_section_by_name(".comment").data() == b"GCC: test\0"


@pytest.mark.parametrize(
    "layout",
    [
        Layout(debug_inside_load=True),
        Layout(shdrs_not_last=True),
        Layout(kept_links_to_debug=True),
    ],
    ids=["debug-inside-a-segment", "data-after-the-section-headers", "kept-section-links-to-debug"],
)
def test_unusual_layouts_are_left_alone(layout: Layout) -> None:
    assert elf_strip.strip(synthetic_so(layout)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x7fELF",
        b"not an elf at all" * 10,
        synthetic_so()[:4] + b"\x01" + synthetic_so()[5:],  # ELFCLASS32
        synthetic_so()[:5] + b"\x02" + synthetic_so()[6:],  # big-endian
        synthetic_so()[:16] + b"\x02\x00" + synthetic_so()[18:],  # ET_EXEC
        synthetic_so()[:18] + b"\x28\x00" + synthetic_so()[20:],  # EM_ARM
        synthetic_so()[:-10],  # truncated
        synthetic_so()[:0x3E] + b"\x63\x00" + synthetic_so()[0x40:],  # e_shstrndx out of range
        synthetic_so()[:0x28] + b"\xff" * 8 + synthetic_so()[0x30:],  # e_shoff far outside the file
    ],
    ids=["empty", "magic-only", "text", "elf32", "big-endian", "executable", "arm32", "truncated",
         "bad-shstrndx", "bad-shoff"],
)
def test_other_files_are_left_alone(data: bytes) -> None:
    assert elf_strip.strip(data) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_files_never_raise_and_never_move_loaded_bytes(changes: list[tuple[int, int]]) -> None:
    data = bytearray(synthetic_so(Layout(machine="aarch64")))
    for at, value in changes:
        data[at % len(data)] = value
    out = elf_strip.strip(bytes(data))
    if out is not None:
        ph = int.from_bytes(data[0x20:0x28], "little")
        count = int.from_bytes(data[0x38:0x3A], "little")
        ends = [
            int.from_bytes(data[ph + i * 56 + 8 : ph + i * 56 + 16], "little")
            + int.from_bytes(data[ph + i * 56 + 32 : ph + i * 56 + 40], "little")
            for i in range(count)
        ]
        end = max([64, ph + count * 56, *ends])
        assert out[0x40:end] == bytes(data[0x40:end])
