"""A writable partition behind a hybrid live image, for a USB stick that keeps Dom0's changes.

The image stays what it is (an ISO 9660 filesystem from the disk's first byte, GRUB's MBR
code and GPT); the disk grows by the partition, sfdisk moves the GPT's backup to the new
end and appends the entry, and mkfs.ext4 makes the filesystem in place (-E offset). Nothing
needs root or a loop device, and the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from xenkit.core import files
from xenkit.core.proc import need, run
from xenkit.core.sizes import MiB, format_size
from xenkit.errors import XenkitError

# Dom0's first stage mounts the filesystem with this label as its live root's writable layer.
LABEL = "XENKIT-DATA"
NAME = "xenkit-persist"
# Below this an ext4 journal and Dom0's first changes leave nothing for guests' disks.
SMALLEST = 64 * MiB
ALIGN = MiB


def stable_uuid(*parts: object) -> str:
    """A UUID from the inputs, not from chance: the same build writes the same bytes."""
    digest = hashlib.sha256(" ".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def check_size(size: int) -> None:
    if size < SMALLEST:
        raise XenkitError(
            f"persist={format_size(size)} is too small for a writable layer: "
            f"give at least {format_size(SMALLEST)}"
        )


def add(image: Path, dest: Path, size: int, when: int) -> None:
    """`dest`: `image` with an ext4 partition of `size` bytes after it, labelled LABEL."""
    check_size(size)
    start = -(-image.stat().st_size // ALIGN) * ALIGN
    # The GPT's backup (header and 16 KiB of entries) goes in the last MiB.
    total = start + size + ALIGN
    ident = stable_uuid(image.stat().st_size, size, when)
    with files.replacing(dest) as partial:
        files.copy_sparse_file(image, partial)
        os.truncate(partial, total)
        sfdisk = need("sfdisk")
        run([sfdisk, "--quiet", "--relocate", "gpt-bak-std", partial])
        entry = f"start={start // 512}, size={size // 512}, type=linux, uuid={ident}, name={NAME}"
        run([sfdisk, "--quiet", "--append", partial], stdin=f"{entry}\n".encode())
        options = f"offset={start},hash_seed={ident},root_owner=0:0"
        mkfs = [need("mkfs.ext4"), "-q", "-F", "-L", LABEL, "-U", ident, "-E", options]
        fake = {**os.environ, "E2FSPROGS_FAKE_TIME": str(when)}
        run([*mkfs, partial, f"{size // 1024}k"], env=fake)
