"""`xenkit write`: a built image onto a USB stick, a card or a disk, as dd would, with the
checks dd does not make: the device is big enough, nothing on it is mounted."""

from __future__ import annotations

import errno
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
    try:
        mode = dest.stat().st_mode
    except FileNotFoundError:
        raise XenkitError(
            f"{dest} does not exist: give the stick's device (lsblk lists them)"
        ) from None
    except OSError as exc:  # a symlink loop, say: "does not exist" misled
        raise XenkitError(
            f"{dest} cannot be opened ({exc.strerror}): give the stick's device"
        ) from None
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
    if stat.S_ISREG(mode):
        _room_for(image, size, dest)
    done = 0
    try:
        with image.open("rb") as src, dest.open("r+b") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise XenkitError(_full(image, size, dest)) from None
        raise XenkitError(f"writing {image.name} to {dest}: {exc.strerror}") from None
    return done


def _full(image: Path, size: int, dest: Path) -> str:
    return (
        f"{dest}'s filesystem is full: it has no room for {image.name} ({human(size)}): "
        "free some space there or write the image elsewhere"
    )


def _room_for(image: Path, size: int, dest: Path) -> None:
    """An image file stands for a stick, but its size is no promise of room: a sparse one
    on a full filesystem took the first blocks and failed on the next. Refused before a byte
    is written, counting the blocks the file already has."""
    fs = os.statvfs(dest)
    # root may write into the blocks a filesystem keeps back for it.
    free = (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize
    if size - dest.stat().st_blocks * 512 > free:
        raise XenkitError(_full(image, size, dest))
