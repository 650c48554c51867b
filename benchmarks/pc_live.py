#!/usr/bin/env python3
"""Time the PC's live image, each figure against a peer measured in the same run.

    python benchmarks/pc_live.py [--runs N] [--firmware bios,uefi] [--quick]

--quick (what CI runs) is one run, SeaBIOS only.

1. cold build (downloads and apt indexes cached; the Dom0 root's tree and its squashfs, the
   extracted files, not) against a warm rebuild after a Xen command line change.
2. QEMU start -> "xenkit: Dom0 ready" per firmware, through GRUB from the CD, against QEMU
   loading the same Xen, kernel and initramfs itself (-kernel with multiboot; the CD still
   in its drive, for the live root): the difference is the firmware and GRUB.
3. a PV guest's start (xl create -> its banner, Dom0's clock) against Dom0's own kernel
   phase in the same boot: one kernel booting as a guest and as Dom0.
4. the image's size against Alpine's Xen ISO, as its download listing gives it.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import build_and_boot as bb
import quick

try:
    from xenkit.config import boards
    from xenkit.core import cachedir
    from xenkit.core.sizes import MiB
    from xenkit.pipeline import manifest
    from xenkit.run import emulate, qemu
    from xenkit.system.initramfs import READY
    from xenkit.targets import grub
except ImportError as exc:  # pragma: no cover - only a wrong interpreter gets here
    sys.exit(f"{exc}: run this with the project's venv, e.g. .venv/bin/python {sys.argv[0]}")

BOARD = "pc"
# alpine-xen-3.18.0-x86_64.iso: "221M" in dl-cdn.alpinelinux.org's v3.18 release listing
# (2023-05-09), the last Alpine Xen ISO whose size xenkit's sources record.
ALPINE_XEN_ISO = 221 * MiB
QUICK = {"runs": 1, "firmware": "bios"}
# Dom0 starts one PV guest and reports how long its banner took, by Dom0's clock.
GUEST_START = r"""#!/bin/sh
start=$(cut -d' ' -f1 /proc/uptime)
xl create /etc/xen/g1.cfg >/dev/null 2>&1 || echo "XK guest-start failed"
log=/var/log/xen/console/guest-g1.log
i=0
until grep -a -q "xenkit: guest g1 ready" "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.5
done
end=$(cut -d' ' -f1 /proc/uptime)
echo "XK guest-start $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')"
xl destroy g1
"""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    ready: float | None = None  # QEMU start -> Dom0 banner
    kernel: float | None = None  # Dom0 kernel phase
    guest: float | None = None  # xl create -> the guest's banner


def boot_grub(build_dir: Path, work: Path, firmware: str, timeout: float) -> Run:
    board = boards.load(BOARD)
    plan = emulate.prepare(
        board, board.default_ram, build_dir, work, choices=qemu.Choices(firmware=firmware)
    )
    result = emulate.check(plan, timeout, None, emulate.banners(manifest.read(build_dir)))
    if not result.ok:
        raise SystemExit(f"bench: {firmware} boot failed: {result.reason} ({plan.console_log})")
    guest = None
    for line in emulate.untangled(plan.console_log.read_text(errors="replace")).splitlines():
        if line.startswith("XK guest-start "):
            guest = float(line.split()[2])
    marks = result.marks
    kernel = None
    if "Dom0 kernel" in marks and "Dom0 userspace" in marks:
        kernel = marks["Dom0 userspace"] - marks["Dom0 kernel"]
    return Run(result.banners[READY][0], kernel, guest)


def boot_direct(build_dir: Path, work: Path, timeout: float) -> Run:
    """QEMU's own multiboot loader: Xen (the ELF32 inside xen.gz) and Dom0's kernel and
    initramfs as its modules, with the command lines GRUB's first entry gives them in the
    emulator (the slot's words too), and the CD in a drive as xenkit's run has it."""
    board = boards.load(BOARD)
    m = manifest.read(build_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    xen = work / "xen"
    xen.write_bytes(gzip.decompress((build_dir / m.boot_files.xen).read_bytes()))
    boot = build_dir / "boot"
    kernel = build_dir / m.boot_files.kernel
    argv = [*qemu.start(board, board.default_ram), "-nodefaults", "-kernel", str(xen)]
    argv += ["-append", m.emulator_xen_cmdline]
    argv += ["-initrd", f"{kernel} {m.dom0_cmdline},{boot / 'initrd.cpio.gz'}"]
    iso = build_dir / grub.ISO
    argv += qemu.drive(board, f"file={iso},media=cdrom,readonly=on,format=raw")
    argv += ["-netdev", "user,id=net0", "-device", "e1000,netdev=net0"]
    argv += qemu.serial_args(board, work)
    console = work / "console.log"
    argv += ["-chardev", f"stdio,id=con,signal=off,logfile={console}"]
    result = emulate.watch_qemu(argv, timeout, firmware="QEMU multiboot")
    if not result.ok:
        raise SystemExit(f"bench: direct boot failed: {result.reason} ({console})")
    return Run(result.ready_at)


def med(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def row(what: str, value: float | None, peer: str, peer_value: float | None) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} s"

    ratio = f"{value / peer_value:.2f}x" if value and peer_value else "-"
    return f"{what:<34} {fmt(value):>8}   {peer:<28} {fmt(peer_value):>8}  {ratio:>6}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--firmware", default="bios,uefi", help="comma-separated: bios, uefi")
    ap.add_argument("--timeout", type=float, default=900)
    args = quick.parse_args(ap, argv, QUICK, "one run, SeaBIOS only")
    firmwares = [f for f in args.firmware.split(",") if f]
    board = boards.load(BOARD)
    real = cachedir.cache_home()
    with tempfile.TemporaryDirectory(prefix="xenkit-bench-pc-") as tmp:
        work = Path(tmp)
        bb.prime(board, real, work)
        cache = work / "cache"
        bb.private_cache(real, cache)
        script = work / "guest.sh"
        script.write_text(GUEST_START)
        config = work / "pc.toml"
        config.write_text(f'board = "pc"\ndom0_autorun = "{script}"\n[[guest]]\nname = "g1"\n')
        out = work / "out"
        cold, warm = [], []
        for i in range(args.runs):
            bb.clear_derived(cache)
            log(f"cold build {i + 1}/{args.runs}")
            cold.append(bb.xenkit_build(BOARD, out, cache, ["-c", str(config)]))
            log(f"warm rebuild {i + 1}/{args.runs}")
            extra = ["-c", str(config), "--xen-extra", bb.XEN_CHANGE]
            warm.append(bb.xenkit_build(BOARD, out, cache, extra))
        # The boots use the last build (with the Xen change, which only adds log lines).
        boots: dict[str, list[Run]] = {f: [] for f in [*firmwares, "direct"]}
        for i in range(args.runs):
            for firmware in firmwares:
                log(f"{firmware} boot {i + 1}/{args.runs}")
                boots[firmware].append(boot_grub(out, work / firmware, firmware, args.timeout))
            log(f"direct boot {i + 1}/{args.runs}")
            boots["direct"].append(boot_direct(out, work / "direct", args.timeout))
        size = (out / grub.ISO).stat().st_size

    direct = med([r.ready for r in boots["direct"]])
    lines = [
        f"xenkit on the PC (pc board), {args.runs} run(s), medians; "
        f"{qemu.version(boards.load(BOARD))}, TCG, -cpu {boards.load(BOARD).emulate.cpu}",
        row("cold build", med(cold), "-", None),
        row("warm rebuild (Xen cmdline)", med(warm), "cold build", med(cold)),
    ]
    for firmware in firmwares:
        runs = boots[firmware]
        ready = med([r.ready for r in runs])
        lines.append(row(f"to Dom0 ready, {firmware} + GRUB", ready, "QEMU multiboot", direct))
    first = boots[firmwares[0]]
    guest, kernel = med([r.guest for r in first]), med([r.kernel for r in first])
    lines.append(row("PV guest start (xl create)", guest, "Dom0's kernel phase", kernel))
    lines.append(
        f"{'image size (live.iso)':<34} {size / MiB:>6.1f} MiB "
        f"  Alpine's Xen ISO (3.18.0)    {ALPINE_XEN_ISO / MiB:>6.1f} MiB  "
        f"{size / ALPINE_XEN_ISO:>5.2f}x"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
