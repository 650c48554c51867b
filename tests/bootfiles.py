"""Inputs for boot-script tests: a small board DTB and files with real arm64 Image headers."""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

BOARD_DTS = """/dts-v1/;
/ {
    #address-cells = <2>; #size-cells = <2>;
    compatible = "test,board";
    chosen { };
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x80000000>; };
    cpus {
        #address-cells = <1>; #size-cells = <0>;
        cpu@0 { device_type = "cpu"; reg = <0>; phandle = <0x8001>; };
        cpu@1 { device_type = "cpu"; reg = <1>; phandle = <0x8002>; };
        cpu@2 { device_type = "cpu"; reg = <2>; };
        cpu@3 { device_type = "cpu"; reg = <3>; };
    };
    serial@9000000 { compatible = "arm,pl011"; reg = <0x0 0x9000000 0x0 0x1000>; };
    ethernet@ff0e0000 { compatible = "test,eth"; reg = <0x0 0xff0e0000 0x0 0x1000>; };
};
"""

RESERVED_DTS = BOARD_DTS.replace(
    "    chosen { };",
    """    chosen { };
    reserved-memory {
        #address-cells = <2>; #size-cells = <2>; ranges;
        fw@42a00000 { reg = <0x0 0x42a00000 0x0 0x300000>; no-map; };
    };""",
)


def dtb(dts: str, out: Path) -> Path:
    subprocess.run(
        ["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), "-"], input=dts.encode(), check=True
    )
    return out


def image(path: Path, file_size: int, image_size: int, body: bytes = b"") -> Path:
    """A file with an arm64 Image header claiming `image_size` (Linux and Xen have one),
    `body` after it."""
    head = bytearray(64)
    head[16:24] = image_size.to_bytes(8, "little")
    head[56:60] = b"ARM\x64"
    with path.open("wb") as f:
        f.write(head + body)
        f.truncate(file_size)
    return path


# What identifies Linux in an Image (formats/binaries.linux_version).
LINUX_BANNER = b"Linux version 6.1.0-13-arm64 (debian-kernel@lists.debian.org)\0"
# What identifies Xen 4.17 on Arm inside its image (formats/binaries.xen_version).
XEN_MARKS = b"\0xen,xen-4.17\0\x004.17.0\0"


def x86_xen(path: Path) -> Path:
    """An ELF32 i386 file with the x86 banner's format and a version, gzip'd as Debian's."""
    elf = b"\x7fELF\x01\x01\x01" + b"\0" * 11 + struct.pack("<H", 3) + b"\0" * 44
    body = elf + b"\0Xen version %d.%d%s\0\x004.17.5-pre\0"
    path.write_bytes(gzip.compress(body, mtime=0))
    return path


CPIO_HEAD = b"070701" + b"0" * 104  # a cpio newc header's start


def ramdisk(path: Path, size: int) -> Path:
    """A cpio archive's start, gzip'd if the name says so, padded to `size`."""
    data = gzip.compress(CPIO_HEAD, mtime=0) if path.suffix == ".gz" else CPIO_HEAD
    with path.open("wb") as f:
        f.write(data)
        f.truncate(size)
    return path


def populate(root: Path, dts: str = BOARD_DTS) -> Path:
    """The files of ImageBuilder's example runs, with the same sizes: Debian's 6.1 Image,
    Xen 4.17, a Dom0 and a domU rootfs."""
    image(root / "Image", 32956352, 0x2010000, LINUX_BANNER)
    image(root / "xen", 983048, 0x1360C8, XEN_MARKS)
    ramdisk(root / "dom0-rootfs.cpio.gz", 4000902)
    ramdisk(root / "domU-rootfs.cpio", 2500608)
    dtb(dts, root / "board.dtb")
    dtb('/dts-v1/; / { passthrough { compatible = "simple-bus"; }; };', root / "pt.dtb")
    return root
