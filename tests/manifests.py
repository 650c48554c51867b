"""A small, valid manifest for tests that need a build directory without building one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from xenkit.config import boards
from xenkit.pipeline import manifest
from xenkit.pipeline.manifest import BootFiles, FileEntry, GuestEntry, LoadEntry, Manifest
from xenkit.xen.memory import Module


def entry_of(data: bytes) -> FileEntry:
    """What the manifest must say of a file holding `data`, worked out the plain way: every
    MiB read and looked at."""
    mib = 1 << 20
    blocks = [data[i : i + mib] for i in range(0, len(data), mib)]
    kept = [b for b in blocks if b.count(0) != len(b)]
    zero: list[tuple[int, int]] = []
    for n, b in enumerate(blocks):
        if b.count(0) == len(b):
            zero = (
                [*zero[:-1], (zero[-1][0], n + 1)]
                if zero and zero[-1][1] == n
                else [*zero, (n, n + 1)]
            )
    return FileEntry(len(data), hashlib.sha256(b"".join(kept)).hexdigest(), tuple(zero))


def sample(board: str = "rpi4") -> Manifest:
    b = boards.load(board)
    return Manifest(
        xenkit="0.0",
        built="2026-01-01T00:00:00Z",
        build_seconds=1.5,
        board=b.name,
        target=b.target,
        description=b.description,
        debian=b.release,
        ram=b.default_ram,
        ram_banks=b.ram[b.default_ram],
        emulated_ram_banks=b.emulated_ram(b.default_ram),
        boot_files=BootFiles("boot/xen", "boot/Image.gz", "boot/x.dtb", "emulate/x.dtb"),
        xen_version="4.17.5",
        linux_version="6.1.0",
        kernel_isize=None,
        dom0_mem="512M",
        xen_cmdline="console=dtuart",
        dom0_cmdline="console=hvc0",
        emulator_dom0_cmdline="console=hvc0",
        emulator_xen_cmdline="console=dtuart dom0_mem=512M",
        packages=(),
        local_files={},
        layout=(LoadEntry("xen", "xen", 0x200000, 0x400000, 0x200000, 0x1F0000),),
        guests=(),
        guest_banners=(),
        banners=("xenkit: dom0 ready",),
        toolstack=True,
        dom0_root="sd",
        autorun=False,
        runtime_guests=(GuestEntry("g1", "128M", 1, 2, "10.99.0.10/24"),),
        xen_modules={"hardware": (Module("xen", 0x200000, 0x200000),), "emulator": ()},
        files={"sd.img": FileEntry(10, "0" * 64)},
    )


def write_build(build_dir: Path, m: Manifest) -> Path:
    """A build directory holding `m` and its board file, as `xenkit build` leaves them."""
    build_dir.mkdir(parents=True, exist_ok=True)
    manifest.write(build_dir, m)
    (build_dir / manifest.BOARD_FILE).write_text(boards.load(m.board).source)
    return build_dir
