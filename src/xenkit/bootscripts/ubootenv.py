"""U-Boot's built-in default environment, edited in a copy of u-boot.bin for the emulator.

The emulator boots the card's own U-Boot, but waits for nothing a person could type and
scans no bus that QEMU leaves empty: measured on the emulated Pi 4 (bookworm, U-Boot
2023.01), `bootdelay=2` cost 2.0 s and preboot's `usb start` 2.4 s (DWC2 with only its root
hub) of a 9.7 s U-Boot phase. The card a user flashes keeps Debian's U-Boot byte for byte;
only the file QEMU is given is edited.

The default environment is one block of NUL-terminated "name=value" strings that ends in an
empty string (include/env_default.h), which U-Boot imports as is whenever it finds no saved
environment (uboot.env on the Pi's FAT, flash on virt: both absent in the emulator). A value
is replaced in place; a shorter one moves the rest of the block down and leaves NULs at its
end, so the binary keeps its size and every other address. (Padding the value with spaces
instead left the emulated Pi 4 silent from power-on, for reasons not looked into.)
"""

from __future__ import annotations

from collections.abc import Mapping

from xenkit.errors import XenkitError

# Every U-Boot's default environment holds bootcmd: the block is found by it.
ANCHOR = b"\0bootcmd="


def block(image: bytes) -> tuple[int, int]:
    """(start, end) of the default environment's entries from bootcmd on; end is the
    offset of the empty string that closes the block."""
    if image.count(ANCHOR) != 1:
        raise XenkitError(
            f"u-boot.bin: found {image.count(ANCHOR)} default environments (bootcmd=), not one"
        )
    start = image.index(ANCHOR) + 1
    return start, image.index(b"\0\0", start) + 1


def entries(image: bytes) -> list[tuple[str, str]]:
    """The default environment's entries from bootcmd on, in order."""
    start, end = block(image)
    pairs = (e.partition(b"=") for e in image[start:end].split(b"\0")[:-1])
    return [(k.decode(errors="replace"), v.decode(errors="replace")) for k, _, v in pairs]


def set_defaults(image: bytes, changes: Mapping[str, str]) -> bytes:
    """u-boot.bin with these default variables set. Each must be in the default
    environment already (after bootcmd), and no longer than it is there."""
    for name, value in changes.items():
        start, end = block(image)
        env = image[start:end]
        key = f"{name}=".encode()
        if env.startswith(key):
            at = start
        elif (found := env.find(b"\0" + key)) >= 0:
            at = start + found + 1
        else:
            raise XenkitError(f"u-boot.bin: its default environment has no {name} to set")
        at += len(key)
        stop = image.index(b"\0", at)
        new = value.encode()
        if len(new) > stop - at or b"\0" in new:
            raise XenkitError(
                f"u-boot.bin: {name}={value!r} does not fit where {name} is ({stop - at} bytes)"
            )
        pad = stop - at - len(new)
        image = image[:at] + new + image[stop:end] + b"\0" * pad + image[end:]
    return image
