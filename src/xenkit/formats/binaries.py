"""What a Xen or Linux binary is, read from the binary itself."""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

from xenkit.errors import XenkitError
from xenkit.formats import kernel


@dataclass(frozen=True)
class Version:
    """A Xen or Linux version as its binary states it."""

    major: int
    minor: int
    text: str

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return self.text


def _named(path: Path, what: str) -> str:
    """`path` as an error names it: after `what`, the setting naming it, if given."""
    return f"{what} {path}" if what else str(path)


def _contents(path: Path, what: str = "") -> bytes:
    """The file, inflated if gzip'd; `what` (the setting or variable naming it) leads any
    error, so the user knows which of their files it is."""
    name = _named(path, what)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XenkitError(f"cannot read {name}: {exc.strerror}") from None
    if kernel.is_gzip(data):
        try:
            import gzip  # here: most scripts' files are raw, 1.4 ms of start-up

            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise XenkitError(f"{name} is a damaged gzip file: rebuild or re-download it") from None
    return data


def whole(path: Path, what: str = "") -> None:
    """`path` reads, and if gzip'd inflates to its end (a truncated download does not).
    A raw file is not read past its head: it has no end to check (a 31 MiB Image for each
    of 32 guests made `uboot-script` 40 times slower)."""
    name = _named(path, what)
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise XenkitError(f"cannot read {name}: {exc.strerror}") from None
    if kernel.is_gzip(head):
        _contents(path, what)


def xen_arch(data: bytes) -> str | None:
    """The architecture a Xen image (uncompressed) is built for, from its header: on arm64
    the Linux Image header U-Boot's booti reads ("ARM\\x64" at byte 56), on x86 an ELF file
    (32-bit, for multiboot, around the 64-bit hypervisor)."""
    if data[56:60] == b"ARM\x64":
        return "arm64"
    if data[:4] == b"\x7fELF" and data[18:20] in (b"\x03\x00", b"\x3e\x00"):
        return "amd64"
    return None


def xen_version(path: Path, arch: str | None = None, what: str = "") -> Version:
    """Xen on Arm embeds "xen,xen-MAJOR.MINOR" (the compatible of the hypervisor node it
    gives Dom0); on x86 (an ELF image GRUB loads with multiboot2) only its banner's format,
    "Xen version %d.%d%s". Both hold the full version string, NUL-terminated. With `arch`,
    an image built for another architecture is refused, naming it (`what`: the setting)."""
    data = _contents(path, what)
    built_for = xen_arch(data)
    name = _named(path, what)
    if built_for is None:
        raise XenkitError(f"{name} does not look like a Xen hypervisor image: give xen's binary")
    if arch and built_for != arch:
        raise XenkitError(
            f"{name} is Xen for {built_for}, not {arch}: give Debian's "
            f"xen-hypervisor-*-{arch} build (or yours for {arch})"
        )
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
    raise XenkitError(f"{name} does not look like a Xen hypervisor image: give xen's binary")


def linux_version(path: Path, what: str = "") -> Version:
    """From the "Linux version" banner of an arm64 Image (raw or gzip'd), or the version
    string an x86 bzImage's setup header points at (its banner is compressed)."""
    data = _mapped(path, what)
    try:
        # find() first: the banner sits deep in a 31 MiB Image, where memchr-speed find takes
        # a millisecond and the regex's own scan fifteen.
        at = data.find(b"Linux version ")
        m = re.compile(rb"Linux version ((\d+)\.(\d+)[^\s\0]*)").search(data, max(at, 0))
        found = (
            Version(int(m.group(2)), int(m.group(3)), m.group(1).decode())
            if m
            # The header's 16-bit offset reaches no further than this.
            else version_text(kernel.bzimage_version(data[: 0x10200 + 256]) or "")
        )
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    if found:
        return found
    name = _named(path, what)
    raise XenkitError(f"{name} does not look like a Linux kernel image: give an Image")


def _mapped(path: Path, what: str) -> bytes | mmap.mmap:
    """A raw regular file mapped rather than read: finding Dom0's banner read all of a
    31 MiB Image, 26 of the 33 ms `xenkit uboot-script` spent past its imports; mapped, the
    search touches the page cache in place. Anything else (gzip'd, empty, not a regular
    file, or on a filesystem that cannot map) is read as before. A file cut short while it
    is mapped would stop xenkit (SIGBUS): the window is the millisecond of the search."""
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size and not kernel.is_gzip(f.read(2)):
                with contextlib.suppress(OSError, ValueError):
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        name = _named(path, what)
        raise XenkitError(f"cannot read {name}: {exc.strerror}") from None
    return _contents(path, what)


def version_text(text: str) -> Version | None:
    """A version as a manifest or a bzImage's header writes it ("6.1.0-57-arm64")."""
    m = re.match(r"((\d+)\.(\d+)\S*)", text)
    return Version(int(m.group(2)), int(m.group(3)), m.group(1)) if m else None
