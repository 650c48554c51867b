"""Architecture facts, in one place: what a board's `arch` means for packages, QEMU, kernel
images and Xen's console."""

from __future__ import annotations

from dataclasses import dataclass

from xenkit.errors import XenkitError


@dataclass(frozen=True)
class Arch:
    name: str  # as board files and Debian name it
    qemu: str  # the QEMU system emulator
    kernel_image: str  # what Debian's kernel package holds and the boot loader takes
    xen_console: str  # Xen's console= driver for the board's UART


ARCHES = {
    # Xen on Arm finds its UART in the device tree (dtuart=alias or path).
    "arm64": Arch("arm64", "qemu-system-aarch64", "arm64 Image", "dtuart"),
}


def get(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise XenkitError(
            f"architecture {name!r} is not supported: choose one of {', '.join(ARCHES)}"
        ) from None
