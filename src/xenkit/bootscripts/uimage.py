"""U-Boot: legacy script images (what `mkimage -T script` writes) and Xen boot scripts."""

from __future__ import annotations

import os
import struct
import time
import zlib

# include/image.h
IH_MAGIC = 0x27051956
IH_OS_LINUX = 5
IH_ARCH = {"arm": 2, "arm64": 22, "x86": 3, "riscv": 26}
IH_TYPE_KERNEL = 2
IH_TYPE_SCRIPT = 6
IH_COMP_NONE = 0
HEADER = struct.Struct(">IIIIIIIBBBB32s")


def _timestamp() -> int:
    # mkimage honours SOURCE_DATE_EPOCH too, which is what makes byte-for-byte checks possible.
    return int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))


def script_image(
    text: str | bytes,
    arch: str = "arm64",
    name: str = "",
    load: int = 0,
    entry: int = 0,
    timestamp: int | None = None,
) -> bytes:
    """A legacy uImage of type script: header, then a multi-file size table with one entry
    (the script length) and a zero terminator, then the script. mkimage pads every file but
    the last to 4 bytes, so a lone script is not padded."""
    body = text.encode() if isinstance(text, str) else text
    payload = struct.pack(">II", len(body), 0) + body
    header = HEADER.pack(
        IH_MAGIC,
        0,
        _timestamp() if timestamp is None else timestamp,
        len(payload),
        load,
        entry,
        zlib.crc32(payload),
        IH_OS_LINUX,
        IH_ARCH[arch],
        IH_TYPE_SCRIPT,
        IH_COMP_NONE,
        name.encode()[:32],
    )
    hcrc = zlib.crc32(header)
    return header[:4] + struct.pack(">I", hcrc) + header[8:] + payload


def kernel_image(data: bytes, arch: str, load: int, entry: int) -> bytes:
    """A legacy uImage of type kernel around `data` (what `mkimage -T kernel -C none` makes),
    for `bootm`."""
    header = HEADER.pack(
        IH_MAGIC,
        0,
        _timestamp(),
        len(data),
        load,
        entry,
        zlib.crc32(data),
        IH_OS_LINUX,
        IH_ARCH[arch],
        IH_TYPE_KERNEL,
        IH_COMP_NONE,
        b"",
    )
    hcrc = zlib.crc32(header)
    return header[:4] + struct.pack(">I", hcrc) + header[8:] + data


def script_text(image: bytes) -> str:
    """The script inside a script image (the inverse of script_image), checking both CRCs."""
    if len(image) < HEADER.size + 8:
        raise ValueError("too short for a U-Boot image")
    fields = HEADER.unpack(image[: HEADER.size])
    if fields[0] != IH_MAGIC:
        raise ValueError("bad U-Boot image magic")
    header = image[:4] + b"\0\0\0\0" + image[8 : HEADER.size]
    if zlib.crc32(header) != fields[1]:
        raise ValueError("bad header CRC")
    payload = image[HEADER.size : HEADER.size + fields[3]]
    if zlib.crc32(payload) != fields[6]:
        raise ValueError("bad data CRC")
    (length,) = struct.unpack(">I", payload[:4])
    return payload[8 : 8 + length].decode()


FDT_RESIZE = 64 * 1024  # room `fdt resize` makes for the /chosen edits
# Measured with Debian's U-Boot 2023.01 (rpi_arm64 and qemu_arm64): `booti` leaves a DTB used
# in place (fdt_high=~0) this much larger than `fdt resize` made it. Xen registers the DTB
# module with that final size, so it matters to the Dom0 memory prediction.
BOOTI_FDT_GROWTH = 0x59000


def fdt_size_at_boot(dtb: bytes, resize: int = FDT_RESIZE) -> int:
    """The DTB's totalsize when Xen starts: `fdt resize` shrinks it to its used size plus
    `resize` (plus five reserve-map slots), ending on a 4 KiB boundary, then booti grows it."""
    off_strings = int.from_bytes(dtb[12:16], "big")
    size_strings = int.from_bytes(dtb[32:36], "big")
    used = off_strings + size_strings + 5 * 16 + resize
    return (used + 0xFFF) // 0x1000 * 0x1000 + BOOTI_FDT_GROWTH
