"""A toolstack Dom0's root as read-only layers: the cached tree's squashfs image (made once,
shared by every build) and this build's layer over it. For a network root, each layer goes
into a chunk store and the indexes that pin it onto the end of Dom0's initramfs."""

from __future__ import annotations

import os
from pathlib import Path

from xenkit.core import files, log
from xenkit.core.proc import need, run
from xenkit.core.sizes import human
from xenkit.formats.cpio import Archive
from xenkit.images import chunkstore
from xenkit.system import netroot

# Where a network root goes beside a build's media, and its two layers (this build's, the
# cached base), the live image's names for them.
NETROOT = "netroot"
LAYERS = ("live/build.sqfs", "live/base.sqfs")

# zstd: a little larger than xz (27 against 24 MiB for the PC's drivers) but made in half
# the time and read faster, and every file Dom0 runs is read through it.
SQUASHFS = ("-noappend", "-comp", "zstd", "-all-root", "-no-xattrs", "-quiet", "-no-progress")


def squashfs(src: Path, dest: Path, exclude: tuple[str, ...] = ()) -> None:
    """`src` as a compressed read-only image, the same bytes for the same tree: owners root,
    times 0 (Dom0's clock starts in 1970 in the emulator anyway)."""
    times = ("-mkfs-time", "0", "-all-time", "0")
    skip = [a for e in exclude for a in ("-e", e)]
    # mksquashfs refuses SOURCE_DATE_EPOCH beside its own options; the times are fixed.
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    run([need("mksquashfs"), src, dest, *SQUASHFS, *times, *skip], env=env)


def base_image(tree: Path) -> Path:
    """The cached tree's image, made once beside it."""
    image = tree.with_name(tree.name + ".sqfs")
    if not image.exists():
        with files.replacing(image) as partial:
            squashfs(tree, partial, exclude=(".complete",))
    return image


def _publish(layers: dict[str, Path], shared: Path | None, netdir: Path) -> bytes:
    """Each layer into the chunk store (the build's own, or `shared` linked as its store),
    its index into `netdir`; the indexes and the chunks' order as an uncompressed cpio
    archive for the end of the initramfs, which pins them."""
    netdir.mkdir()
    store = netdir / "store"
    if shared:
        shared.mkdir(parents=True, exist_ok=True)
        store.symlink_to(shared)
    arc = Archive()
    arc.dir(netroot.PINS)
    order: dict[str, list[str]] = {}
    for layer, image in layers.items():
        name = Path(layer).stem
        added = chunkstore.add(image, store, netdir / f"{name}.caibx")
        order[name] = [c.id for c in added.index.chunks]
        log.info(
            "net root: %s layer %s in %d chunks, %d new, %.1f%% already in the store",
            name,
            human(added.index.size),
            len(added.index.chunks),
            added.new,
            100 * added.shared,
        )
        arc.file(f"{netroot.PINS}/{name}.caibx", (netdir / f"{name}.caibx").read_bytes())
    arc.file(f"{netroot.PINS}/chunks", netroot.chunk_lists(order))
    return arc.to_bytes()


def publish(
    layer: Path,
    tree: Path,
    names: tuple[str, str],
    shared: Path | None,
    netdir: Path,
    ramdisk: Path,
) -> None:
    """A network root: this build's `layer` (a directory) and the cached `tree`, as the
    layers `names` (this build's, the base), into the store under `netdir`; their pins
    appended to `ramdisk`."""
    image = netdir.with_name("layer.sqfs")
    squashfs(layer, image)
    try:
        pins = _publish({names[0]: image, names[1]: base_image(tree)}, shared, netdir)
    finally:
        image.unlink()
    with ramdisk.open("ab") as f:
        # Linux takes an uncompressed archive after a compressed one only at an offset
        # that is a multiple of 4 (init/initramfs.c), and skips zeros.
        f.write(b"\0" * (-f.tell() % 4) + pins)
