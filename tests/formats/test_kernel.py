from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from xenkit.errors import XenkitError
from xenkit.formats import kernel


def arm64_image(image_size: int, length: int = 4096) -> bytes:
    head = struct.pack("<IIQQQQQQ", 0, 0, 0x80000, image_size, 0xA, 0, 0, 0)
    head += kernel.ARM64_MAGIC + b"\0" * 4
    return head + bytes(length - len(head))


def test_the_arm64_header_is_read() -> None:
    h = kernel.arm64_header(arm64_image(0x30000))
    assert (h.text_offset, h.image_size, h.flags) == (0x80000, 0x30000, 0xA)


def test_other_files_are_refused() -> None:
    with pytest.raises(XenkitError, match="not an arm64 Image"):
        kernel.arm64_header(b"\x7fELF" + bytes(100))
    assert not kernel.is_arm64_image(b"ARM\x64")  # too short to be a header


def test_the_loaded_size_counts_the_bss() -> None:
    data = arm64_image(0x30000)
    assert kernel.loaded_size(data[:64], len(data)) == 0x30000
    assert kernel.loaded_size(arm64_image(16)[:64], 4096) == 4096  # never below the file
    assert kernel.loaded_size(b"\x1f\x8b" + bytes(62), 999) == 999  # compressed: as is


def test_gzip_isize_is_the_trailer(tmp_path: Path) -> None:
    path = tmp_path / "Image.gz"
    path.write_bytes(gzip.compress(bytes(123457)))
    assert kernel.gzip_isize(path) == 123457
    plain = tmp_path / "Image"
    plain.write_bytes(arm64_image(0))
    assert kernel.gzip_isize(plain) is None


def test_header_size_wins_over_file_size() -> None:
    head = bytearray(64)
    head[56:60] = b"ARM\x64"
    head[16:24] = (0x1360C8).to_bytes(8, "little")
    assert kernel.loaded_size(bytes(head), 983048) == 0x1360C8
    assert kernel.loaded_size(bytes(head), 0x200000) == 0x200000
    assert kernel.loaded_size(b"\x1f\x8b" + bytes(62), 1234) == 1234
