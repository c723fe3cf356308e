"""Our own `strip` for shared objects: debug sections and the static symbol table, nothing else.

No host tool and no Docker, so x86_64 (EM_X86_64, 62) and aarch64 (EM_AARCH64, 183) files are
stripped alike on any machine. Only ELF64 little-endian ET_DYN files are touched, and only in
the one way that cannot change what the dynamic loader sees:

- Removed: non-ALLOC sections named `.debug_*` or `.zdebug_*` (DWARF), and with symbols also
  `.symtab` and the `.strtab` only it uses. `.dynsym`/`.dynstr`, `.comment`, notes,
  `.gnu_debuglink` and every ALLOC section stay; a REL/RELA section that only relocates a
  removed section goes with it.
- Every byte up to the end of the furthest program header (and ALLOC section) stays where it
  is and as it is; only the non-ALLOC sections after it are packed again, and the section
  header table is rewritten at the end. In the ELF header only e_shoff, e_shnum and e_shstrndx
  change (the loader reads none of them).

A file is left exactly as it is (`strip` returns None) when it is not ELF64 LE x86_64/aarch64
ET_DYN; when its section header table is not the last thing in the file, or uses extended
numbering; when a removed section lies inside any program header's file range or before the
end of the loaded image; when sections past that point overlap, straddle it, or leave non-zero
bytes between them (auditwheel/patchelf layouts and anything else unusual land here); when a
kept section links (sh_link, or sh_info of REL/RELA/SHF_INFO_LINK) to a removed one; when a
kept ALLOC section would change index (`.dynsym`'s st_shndx would then lie), or a kept
`.symtab` names a removed section; when there are section groups or SHT_SYMTAB_SHNDX; and when
there is nothing to remove.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from dataclasses import replace

STRIPPER_VERSION = 1  # part of the cache key: bump when the output of `strip` changes

EM_X86_64 = 62
EM_AARCH64 = 183
MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}

_ET_DYN = 3
_SHF_ALLOC = 0x2
_SHF_INFO_LINK = 0x40
_SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 2, 3, 4, 8, 9
_SHT_GROUP, _SHT_SYMTAB_SHNDX = 17, 18
_SHN_LORESERVE = 0xFF00
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")

# What may be stripped: the cache key names it, so a new kind of stripping never reuses old bytes.
DEBUG = "debug"
DEBUG_AND_SYMBOLS = "debug+symtab"


@dataclass(frozen=True)
class _Section:
    index: int
    name: bytes
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int
    raw: tuple[int, ...]

    @property
    def file_size(self) -> int:
        return 0 if self.type == _SHT_NOBITS else self.size


class _Unusual(Exception):
    """The file's layout is not one we can strip without doubt: leave it alone."""


def is_elf(head: bytes) -> bool:
    return head[:4] == b"\x7fELF"


def machine(data: bytes) -> str | None:
    """"x86_64" or "aarch64" for an ELF64 LE file of those machines, else None."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    return MACHINES.get(struct.unpack_from("<H", data, 18)[0])


def strip(data: bytes, what: str = DEBUG_AND_SYMBOLS) -> bytes | None:
    """The stripped file, or None when it is left as it is (see the module's rules)."""
    try:
        return _strip(data, what == DEBUG_AND_SYMBOLS)
    except (_Unusual, struct.error, LookupError, ValueError, ArithmeticError):
        return None


def _strip(data: bytes, symbols: bool) -> bytes | None:
    if machine(data) is None:
        return None
    (ident, e_type, _, _, _, e_phoff, e_shoff, _, e_ehsize, e_phentsize, e_phnum,
     e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(data, 0)
    if e_type != _ET_DYN or ident[6] != 1 or e_ehsize != _EHDR.size:
        return None
    if e_phentsize != _PHDR.size or e_shentsize != _SHDR.size or e_shnum == 0 or e_shstrndx >= e_shnum:
        raise _Unusual  # extended numbering or foreign header sizes
    if e_shoff + e_shnum * _SHDR.size != len(data):
        raise _Unusual  # the section header table is not at the end (trailing data: a signature?)
    loaded = max(_EHDR.size, e_phoff + e_phnum * _PHDR.size)
    if loaded > len(data):
        raise _Unusual
    for i in range(e_phnum):
        _, _, p_offset, _, _, p_filesz, _, _ = _PHDR.unpack_from(data, e_phoff + i * _PHDR.size)
        loaded = max(loaded, p_offset + p_filesz)
    sections = _sections(data, e_shoff, e_shnum, e_shstrndx)
    for s in sections[1:]:
        if s.flags & _SHF_ALLOC and s.file_size:
            loaded = max(loaded, s.offset + s.file_size)
    if e_shoff < loaded:
        raise _Unusual  # a program header covers the section header table
    removed = _removable(sections, symbols, e_shstrndx)
    if not removed:
        return None
    _check_links(sections, removed)
    return _rebuild(data, sections, removed, loaded, e_shstrndx)


def _sections(data: bytes, shoff: int, shnum: int, shstrndx: int) -> list[_Section]:
    raw = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    names_offset, names_size = raw[shstrndx][4], raw[shstrndx][5]
    if names_offset + names_size > len(data):
        raise _Unusual
    names = data[names_offset : names_offset + names_size]
    sections = []
    for i, r in enumerate(raw):
        name_at = r[0]
        end = names.find(b"\0", name_at)
        if name_at >= len(names) or end < 0:
            raise _Unusual
        s = _Section(i, names[name_at:end], r[1], r[2], r[4], r[5], r[6], r[7], r[8], r[9], r)
        if s.type in (_SHT_GROUP, _SHT_SYMTAB_SHNDX):
            raise _Unusual
        if s.offset + s.file_size > len(data):
            raise _Unusual
        sections.append(s)
    return sections


def _removable(sections: list[_Section], symbols: bool, shstrndx: int) -> set[int]:
    removed = {
        s.index for s in sections[1:]
        if not s.flags & _SHF_ALLOC and s.name.startswith((b".debug_", b".zdebug_"))
    }
    if symbols:
        for s in sections[1:]:
            if s.type == _SHT_SYMTAB and s.name == b".symtab" and not s.flags & _SHF_ALLOC:
                removed.add(s.index)
                strtab = sections[s.link] if 0 < s.link < len(sections) else None
                others = [o for o in sections if o.link == s.link and o.index != s.index]
                if (strtab is not None and strtab.type == _SHT_STRTAB and strtab.name == b".strtab"
                        and not strtab.flags & _SHF_ALLOC and strtab.index != shstrndx and not others):
                    removed.add(strtab.index)
    for s in sections[1:]:  # relocations of a removed section (object-file leftovers) go too
        if s.type in (_SHT_REL, _SHT_RELA) and not s.flags & _SHF_ALLOC and s.info in removed:
            removed.add(s.index)
    return removed


def _check_links(sections: list[_Section], removed: set[int]) -> None:
    for s in sections:
        if s.index in removed:
            continue
        if s.link in removed:
            raise _Unusual
        if (s.type in (_SHT_REL, _SHT_RELA) or s.flags & _SHF_INFO_LINK) and s.info in removed:
            raise _Unusual
    first_removed = min(removed)
    if any(s.flags & _SHF_ALLOC for s in sections[first_removed:] if s.index not in removed):
        raise _Unusual  # an ALLOC section would change index: .dynsym's st_shndx would lie


def _rebuild(data: bytes, sections: list[_Section], removed: set[int], loaded: int, shstrndx: int) -> bytes:
    late = sorted((s for s in sections[1:] if s.file_size and s.offset + s.file_size > loaded),
                  key=lambda s: s.offset)
    for s in sections[1:]:
        if s.index in removed and s.file_size and s.offset < loaded:
            raise _Unusual  # removed bytes inside the loaded image
        if s.type == _SHT_SYMTAB and s.index not in removed and s not in late:
            raise _Unusual  # a kept symbol table inside the loaded image cannot be renumbered
    end = loaded
    for s in late:
        if s.offset < end:
            raise _Unusual  # straddles the loaded image or overlaps the section before it
        if data[end : s.offset].strip(b"\0"):
            raise _Unusual  # bytes no section owns
        end = s.offset + s.file_size
    if data[end : len(data) - len(sections) * _SHDR.size].strip(b"\0"):
        raise _Unusual
    new_index: dict[int, int] = {}
    for s in sections:
        if s.index not in removed:
            new_index[s.index] = len(new_index)
    out = bytearray(data[:loaded])
    moved: dict[int, int] = {}
    for s in late:
        if s.index in removed:
            continue
        align = max(1, s.align)
        if align > 1 << 16 or align & (align - 1):
            raise _Unusual  # not a power of two, or more than any real section asks for
        out += b"\0" * (-len(out) % align)
        moved[s.index] = len(out)
        out += data[s.offset : s.offset + s.file_size]
        if s.type == _SHT_SYMTAB:
            _renumber_symbols(out, moved[s.index], s, new_index)
    out += b"\0" * (-len(out) % 8)
    shoff = len(out)
    for s in sections:
        if s.index in removed:
            continue
        kept = replace(s, offset=moved.get(s.index, s.offset))
        out += _header(kept, new_index)
    struct.pack_into("<Q", out, 0x28, shoff)
    struct.pack_into("<HH", out, 0x3C, len(new_index), new_index[shstrndx])
    return bytes(out)


def _header(s: _Section, new_index: dict[int, int]) -> bytes:
    r = s.raw
    link = new_index[s.link] if s.link else 0
    info = s.info
    if (s.type in (_SHT_REL, _SHT_RELA) or s.flags & _SHF_INFO_LINK) and info:
        info = new_index[info]
    return _SHDR.pack(r[0], r[1], r[2], r[3], s.offset, r[5], link, info, r[8], r[9])


def _renumber_symbols(out: bytearray, at: int, symtab: _Section, new_index: dict[int, int]) -> None:
    """A kept `.symtab` (debug-only stripping) names sections by index: follow the new numbering."""
    if symtab.entsize != _SYM.size or symtab.size % _SYM.size:
        raise _Unusual
    for pos in range(at, at + symtab.size, _SYM.size):
        shndx = struct.unpack_from("<H", out, pos + 6)[0]
        if 0 < shndx < _SHN_LORESERVE:
            if shndx not in new_index:
                raise _Unusual  # a symbol in a removed section
            struct.pack_into("<H", out, pos + 6, new_index[shndx])
