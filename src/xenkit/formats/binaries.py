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
    """Xen embeds "xen,xen-MAJOR.MINOR" (the compatible of the hypervisor node it gives
    Dom0) and its full version string."""
    data = _contents(path)
    m = re.search(rb"xen,xen-(\d+)\.(\d+)\0", data)
    if not m:
        raise XenkitError(f"{path} does not look like a Xen hypervisor image: give xen's binary")
    major, minor = int(m.group(1)), int(m.group(2))
    full = re.search(rb"\0(%d\.%d\.\d+[^\0\s]*)\0" % (major, minor), data)
    return Version(major, minor, full.group(1).decode() if full else f"{major}.{minor}")


def linux_version(path: Path) -> Version:
    data = _contents(path)
    m = re.search(rb"Linux version ((\d+)\.(\d+)[^\s\0]*)", data)
    if not m:
        raise XenkitError(f"{path} does not look like a Linux kernel image: give an Image")
    return Version(int(m.group(2)), int(m.group(3)), m.group(1).decode())
