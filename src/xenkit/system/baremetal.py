"""Bare-metal guests kept as source in xenkit and built with Debian's cross binutils.

A [[domain]] asks for one with `kernel = "builtin:NAME"`; the source lives in
xenkit/system/guests/NAME/ (NAME.s and NAME.ld). The result is an arm64 Image, which Xen loads as
a dom0less kernel, cached under the hash of the source so a rebuild needs no toolchain.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xenkit.config import builtin
from xenkit.core.cachedir import cache_home
from xenkit.core.proc import run
from xenkit.errors import XenkitError
from xenkit.formats import kernel

SOURCES = builtin.SOURCES
TOOLCHAIN = "aarch64-linux-gnu-"
is_builtin = builtin.is_builtin
guest_name = builtin.guest_name


@dataclass(frozen=True)
class Built:
    image: Path  # the arm64 Image Xen loads
    elf: Path  # the linked ELF, for symbols and disassembly
    cached: bool  # True if nothing had to be assembled


def source_hash(name: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((SOURCES / name).iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(name: str) -> Built:
    """Assemble, link and flatten guest `name` into the cache, unless it is there already."""
    src = SOURCES / name
    dest = cache_home() / "derived" / f"guest-{name}-{source_hash(name)}"
    image, elf = dest / f"{name}.Image", dest / f"{name}.elf"
    if image.is_file() and elf.is_file():
        return Built(image, elf, cached=True)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".build-") as tmp:
        work = Path(tmp)
        obj = work / f"{name}.o"
        run([TOOLCHAIN + "as", "-o", obj, src / f"{name}.s"])
        run(
            [
                TOOLCHAIN + "ld",
                "--build-id=none",
                "-nostdlib",
                "-z",
                "max-page-size=4096",
                "-T",
                src / f"{name}.ld",
                "-o",
                work / elf.name,
                obj,
            ]
        )
        run([TOOLCHAIN + "objcopy", "-O", "binary", work / elf.name, work / image.name])
        data = (work / image.name).read_bytes()
        if kernel.arm64_header(data).image_size < len(data):
            raise XenkitError(f"guests/{name}: image_size is below the Image's size: fix _end")
        # The Image goes last: its presence says the pair is complete.
        (work / elf.name).replace(elf)
        (work / image.name).replace(image)
    return Built(image, elf, cached=False)
