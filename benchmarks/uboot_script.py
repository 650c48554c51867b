"""Time to generate boot scripts for 1, 8 and 32 dom0less guests: xenkit next to ImageBuilder's
uboot-script-gen on the same configs and files, when a checkout of it is given.

    python benchmarks/uboot_script.py [--imagebuilder PATH/TO/imagebuilder] [--runs N]

ImageBuilder is not part of xenkit: point --imagebuilder (or $IMAGEBUILDER) at a checkout to
measure it in the same run. Besides the times, the load addresses both tools chose are
compared, so the figures are for equivalent scripts.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from xenkit import cpio, scriptgen

GUESTS = (1, 8, 32)


def _image(path: Path, file_size: int, image_size: int) -> None:
    head = bytearray(64)
    head[16:24] = image_size.to_bytes(8, "little")
    head[56:60] = b"ARM\x64"
    with path.open("wb") as f:
        f.write(head)
        f.truncate(file_size)


def files(root: Path) -> None:
    """Inputs with the sizes of Debian's arm64 Image and Xen 4.17, a real cpio ramdisk and a
    small board DTB, so ImageBuilder's `file` checks pass too."""
    _image(root / "Image", 32956352, 0x2010000)
    _image(root / "xen", 983048, 0x1360C8)
    arc = cpio.Archive()
    arc.file("init", b"#!/bin/sh\n" + b"x" * 4_000_000, 0o755)
    (root / "rootfs.cpio").write_bytes(arc.to_bytes())
    dts = (
        '/dts-v1/; / { #address-cells = <2>; #size-cells = <2>; compatible = "bench";'
        " chosen { }; cpus { #address-cells = <1>; #size-cells = <0>;"
        ' cpu@0 { device_type = "cpu"; reg = <0>; }; }; };'
    )
    subprocess.run(
        ["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(root / "board.dtb"), "-"],
        input=dts.encode(),
        check=True,
    )


def config(guests: int) -> str:
    lines = [
        'MEMORY_START="0x40000000"',
        'MEMORY_END="0x240000000"',
        'DEVICE_TREE="board.dtb"',
        'XEN="xen"',
        'XEN_CMD="console=dtuart dom0_mem=512M"',
        'DOM0_KERNEL="Image"',
        'DOM0_RAMDISK="rootfs.cpio"',
        f"NUM_DOMUS={guests}",
        'UBOOT_SOURCE="boot.source"',
    ]
    for i in range(guests):
        lines += [
            f'DOMU_KERNEL[{i}]="Image"',
            f'DOMU_RAMDISK[{i}]="rootfs.cpio"',
            f"DOMU_MEM[{i}]=128",
        ]
    return "\n".join(lines) + "\n"


def _loads(source: Path) -> list[tuple[int, str]]:
    out = []
    for line in source.read_text().splitlines():
        m = re.match(r"tftpb (0x[0-9A-Fa-f]+) (\S+)$", line)
        if m:
            out.append((int(m.group(1), 16), m.group(2)))
    return out


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--imagebuilder",
        default=os.environ.get("IMAGEBUILDER", ""),
        help="an ImageBuilder checkout (its scripts/uboot-script-gen is run)",
    )
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    ib = Path(args.imagebuilder) / "scripts" / "uboot-script-gen" if args.imagebuilder else None
    if ib is not None and not ib.is_file():
        print(f"bench: {ib} not found: give an ImageBuilder checkout", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="xenkit-bench-") as tmp:
        root = Path(tmp)
        files(root)
        for n in GUESTS:
            cfg = root / f"config-{n}"
            cfg.write_text(config(n))
            inproc = _time(partial(scriptgen.generate, cfg, root, "tftp", f"xk{n}"), args.runs)
            xk = [sys.executable, "-m", "xenkit", "uboot-script", "-o", f"xk{n}"]
            cli = _time(
                partial(_run, [*xk, "-c", str(cfg), "-d", str(root), "-t", "tftp"]), args.runs
            )
            peer = same = None
            if ib is not None:
                argv = [
                    "bash",
                    str(ib),
                    "-c",
                    str(cfg),
                    "-d",
                    str(root),
                    "-t",
                    "tftp",
                    "-o",
                    f"ib{n}",
                ]
                peer = _time(partial(_run, argv), args.runs)
                same = _loads(root / f"ib{n}.source") == _loads(root / f"xk{n}.source")
            rows.append((n, inproc, cli, peer, same))
    print(
        f"{'guests':>6}  {'xenkit (in-process)':>19}  {'xenkit (CLI)':>12}  "
        f"{'ImageBuilder':>12}  {'ratio CLI/IB':>12}  same layout"
    )
    for n, inproc, cli, peer, same in rows:
        ratio = f"{cli / peer:.2f}" if peer else "-"
        print(
            f"{n:>6}  {inproc * 1000:>16.1f} ms  {cli * 1000:>9.1f} ms  "
            f"{(f'{peer * 1000:.1f} ms' if peer else 'not given'):>12}  {ratio:>12}  "
            f"{'-' if same is None else ('yes' if same else 'NO')}"
        )
    return 0 if all(r[4] is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
