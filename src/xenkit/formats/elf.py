"""What a 64-bit little-endian ELF program needs to run: its interpreter and the shared
libraries it names (DT_NEEDED), read from the program headers alone (stripped binaries keep
those), so that a program can be copied with its libraries out of a foreign root."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenkit.errors import XenkitError

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5


@dataclass(frozen=True)
class Needs:
    interpreter: str  # "" for a static program
    libraries: tuple[str, ...]  # DT_NEEDED names, in order


def needs(data: bytes, name: str = "program") -> Needs:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise XenkitError(f"{name} is not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
    dynamic = None
    interp = ""
    for i in range(phnum):
        kind, _flags, off, vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if kind == PT_LOAD:
            loads.append((vaddr, off, filesz))
        elif kind == PT_DYNAMIC:
            dynamic = (off, filesz)
        elif kind == PT_INTERP:
            interp = data[off : off + filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return Needs(interp, ())
    entries = [struct.unpack_from("<qQ", data, dynamic[0] + i) for i in range(0, dynamic[1], 16)]
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        raise XenkitError(f"{name}: a dynamic section without a string table")
    base = next((o + strtab - va for va, o, n in loads if va <= strtab < va + n), None)
    if base is None:
        raise XenkitError(f"{name}: its string table is outside every loaded segment")
    libs = []
    for tag, value in entries:
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            end = data.index(b"\0", base + value)
            libs.append(data[base + value : end].decode())
    return Needs(interp, tuple(libs))
