"""What a file a user hands xenkit is, from its first bytes, so a file that is not what its
place needs is refused where it comes in, in one line naming the user's path, and never
reaches a board (issue 19: `kernel = "/etc/passwd"` once built with exit 0).

Magic numbers: arm64 Image (Linux's booting.rst, "ARM\\x64" at 0x38), x86 bzImage ("HdrS" at
0x202), ELF, uImage (0x27051956), flattened device tree (0xd00dfeed), cpio newc ("070701"),
and the compressions Linux unpacks an initramfs from; gzip and xz are looked into.
"""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path

from xenkit.errors import XenkitError
from xenkit.formats import kernel

HEAD = 0x1000  # enough for every header below, also inside a compressed file

ARM64_IMAGE = "arm64 Image"
BZIMAGE = "x86 bzImage"
ELF = "ELF file"
UIMAGE = "U-Boot uImage"
DTB = "device tree blob"
CPIO = "cpio archive"
# Xen's FLASK policy: POLICYDB_MAGIC 0xf97cff8c (little-endian), then the "XenFlask" string.
XSM_POLICY = "Xen FLASK policy"

_MAGICS = (
    (b"\x7fELF", ELF),
    (b"\x27\x05\x19\x56", UIMAGE),
    (b"\xd0\x0d\xfe\xed", DTB),
    (b"\x8c\xff\x7c\xf9\x08\x00\x00\x00XenFlask", XSM_POLICY),
    (b"070701", CPIO),
    (b"070702", CPIO),
    (b"\x28\xb5\x2f\xfd", "zstd data"),
    (b"\x02\x21\x4c\x18", "lz4 data"),
    (b"BZh", "bzip2 data"),
)

# What each place takes. Xen on Arm boots a domain's arm64 Image (raw or gzip'd) or a
# uImage; x86 guests boot a bzImage, or an ELF vmlinux (PVH). Linux unpacks an initramfs
# from any of these; zstd, lz4 and bzip2 are taken on trust.
KERNELS = {
    "arm64": (ARM64_IMAGE, f"gzip'd {ARM64_IMAGE}", UIMAGE),
    "amd64": (BZIMAGE, ELF),
}
RAMDISKS = (CPIO, f"gzip'd {CPIO}", f"xz'd {CPIO}", "zstd data", "lz4 data", "bzip2 data")
DTBS = (DTB,)
POLICIES = (XSM_POLICY,)


def _plain(head: bytes) -> str:
    if kernel.is_arm64_image(head):
        return ARM64_IMAGE
    if head[0x202:0x206] == b"HdrS":
        return BZIMAGE
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised data"
    return "text"


def what(data: bytes) -> str:
    """What the file whose first bytes are `data` is: "arm64 Image", "gzip'd cpio archive",
    "text" ..."""
    for name, is_it, inflate in (
        ("gzip", kernel.is_gzip, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
        ("xz", lambda d: d.startswith(b"\xfd7zXZ\x00"), lzma.LZMADecompressor),
    ):
        if is_it(data):
            try:
                return f"{name}'d {_plain(inflate().decompress(data, HEAD))}"
            except (zlib.error, lzma.LZMAError, EOFError):
                return f"damaged {name} data"
    return _plain(data)


def of_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            # A compressed file: enough of its stream to inflate the header inside.
            return what(f.read(HEAD * 4))
    except OSError as exc:
        raise XenkitError(f"cannot read {path}: {exc.strerror}") from None


def require(path: Path, accepted: tuple[str, ...], where: str) -> None:
    """Refuse `path` unless it is one of `accepted`, in one line naming it and what fits."""
    found = of_file(path)
    if found not in accepted:
        raise XenkitError(
            f"{where}: {path} looks like {found}, not {', '.join(accepted[:-1])}"
            f"{' or ' if len(accepted) > 1 else ''}{accepted[-1]}: give one of those"
        )
