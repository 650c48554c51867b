"""Boot a built image on QEMU: the same SD image, with emulation-only fixes on a copy."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from xenkit.config.boards import Board
from xenkit.core.proc import need, run, spawn
from xenkit.errors import XenkitError
from xenkit.images import media
from xenkit.system import rootfs
from xenkit.system.initramfs import READY

log = logging.getLogger("xenkit")
QEMU = "qemu-system-aarch64"


def machine_args(board: Board, ram: str) -> list[str]:
    """QEMU's machine options for the board with RAM model `ram`."""
    emu = board.emulate
    args = ["-machine", emu.machine, "-m", board.emulated_memory(ram)]
    if emu.cpu:
        args += ["-cpu", emu.cpu]
    if emu.smp:
        args += ["-smp", str(emu.smp)]
    if emu.accel:
        args += ["-accel", emu.accel]
    return args


def _qemu_version() -> str:
    return run([QEMU, "--version"], capture=True).stdout.splitlines()[0]


def check_qemu(board: Board) -> None:
    version = _qemu_version()
    machine = board.emulate.machine.split(",")[0]
    listed = run([QEMU, "-machine", "help"], capture=True).stdout
    if not re.search(rf"^{re.escape(machine)}\s", listed, re.M):
        raise XenkitError(
            f"{version} has no {machine} machine: install QEMU >= 9 from bookworm-backports "
            "(scripts/install-system-deps.sh)"
        )


def dumped_dtb(board: Board, ram: str) -> Path:
    """The DTB QEMU generates for the board's machine, cached per QEMU version and options.
    The random seeds QEMU adds are dropped so the image is the same from build to build."""
    from xenkit.debian.apt import cache_home
    from xenkit.formats.dt import DeviceTree

    check_qemu(board)
    args = machine_args(board, ram)
    key = hashlib.sha256((_qemu_version() + " ".join(args)).encode()).hexdigest()[:16]
    target = cache_home() / "derived" / f"{board.name}-{key}.dtb"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = target.with_suffix(".raw")
        machine = args[1] + f",dumpdtb={raw}"
        run([QEMU, "-machine", machine, *args[2:], "-display", "none"])
        tree = DeviceTree.load(raw)
        for prop in ("rng-seed", "kaslr-seed"):
            tree.delete_prop("/chosen", prop)
        target.write_bytes(tree.to_bytes())
        raw.unlink()
    return target


# -- preparing a run --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    argv: list[str]
    image: Path
    console_log: Path


def _copy_sparse(src: Path, dst: Path) -> None:
    with src.open("rb") as fi, dst.open("wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        while chunk := fi.read(1 << 20):
            if chunk.count(0) == len(chunk):
                fo.seek(len(chunk), os.SEEK_CUR)
            else:
                fo.write(chunk)
        fo.truncate(size)


def nic(netdev: str) -> list[str]:
    """A virtio network card on QEMU backend `netdev` (e.g. "user,tftp=DIR" or
    "tap,ifname=tap0,script=no,downscript=no"). On the MMIO bus, not PCI: U-Boot and Linux
    find it without a PCI scan, and the DTB QEMU dumps already lists the slot."""
    return ["-netdev", f"{netdev},id=net0", "-device", "virtio-net-device,netdev=net0"]


def prepare(board: Board, ram: str, build_dir: Path, workdir: Path, netdev: str = "") -> RunPlan:
    """Copy the card image, swap in the emulation DTB and boot script, and pick U-Boot
    from the card itself, so what boots is the image a user would flash. `netdev` adds a
    network card (see nic) for builds that fetch the rest over TFTP."""
    check_qemu(board)
    image = build_dir / "sd.img"
    if not image.exists():
        raise XenkitError(f"{build_dir} has no sd.img: run xenkit build -o {build_dir} first")
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "sd-emulated.img"
    _copy_sparse(image, copy)
    size = copy.stat().st_size
    # QEMU's SD card model only takes power-of-two sizes.
    if board.emulate.disk == "sd" and size & (size - 1):
        os.truncate(copy, 1 << size.bit_length())
    emu = build_dir / "emulate"
    media.fat_put(copy, {p.name: p for p in sorted(emu.iterdir()) if p.is_file()})
    uboot = workdir / "u-boot.bin"
    uboot.unlink(missing_ok=True)
    media.fat_get(copy, "u-boot.bin", uboot)
    console_log = workdir / "console.log"
    argv = [need(QEMU), *machine_args(board, ram), "-display", "none", "-monitor", "none"]
    if board.emulate.uboot == "kernel":
        argv += ["-kernel", str(uboot), "-dtb", str(emu / board.dtb_name)]
    else:
        argv += ["-bios", str(uboot)]
    if board.emulate.disk == "sd":
        argv += ["-drive", f"if=sd,format=raw,file={copy}"]
    else:
        argv += [
            "-drive",
            f"if=none,id=card,format=raw,file={copy}",
            "-device",
            "virtio-blk-device,drive=card",
        ]
    if netdev:
        argv += nic(netdev)
    for index in range(board.emulate.console_serial + 1):
        if index == board.emulate.console_serial:
            argv += ["-serial", "chardev:con"]
        else:
            argv += ["-serial", f"file:{workdir / f'serial{index}.log'}"]
    return RunPlan(argv, copy, console_log)


# -- interactive ------------------------------------------------------------------------------
def interactive(plan: RunPlan) -> int:
    """Console on this terminal (and in the log); Ctrl-C or Ctrl-A X stops QEMU cleanly."""
    argv = [
        *plan.argv,
        "-chardev",
        f"stdio,id=con,mux=on,signal=on,logfile={plan.console_log}",
        "-mon",
        "chardev=con,mode=readline",
    ]
    print("xenkit: console follows; Ctrl-C or Ctrl-A X stops the emulator", file=sys.stderr)
    proc = spawn(argv)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


# -- --check ----------------------------------------------------------------------------------
# Each phase begins at the first console line matching its pattern.
# U-Boot starts at power-on: QEMU runs it directly (no VideoCore firmware), and its banner
# goes to the PL011 before it switches to the board's stdout-path.
PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("U-Boot", re.compile(r"(?!)")),
    ("Xen", re.compile(r"xenkit: starting Xen|^\(XEN\) |^ __  __")),
    ("Dom0 kernel", re.compile(r"Booting Linux on physical CPU|Linux version \d")),
    ("Dom0 userspace", re.compile(r"Run /init as init process|Freeing unused kernel memory")),
)
FAILURES = re.compile(
    r"Kernel panic|\(XEN\) Panic on CPU|\*\*\*\* PANIC|Synchronous Abort|"
    r"## Failed|Wrong Image Format|Unknown command 'booti'|resetting \.\.\."
)


@dataclass
class CheckResult:
    ok: bool
    reason: str
    marks: dict[str, float] = field(default_factory=dict)
    ready_at: float | None = None
    banners: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def banner(self) -> str:
        return "\n  ".join(line for _, line in sorted(self.banners.values()))

    def table(self) -> str:
        rows = [("phase", "starts at", "took")]
        names = [n for n, _ in PHASES]
        dom0 = self.banners.get(READY, (self.ready_at, ""))[0]
        for i, name in enumerate(names):
            if name not in self.marks:
                rows.append((name, "-", "-"))
                continue
            start = self.marks[name]
            nxt = next((self.marks[n] for n in names[i + 1 :] if n in self.marks), dom0)
            took = f"{nxt - start:.1f} s" if nxt is not None else "-"
            rows.append((name, f"{start:.1f} s", took))
        for marker, (t, _) in sorted(self.banners.items(), key=lambda kv: kv[1][0]):
            label = "Dom0 ready" if marker == READY else marker.removeprefix("xenkit: ")
            rows.append((label, f"{t:.1f} s", ""))
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}".rstrip() for r in rows
        )


def banners(manifest: dict[str, Any]) -> list[str]:
    """What a boot of this build prints once it is fully up: Dom0's banner, each boot-time
    guest's, and the end of Dom0's autorun script if it has one."""
    want = [READY, *manifest.get("guest_banners", [])]
    if manifest.get("autorun"):
        want.append(rootfs.AUTORUN_DONE)
    return want


def untangle(lines: Iterable[tuple[float, str]]) -> Iterator[tuple[float, str]]:
    """Dom0's lines whole again. Dom0 and Xen share one serial console, and Xen prints its
    own lines whole (under its console lock) wherever Dom0's output has got to: a Dom0 line
    arrived as "XK 1.2 mem-set 0 98304(XEN) d1v0 ...", its end on the next line. A Xen line
    that starts mid-line is split off, and the fragment before it joins Dom0's next line."""
    held = ""
    for t, line in lines:
        cut = line.find("(XEN)")
        if cut > 0:
            held += line[:cut]
            yield t, line[cut:]
        elif cut == 0:
            yield t, line
        else:
            yield t, held + line
            held = ""
    if held:
        yield 0.0, held


def untangled(console: str) -> str:
    """A whole console log with Dom0's lines put back together (see untangle)."""
    return "\n".join(line for _, line in untangle((0.0, x) for x in console.splitlines()))


def watch(
    lines: Iterable[tuple[float, str]],
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
) -> CheckResult:
    """Follow a boot's console lines (with times since power-on) until every banner in
    `want` (Dom0's, and those of guests) has appeared."""
    marks: dict[str, float] = {PHASES[0][0]: 0.0}
    seen: dict[str, tuple[float, str]] = {}
    for t, line in untangle(lines):
        if echo is not None:
            echo.write(line + "\n")
            echo.flush()
        for name, pattern in PHASES:
            if name not in marks and pattern.search(line):
                marks[name] = t
        for marker in want:
            if marker in line and marker not in seen:
                seen[marker] = (t, line.strip())
        if len(seen) == len(want):
            what = "Dom0 is up" if list(want) == [READY] else "every domain is up"
            return CheckResult(True, what, marks, t, seen)
        if FAILURES.search(line):
            return CheckResult(False, f"boot failed: {line.strip()}", marks, None, seen)
    missing = ", ".join(m for m in want if m not in seen)
    return CheckResult(False, f"the emulator stopped before {missing} appeared", marks, None, seen)


def timed_lines(stream: IO[bytes], start: float, deadline: float) -> Iterator[tuple[float, str]]:
    """Console lines from a pipe, each with the seconds since `start` it arrived at."""
    buf = ""
    fd = stream.fileno()
    os.set_blocking(fd, False)

    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk.decode(errors="replace").replace("\r", "")
        *complete, buf = buf.split("\n")
        now = time.monotonic() - start
        for line in complete:
            yield now, line
    if buf:
        yield time.monotonic() - start, buf


@contextlib.contextmanager
def console(
    argv: list[str], stdin: int = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """QEMU started with its console on stdout (and its input on stdin, given PIPE): the
    process and the time it started at; QEMU is stopped on the way out, however the caller
    leaves."""
    start = time.monotonic()
    proc = spawn(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc, start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def watch_qemu(
    argv: list[str],
    timeout: float,
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
    linger: float = 0.0,
) -> CheckResult:
    """Start QEMU with the console on its stdout, follow it to the banners, stop it;
    after `linger` more seconds if the banners came, to see what runs once all are up."""
    with console(argv) as (proc, start):
        assert proc.stdout is not None
        out = proc.stdout
        result = watch(timed_lines(out, start, start + timeout), echo, want)
        if result.ok and linger > 0:
            for _, line in timed_lines(out, start, time.monotonic() + linger):
                if echo is not None:
                    echo.write(line + "\n")
        if not result.ok and time.monotonic() - start >= timeout:
            missing = ", ".join(m for m in want if m not in result.banners)
            result.reason = f"no {missing} within {timeout:.0f} s"
        return result


def check(
    plan: RunPlan,
    timeout: float,
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
    linger: float = 0.0,
) -> CheckResult:
    con = f"stdio,id=con,signal=off,logfile={plan.console_log}"
    return watch_qemu([*plan.argv, "-chardev", con], timeout, echo, want, linger)


def netboot_plan(
    board: Board,
    ram: str,
    tftp_root: Path,
    uboot: Path,
    workdir: Path,
    bootfile: str = "boot.scr.uimg",
) -> RunPlan:
    """QEMU with no disk and a user-mode network whose DHCP/TFTP serve `tftp_root`: U-Boot's
    distro boot falls through to DHCP and runs `bootfile` from there."""
    check_qemu(board)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        need(QEMU),
        *machine_args(board, ram),
        "-display",
        "none",
        "-monitor",
        "none",
        *nic(f"user,tftp={tftp_root},bootfile={bootfile}"),
    ]
    argv += ["-bios", str(uboot)] if board.emulate.uboot == "bios" else ["-kernel", str(uboot)]
    argv += ["-serial", "chardev:con"]
    return RunPlan(argv, tftp_root or workdir, workdir / "console.log")
