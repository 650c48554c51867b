"""Boot media: an MBR SD card image with a FAT32 boot partition and an ext4 root.

Built without root or loop devices: each filesystem is made in its own file (mkfs.fat +
mtools, mkfs.ext4 -d) and then copied, sparsely, into the disk image behind a hand-written MBR.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xenkit.core import files, memo
from xenkit.core.proc import need, run
from xenkit.core.progress import Progress
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError
from xenkit.system import netroot

SECTOR = 512
# Partitions start on 4 MiB boundaries, as Raspberry Pi OS images do: SD erase blocks.
ALIGN = 4 * MiB
TYPE_FAT32_LBA = 0x0C
TYPE_LINUX = 0x83
# Root filesystem images kept for rebuilds: a few, since each is a whole (sparse) filesystem.
EXT4_KEPT = 4
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class Partition:
    type: int
    start: int  # bytes
    size: int  # bytes


def mbr(partitions: list[Partition], disk_id: int) -> bytes:
    """A classic MBR: no boot code, up to four primary partitions, LBA only (CHS fields set
    to the "beyond 8 GiB" marker, which every reader since the 90s accepts)."""
    if len(partitions) > 4:
        raise ValueError("an MBR holds four primary partitions")
    table = b""
    for p in partitions:
        chs = b"\xfe\xff\xff"
        table += struct.pack("<B3sB3sII", 0, chs, p.type, chs, p.start // SECTOR, p.size // SECTOR)
    table += b"\0" * (64 - len(table))
    return b"\0" * 440 + struct.pack("<IH", disk_id, 0) + table + b"\x55\xaa"


def _round(n: int, align: int = MiB) -> int:
    return (n + align - 1) // align * align


def boot_partition_size(files: Mapping[str, Path]) -> int:
    """Room for the files with slack for FAT overhead and later updates; at least 64 MiB so
    FAT32 has the cluster count it needs."""
    content = sum(p.stat().st_size for p in files.values())
    return max(64 * MiB, _round(content * 5 // 4 + 16 * MiB))


def make_fat(path: Path, size: int, label: str, files: Mapping[str, Path]) -> None:
    path.unlink(missing_ok=True)
    run(
        ["mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "-n", label, "-C", path, str(size // 1024)]
    )
    _mcopy(path, files)


def _mcopy(spec: str | Path, files: Mapping[str, Path]) -> None:
    """Copy `files` (name on the FAT -> source) onto the FAT image `spec`: those already
    under their own name in one mcopy (each run costs ~10 ms: 20 of them were a fifth of a
    rebuild), the rest one by one."""
    same = [src for name, src in sorted(files.items()) if src.name == name]
    if same:
        run(["mcopy", "-i", spec, "-m", "-o", *same, "::/"], env=MTOOLS_ENV)
    for name, src in sorted(files.items()):
        if src.name != name:
            run(["mcopy", "-i", spec, "-m", "-o", src, f"::/{name}"], env=MTOOLS_ENV)


def make_ext4(path: Path, size: int, label: str, root: Path) -> None:
    """An ext4 image of `root`: the one made before from the same tree where there is one
    (a toolstack root's mkfs took 0.5-1 s of every rebuild, for a tree a command line or
    Xen change leaves alone), else made now and kept."""
    k = memo.key(memo.source(), size, label, _tree_key(root))
    if memo.fetch_file("ext4", k, "root.ext4", path):
        return
    _mkfs_ext4(path, size, label, root)
    # Only read from here on (copied into the card): the cache may hold the same file.
    memo.store_file("ext4", k, "root.ext4", path, keep=EXT4_KEPT)


def _tree_key(root: Path) -> str:
    """What a directory holds, cheaply: a file linked in from the cache (more than one link:
    an unpacked package, never written in place) by its identity, any other by its content,
    a link by its target, everything by its mode and owner."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            head = f"{os.path.relpath(full, root)}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0"
            digest.update(head.encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                digest.update(f"{st.st_ino} {st.st_size} {st.st_mtime_ns}".encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    digest.update(hashlib.file_digest(f, "sha256").digest())
            digest.update(b"\n")
    return digest.hexdigest()


def _mkfs_ext4(path: Path, size: int, label: str, root: Path) -> None:
    path.unlink(missing_ok=True)
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            label,
            "-E",
            "root_owner=0:0",
            "-d",
            root,
            path,
            f"{size // 1024}k",
        ]
    )


def sd_image(
    out: Path,
    boot_files: Mapping[str, Path],
    root_dir: Path | None,
    root_size: int,
    boot_size: int | None = None,
) -> list[Partition]:
    """Write the card image to `out` (via a temporary file renamed into place); without
    `root_dir`, the boot partition alone."""
    boot_size = boot_size or boot_partition_size(boot_files)
    boot = Partition(TYPE_FAT32_LBA, ALIGN, boot_size)
    parts = [boot]
    if root_dir is not None:
        parts.append(
            Partition(TYPE_LINUX, _round(boot.start + boot.size, ALIGN), _round(root_size))
        )
    total = parts[-1].start + parts[-1].size
    disk_id = int.from_bytes(hashlib.sha256(out.name.encode()).digest()[:4], "little") or 1
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".media-") as tmp:
        images = [Path(tmp) / "boot.vfat"]
        make_fat(images[0], boot.size, "boot", boot_files)
        if root_dir is not None:
            images.append(Path(tmp) / "root.ext4")
            make_ext4(images[1], parts[1].size, "root", root_dir)
        partial = Path(tmp) / out.name
        fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, total)
            os.pwrite(fd, mbr(parts, disk_id), 0)
            with Progress(f"write {out.name}", sum(p.size for p in parts)) as bar:
                for part, where in zip(images, (p.start for p in parts), strict=True):
                    for done in files.copy_sparse(part, fd, where):
                        bar.advance(done)
        except OSError as exc:
            raise XenkitError(f"writing {out}: {exc.strerror}") from None
        finally:
            os.close(fd)
        os.replace(partial, out)
    return parts


def read_partitions(image: Path) -> list[Partition]:
    with image.open("rb") as f:
        head = f.read(SECTOR)
    if head[510:512] != b"\x55\xaa":
        raise XenkitError(f"{image} has no MBR: is it a xenkit SD image?")
    parts = []
    for i in range(4):
        _, _, ptype, _, lba, count = struct.unpack_from("<B3sB3sII", head, 446 + 16 * i)
        if ptype:
            parts.append(Partition(ptype, lba * SECTOR, count * SECTOR))
    return parts


def fat_spec(image: Path, partition: Partition) -> str:
    """mtools' name for a FAT filesystem inside a disk image."""
    return f"{image}@@{partition.start}"


def fat_put(image: Path, files: Mapping[str, Path]) -> None:
    """Replace files in the image's first (boot) partition."""
    _mcopy(fat_spec(image, read_partitions(image)[0]), files)


def fat_get(image: Path, name: str, dest: Path) -> None:
    spec = fat_spec(image, read_partitions(image)[0])
    run(["mcopy", "-i", spec, "-n", f"::/{name}", dest], env=MTOOLS_ENV)


def fat_list(image: Path) -> list[str]:
    spec = fat_spec(image, read_partitions(image)[0])
    out = run(["mdir", "-i", spec, "-b", "::/"], env=MTOOLS_ENV, capture=True).stdout
    return sorted(line.strip().removeprefix("::/") for line in out.splitlines() if line.strip())


def ext4_put(image: Path, files: Mapping[str, bytes]) -> None:
    """Add or replace files (path under / -> content) in the image's ext4 root partition,
    in place, with debugfs: no mount, no root."""
    part = read_partitions(image)[1]
    spec = f"{image}?offset={part.start}"
    with tempfile.TemporaryDirectory(prefix="xenkit-ext4-") as tmp:
        cmds = []
        made: set[str] = set()
        for i, (path, data) in enumerate(sorted(files.items())):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                d = "/" + "/".join(parts[:depth])
                if d not in made:
                    cmds.append(f"mkdir {d}")
                    made.add(d)
            src = Path(tmp) / str(i)
            src.write_bytes(data)
            dest = "/" + "/".join(parts)
            cmds += [f"rm {dest}", f"write {src} {dest}", f"sif {dest} mode 0100644"]
        script = Path(tmp) / "cmds"
        script.write_text("\n".join(cmds) + "\n")
        # debugfs reports a missing file or an existing directory and goes on: the
        # filesystem check below is what decides.
        run(["debugfs", "-w", "-f", script, spec], capture=True)
    run(["e2fsck", "-n", "-f", spec], capture=True)


def ext4_get(image: Path, path: str) -> bytes | None:
    """A file's content from the root partition, or None if it is not there."""
    part = read_partitions(image)[1]
    with tempfile.TemporaryDirectory(prefix="xenkit-ext4-") as tmp:
        dest = Path(tmp) / "file"
        run(["debugfs", "-R", f"dump {path} {dest}", f"{image}?offset={part.start}"], capture=True)
        return dest.read_bytes() if dest.exists() else None


# A network root's cache: big enough for a whole root's chunks (the PC's store: 85 MiB),
# and sparse until filled.
CACHE_SIZE = 512 * 1024 * 1024


def cache_disk(path: Path) -> Path:
    """The emulated machine's cache partition: the disk image at `path`, made empty (ext4,
    labelled for the first stage) if it is not there yet, kept across runs."""
    if not path.exists():
        with files.replacing(path) as partial:
            with partial.open("wb") as f:
                f.truncate(CACHE_SIZE)
            run([need("mkfs.ext4"), "-q", "-F", "-L", netroot.CACHE_LABEL, partial])
    return path.absolute()
