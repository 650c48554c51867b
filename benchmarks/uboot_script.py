"""Time to generate boot scripts for 1, 8 and 32 dom0less guests: xenkit next to ImageBuilder's
uboot-script-gen on the same configs and files, when a checkout of it is given.

    python benchmarks/uboot_script.py [--imagebuilder PATH/TO/imagebuilder] [--runs N]
                                      [--guests 1,8,32] [--quick]

ImageBuilder is not part of xenkit: point --imagebuilder (or $IMAGEBUILDER) at a checkout to
measure it in the same run. Besides the times, what both scripts mean is compared, so the
figures are for equivalent scripts: each script is dry-run (its loads, copies and fdt edits
followed on the host; a load outside RAM or over another fails it), and for every module
/chosen describes (and for Xen and the DTB the boot command takes) the node, its kind and
the file that lands there must agree, and the module's reg must cover the whole file. Where
modules sit is not compared: load commands differ (xenkit reads a file named twice once and
copies it with cp.b, where ImageBuilder reads it again), and so do sizes. xenkit gives an
arm64 Image the reg its header's image_size asks for (room for its bss, so nothing is loaded
there), where an ImageBuilder that sizes it by the file (Xilinx's xlnx_rel_v2023.2 branch)
gives the file's size and packs later modules closer; Xen reads the image_size from the
header either way. How many modules sit elsewhere is printed beside the verdict. --quick
(what CI runs) is one run of the 1-guest config; options given with it still win.
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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import quick
from usercmd import XENKIT, user_env

try:
    from xenkit.bootscripts import bootscript, scriptgen
    from xenkit.errors import XenkitError
    from xenkit.formats import cpio, dt
except ImportError as exc:  # pragma: no cover - only a wrong interpreter gets here
    sys.exit(f"{exc}: run this with the project's venv, e.g. .venv/bin/python {sys.argv[0]}")

GUESTS = (1, 8, 32)
# --quick: the smallest config still has a guest on Dom0's files, where the tools differ.
QUICK = {"runs": 1, "guests": GUESTS[:1]}
MEMORY_START, MEMORY_END = 0x40000000, 0x240000000


def _image(path: Path, file_size: int, image_size: int, body: bytes = b"") -> None:
    head = bytearray(64)
    head[16:24] = image_size.to_bytes(8, "little")
    head[56:60] = b"ARM\x64"
    with path.open("wb") as f:
        f.write(head + body)
        f.truncate(file_size)


def files(root: Path) -> None:
    """Inputs with the sizes of Debian's arm64 Image and Xen 4.17, a real cpio ramdisk and a
    small board DTB, so ImageBuilder's `file` checks pass too."""
    _image(root / "Image", 32956352, 0x2010000, b"Linux version 6.1.0-13-arm64 (fake)\0")
    # With what xenkit reads Xen's version from, as the real one has.
    _image(root / "xen", 983048, 0x1360C8, b"\0xen,xen-4.17\0\x004.17.0\0")
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
        f'MEMORY_START="{MEMORY_START:#x}"',
        f'MEMORY_END="{MEMORY_END:#x}"',
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


# Node names carry addresses, each tool's its own way (dom0@40400000 or dom0, module@42A00000
# or module0x42800000): a module is known by its parent (unit address dropped) and compatible.
UNIT = re.compile(r"@[^/]*")


@dataclass(frozen=True)
class Module:
    addr: int
    size: int  # what reg says; for Xen and the DTB, what was loaded there
    file: str  # what the script's loads and copies put at addr
    loaded: int  # bytes of that file put there

    def __str__(self) -> str:
        return f"{self.file} at {self.addr:#x}+{self.size:#x}"

    @property
    def meaning(self) -> tuple[str, bool]:
        """What Xen is handed: this file, and whether the reg covers all of it."""
        return self.file, self.size >= self.loaded > 0


# (owner, kind): owner is the node that holds the module (/chosen for Xen's and Dom0's,
# /chosen/domU0, ...) or "boot", kind its first compatible string, or xen or dtb for what
# the boot command takes.
Layout = dict[tuple[str, str], Module]


def layout(source: Path, root: Path) -> Layout:
    """What a script leaves in memory and tells Xen, whatever commands got it there."""
    ram = [(MEMORY_START, MEMORY_END - MEMORY_START)]
    dry = bootscript.dry_run(source.read_text(), root, ram)
    if dry.problems:
        raise XenkitError(f"{source.name}: " + "; ".join(dry.problems))
    at: dict[int, tuple[str, int]] = {}
    for addr, path, size in dry.loads:
        at[addr] = (path, size)  # a later load or copy to the same place wins, as in memory
    out: Layout = {}
    if dry.boot is not None:
        _, kernel, fdt = dry.boot
        for kind, addr in (("xen", kernel), ("dtb", fdt)):
            path, size = at.get(addr, ("nothing", 0))
            out[("boot", kind)] = Module(addr, size, path, size)
    regs = dt.AddressMap(dry.tree)
    for path, _ in dry.tree.nodes():
        compatible = dry.tree.compatible(path)
        if not path.startswith("/chosen/") or "multiboot,module" not in compatible:
            continue
        key = (UNIT.sub("", path.rsplit("/", 1)[0]), compatible[0])
        if key in out:
            raise XenkitError(f"{source.name}: two modules are {' '.join(key)}")
        reg = regs.reg(path)
        addr, size = reg[0] if reg else (0, 0)
        out[key] = Module(addr, size, *at.get(addr, ("nothing", 0)))
    return out


def _lowest(ours: Layout, theirs: Layout) -> Callable[[tuple[str, str]], int]:
    def lowest(key: tuple[str, str]) -> int:
        return min(m.addr for m in (ours.get(key), theirs.get(key)) if m is not None)

    return lowest


def differences(ours: Layout, theirs: Layout) -> list[str]:
    """Each module the two mean differently (another file, one missing) or that either
    describes with a reg too small for its file, lowest address first."""

    def meaning(layout: Layout, key: tuple[str, str]) -> tuple[str, bool]:
        m = layout.get(key)
        return m.meaning if m else ("none", False)

    return [
        f"{' '.join(key)}: xenkit {ours.get(key, 'none')}, ImageBuilder {theirs.get(key, 'none')}"
        for key in sorted(ours.keys() | theirs.keys(), key=_lowest(ours, theirs))
        if meaning(ours, key) != meaning(theirs, key) or not meaning(ours, key)[1]
    ]


def moved(ours: Layout, theirs: Layout) -> int:
    """How many modules the two put at another address or with another reg size."""
    return sum(1 for key in ours.keys() & theirs.keys() if ours[key] != theirs[key])


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers like 1,8,32") from None


def _run(what: str, argv: list[str]) -> None:
    proc = subprocess.run(argv, env=user_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"bench: {what} failed (exit {proc.returncode}): {said[0]}")


def _time(fn: Callable[[], object], runs: int) -> float:
    """The median of `runs` timed runs, after one untimed: the first pays for what any
    later run finds done (the page cache, compiled modules, lazy imports)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def same_layout(root: Path, n: int) -> bool:
    """Whether both scripts for n guests mean the same; says what differs if not."""
    try:
        ours = layout(root / f"xk{n}.source", root)
        theirs = layout(root / f"ib{n}.source", root)
    except XenkitError as exc:
        print(f"bench: {n} guests: {exc}", file=sys.stderr)
        return False
    diff = differences(ours, theirs)
    if diff:
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        print(f"bench: {n} guests: the scripts differ at {diff[0]}{more}", file=sys.stderr)
    elif shifted := moved(ours, theirs):
        print(
            f"bench: {n} guests: same meaning; {shifted} of {len(ours)} modules sit at other "
            "addresses or with other reg sizes (see this script's docstring)",
            file=sys.stderr,
        )
    return not diff


@dataclass(frozen=True)
class Row:
    guests: int
    inproc: float
    cli: float
    peer: float | None  # ImageBuilder, when given
    same: bool | None


def measure(root: Path, n: int, runs: int, ib: Path | None) -> Row:
    cfg = root / f"config-{n}"
    cfg.write_text(config(n))
    inproc = _time(partial(scriptgen.generate, cfg, root, "tftp", f"xk{n}"), runs)
    xk = [*XENKIT, "uboot-script", "-o", f"xk{n}"]
    xk += ["-c", str(cfg), "-d", str(root), "-t", "tftp"]
    cli = _time(partial(_run, "xenkit uboot-script", xk), runs)
    if ib is None:
        return Row(n, inproc, cli, None, None)
    argv = ["bash", str(ib), "-c", str(cfg), "-d", str(root), "-t", "tftp", "-o", f"ib{n}"]
    peer = _time(partial(_run, "uboot-script-gen", argv), runs)
    return Row(n, inproc, cli, peer, same_layout(root, n))


# Issue 17's target for the CLI's own cost: what the command line adds to generating the
# script in-process (the interpreter, imports, argument parsing), for one guest.
STARTUP_TARGET = 0.060
# The floors that cost sits on, timed in the same run: the bare interpreter, and it importing
# the standard modules the house style builds every command from (argparse for the command
# line, frozen dataclasses for specs, pathlib for paths) and nothing of xenkit's.
FLOORS = {
    "python -c pass": "pass",
    "python + argparse, dataclasses, pathlib": "import argparse, dataclasses, pathlib",
}


def floors(runs: int) -> dict[str, float]:
    return {
        name: _time(partial(_run, name, [sys.executable, "-c", code]), runs)
        for name, code in FLOORS.items()
    }


def report(rows: list[Row], floor: dict[str, float]) -> None:
    print(
        f"{'guests':>6}  {'xenkit (in-process)':>19}  {'xenkit (CLI)':>12}  {'start-up':>8}  "
        f"{'ImageBuilder':>12}  {'ratio CLI/IB':>12}  same layout"
    )
    for r in rows:
        ratio = f"{r.cli / r.peer:.2f}" if r.peer else "-"
        peer = f"{r.peer * 1000:.1f} ms" if r.peer else "not given"
        same = "-" if r.same is None else ("yes" if r.same else "NO")
        print(
            f"{r.guests:>6}  {r.inproc * 1000:>16.1f} ms  {r.cli * 1000:>9.1f} ms  "
            f"{(r.cli - r.inproc) * 1000:>5.1f} ms  {peer:>12}  {ratio:>12}  {same}"
        )
    one = next((r for r in rows if r.guests == 1), None)
    if one is not None:
        took = one.cli - one.inproc
        verdict = "met" if took < STARTUP_TARGET else "NOT met"
        print(
            f"start-up (CLI minus in-process), 1 guest: {took * 1000:.1f} ms, target under "
            f"{STARTUP_TARGET * 1000:.0f} ms: {verdict}"
        )
    # Which interpreter: Debian's (libpython linked into the binary) started and imported
    # faster here than one built from source with pyenv's defaults (a shared libpython, no
    # --enable-optimizations): 40 against 50-66 ms for the second floor, 2026-12-07.
    print(f"interpreter: {os.path.realpath(sys.executable)}, Python {sys.version.split()[0]}")
    for name, took in floor.items():
        print(f"  {name}: {took * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--imagebuilder",
        default=os.environ.get("IMAGEBUILDER", ""),
        help="an ImageBuilder checkout (its scripts/uboot-script-gen is run)",
    )
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--guests", type=_numbers, default=GUESTS, help="comma-separated")
    args = quick.parse_args(p, argv, QUICK, "one run of the 1-guest config")
    if args.runs < 1 or min(args.guests) < 1:
        p.error("--runs and --guests must be at least 1")
    ib = Path(args.imagebuilder) / "scripts" / "uboot-script-gen" if args.imagebuilder else None
    if ib is not None and not ib.is_file():
        print(f"bench: {ib} not found: give an ImageBuilder checkout", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xenkit-bench-") as tmp:
        root = Path(tmp)
        files(root)
        rows = [measure(root, n, args.runs, ib) for n in args.guests]
    report(rows, floors(max(args.runs, 5)))
    return 0 if all(r.same is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
