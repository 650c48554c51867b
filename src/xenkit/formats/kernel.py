"""Kernel image headers and compression, read in one place: the arm64 Image header (Linux's
Documentation/arch/arm64/booting.rst; Xen's own image has the same) and gzip's."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from xenkit.errors import XenkitError

ARM64_MAGIC = b"ARM\x64"  # at offset 0x38
GZIP_MAGIC = b"\x1f\x8b"
HEADER = 64  # bytes to read to know what a file is


@dataclass(frozen=True)
class ImageHeader:
    """What an arm64 Image's header tells a boot loader (Linux's booting.rst)."""

    text_offset: int
    image_size: int  # bytes the image occupies once loaded, bss included
    flags: int


def is_arm64_image(head: bytes) -> bool:
    return len(head) >= HEADER and head[56:60] == ARM64_MAGIC


def arm64_header(data: bytes) -> ImageHeader:
    """The header fields Xen and boot loaders read; refused if `data` is no arm64 Image."""
    if not is_arm64_image(data):
        raise XenkitError("not an arm64 Image: no ARM\\x64 magic at offset 0x38")
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    return ImageHeader(text_offset, image_size, flags)


def loaded_size(head: bytes, file_size: int) -> int:
    """Bytes an image occupies once loaded: an arm64 Image's header size if larger than the
    file (its bss), else the file's size."""
    if is_arm64_image(head):
        return max(file_size, arm64_header(head).image_size)
    return file_size


def bzimage_version(data: bytes) -> str | None:
    """An x86 bzImage's version string, which its setup header points at (Linux's
    Documentation/arch/x86/boot.rst: "HdrS" at 0x202, kernel_version at 0x20E, an offset
    from 0x200); None if `data` is no bzImage."""
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        return None
    field = int.from_bytes(data[0x20E:0x210], "little")
    at = field + 0x200
    end = data.find(b"\0", at, at + 256)
    if not field or end < 0:  # 0: the kernel gives no version string
        return None
    return data[at:end].decode(errors="replace")


def is_gzip(head: bytes) -> bool:
    return head[:2] == GZIP_MAGIC


def gzip_isize(path: Path) -> int | None:
    """A gzip file's uncompressed size mod 2^32 (its last four bytes); None if not gzip."""
    with path.open("rb") as f:
        if not is_gzip(f.read(2)):
            return None
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")
