"""What a Xen or Linux binary is, read from the binary itself."""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from xenkit.errors import XenkitError
from xenkit.formats import kernel


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    text: str

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return self.text


def _contents(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XenkitError(f"cannot read {path}: {exc.strerror}") from None
    if kernel.is_gzip(data):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise XenkitError(f"{path} is a damaged gzip file: rebuild or re-download it") from None
    return data


def xen_version(path: Path) -> Version:
    """Xen on Arm embeds "xen,xen-MAJOR.MINOR" (the compatible of the hypervisor node it
    gives Dom0); on x86 (an ELF image GRUB loads with multiboot2) only its banner's format,
    "Xen version %d.%d%s". Both hold the full version string, NUL-terminated."""
    data = _contents(path)
    m = re.search(rb"xen,xen-(\d+)\.(\d+)\0", data)
    if m:
        major, minor = int(m.group(1)), int(m.group(2))
        full = re.search(rb"\0(%d\.%d\.\d+[^\0\s]*)\0" % (major, minor), data)
        return Version(major, minor, full.group(1).decode() if full else f"{major}.{minor}")
    if data[:4] == b"\x7fELF" and b"Xen version %d.%d%s" in data:
        found = re.findall(rb"\0((\d+)\.(\d+)\.\d+[^\0\s]*)\0", data)
        if len(found) == 1:
            text, major_s, minor_s = found[0]
            return Version(int(major_s), int(minor_s), text.decode())
    raise XenkitError(f"{path} does not look like a Xen hypervisor image: give xen's binary")


def linux_version(path: Path) -> Version:
    """From the "Linux version" banner of an arm64 Image (raw or gzip'd), or the version
    string an x86 bzImage's setup header points at (its banner is compressed)."""
    data = _contents(path)
    m = re.search(rb"Linux version ((\d+)\.(\d+)[^\s\0]*)", data)
    if m:
        return Version(int(m.group(2)), int(m.group(3)), m.group(1).decode())
    bz = re.match(r"((\d+)\.(\d+)\S*)", kernel.bzimage_version(data) or "")
    if bz:
        return Version(int(bz.group(2)), int(bz.group(3)), bz.group(1))
    raise XenkitError(f"{path} does not look like a Linux kernel image: give an Image")
