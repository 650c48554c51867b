"""`xenkit write`: a built image onto a USB stick, a card or a disk, as dd would, with the
checks dd does not make: the device is big enough, nothing on it is mounted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from xenkit.core.sizes import human
from xenkit.errors import XenkitError

CHUNK = 4 << 20


def capacity(dest: Path) -> int:
    """Bytes a block device holds, or a regular file's size (an image of a stick)."""
    fd = os.open(dest, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def mounted(dest: Path, mounts: Path = Path("/proc/self/mounts")) -> list[str]:
    """Filesystems mounted from `dest` or from its partitions (sdb -> sdb1 ...)."""
    name = str(dest.resolve())
    found = []
    for line in mounts.read_text().splitlines():
        source = line.split(" ", 1)[0]
        rest = source[len(name) :] if source.startswith(name) else None
        if rest is not None and (rest == "" or rest.lstrip("p").isdigit()):
            found.append(source)
    return found


def medium(build_dir: Path, media: tuple[str, ...]) -> Path:
    """What goes onto a stick or card: the build's last image file (the one with the
    persistence partition where there are two). A network root's store and a PXE tree
    beside it are directories, not media."""
    images = [build_dir / name for name in media if (build_dir / name).is_file()]
    if not images:
        raise XenkitError(f"{build_dir} has no image to write: rebuild it with xenkit build")
    return images[-1]


def write(image: Path, dest: Path, hint: str = "") -> int:
    """Copy `image` over the start of `dest`, every byte (a stick's old data must not show
    through where the image has zeros), and flush it. `hint` says how to make the image
    smaller. Returns the bytes written."""
    if not dest.exists():
        raise XenkitError(f"{dest} does not exist: give the stick's device (lsblk lists them)")
    mode = dest.stat().st_mode
    if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
        raise XenkitError(f"{dest} is neither a block device nor an image file")
    busy = mounted(dest)
    if busy:
        raise XenkitError(f"{', '.join(busy)} is mounted: unmount it before writing {dest}")
    size, room = image.stat().st_size, capacity(dest)
    if size > room:
        raise XenkitError(
            f"{image.name} ({human(size)}) does not fit on {dest} ({human(room)})"
            + (f": {hint}" if hint else ": use a bigger one")
        )
    done = 0
    with image.open("rb") as src, dest.open("r+b") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return done
