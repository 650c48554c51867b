"""A writer for the cpio "newc" format the Linux kernel unpacks as its initramfs.

Reference: the kernel's Documentation/driver-api/early-userspace/buffer-format.rst.
Output is deterministic: inode numbers count up, times are fixed, owners are root.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


@dataclass
class Archive:
    entries: list[Entry] = field(default_factory=list)

    def dir(self, name: str, perm: int = 0o755) -> None:
        self.entries.append(Entry(name, stat.S_IFDIR | perm))

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self.entries.append(Entry(name, stat.S_IFREG | perm, data))

    def symlink(self, name: str, target: str) -> None:
        self.entries.append(Entry(name, stat.S_IFLNK | 0o777, target.encode()))

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self.entries.append(Entry(name, stat.S_IFCHR | perm, rdev=(major, minor)))

    def to_bytes(self, mtime: int = 0) -> bytes:
        out = bytearray()
        for ino, entry in enumerate([*self.entries, Entry(TRAILER, 0)], start=1):
            name = entry.name.lstrip("/").encode() + b"\0"
            is_dir = stat.S_ISDIR(entry.mode)
            fields = (
                ino if entry.name != TRAILER else 0,
                entry.mode,
                0,  # uid
                0,  # gid
                2 if is_dir else 1,
                mtime if entry.name != TRAILER else 0,
                len(entry.data),
                0,  # devmajor
                0,  # devminor
                entry.rdev[0],
                entry.rdev[1],
                len(name),
                0,  # check
            )
            header = MAGIC + b"".join(b"%08X" % f for f in fields)
            out += header + name + _pad4(len(header) + len(name))
            out += entry.data + _pad4(len(entry.data))
        return bytes(out)
