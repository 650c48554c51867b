"""QEMU for a board: its binary and machine options, the DTB it generates, network cards.
Small and without the console machinery, so build-time users (the DTB of a board whose
device tree QEMU makes) do not pull in the runner."""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xenkit.config import arch
from xenkit.config.boards import Board
from xenkit.core import memo
from xenkit.core.cachedir import cache_home
from xenkit.core.proc import need, run
from xenkit.errors import XenkitError
from xenkit.formats.dt import DeviceTree


@dataclass(frozen=True)
class RunPlan:
    argv: list[str]
    image: Path
    console_log: Path
    # What runs from power-on until Xen (the first phase of `run --check`'s timings).
    firmware: str = "firmware"
    # Keys typed on the console when a prompt appears, in order, as a user would (a boot
    # menu entry chosen): (text the console shows, bytes to send).
    answers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Choices:
    """What `xenkit run` may choose where a boot target offers it; "" or None: its default."""

    firmware: str = ""  # "bios", "uefi"
    media: str = ""  # "cd", "usb", "disk": what the image is in
    nic: str = ""  # the network card's model
    entry: int | None = None  # the boot menu's entry, from 0
    cpu: str = ""  # QEMU's -cpu, in place of the board's
    # A network root: the chunk stores Dom0 fetches from (handed over as the DHCP boot file)
    # and a disk image for its cache partition.
    mirrors: tuple[str, ...] = ()
    cache_disk: str = ""


def binary(board: Board) -> str:
    """The board's QEMU: the installed one, or a Debian release's its board file names."""
    facts = arch.get(board.arch)
    if not board.emulate.qemu_release:
        return facts.qemu
    from xenkit.run import qemudeb  # here: apt and the unpacking only for such a board

    return str(qemudeb.binary(board.emulate.qemu_release, facts.qemu_packages, facts.qemu))


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


def version(board: Board) -> str:
    return _version(binary(board))


@functools.cache
def _facts(qemu: str) -> dict[str, bytes]:
    """QEMU's version line and machine list, asked once per QEMU binary (by its size and
    mtime: an upgrade replaces it): the two runs took 36 ms of every build of an emulated
    board."""
    path = Path(need(qemu))
    st = path.stat()

    def ask() -> dict[str, bytes]:
        version = run([qemu, "--version"], capture=True).stdout.splitlines()[0]
        machines = run([qemu, "-machine", "help"], capture=True).stdout
        return {"version": version.encode(), "machines": machines.encode()}

    return memo.cached(
        "qemu", memo.key(memo.source(), str(path), st.st_size, st.st_mtime_ns, st.st_ino), ask
    )


def _version(qemu: str) -> str:
    return _facts(qemu)["version"].decode()


def check(board: Board) -> None:
    """Refuse a QEMU that lacks the board's machine, saying where a newer one is."""
    found = version(board)
    machine = board.emulate.machine.split(",")[0]
    listed = _facts(binary(board))["machines"].decode()
    if not re.search(rf"^{re.escape(machine)}\s", listed, re.M):
        raise XenkitError(
            f"{found} has no {machine} machine: install QEMU >= 9 from bookworm-backports "
            "(scripts/install-system-deps.sh)"
        )


def cpu_models(listing: str) -> set[str]:
    """The CPU model names in `qemu-system-* -cpu help`: the lines under "Available CPUs:",
    up to the first blank line (x86 lists its CPUID flags after one). Indented by QEMU 9
    and later; QEMU 7.2's x86 puts "x86 " before each."""
    models: set[str] = set()
    for line in listing.split("Available CPUs:", 1)[-1].lstrip("\n").splitlines():
        words = line.split()
        if not words:
            break
        models.add(words[1] if words[0] == "x86" and len(words) > 1 else words[0])
    return models


def check_cpu(board: Board, cpu: str) -> None:
    """Refuse a -cpu whose model the board's QEMU does not have, before it boots."""
    model = cpu.split(",")[0]
    if model not in cpu_models(run([binary(board), "-cpu", "help"], capture=True).stdout):
        raise XenkitError(
            f"--cpu {cpu}: {binary(board)} has no CPU model {model!r}; "
            f"list them with {binary(board)} -cpu help"
        )


def start(board: Board, ram: str) -> list[str]:
    """The head of every run's command line: the board's QEMU, checked, headless, with its
    machine options; the boot target adds its media, firmware and console."""
    check(board)
    return [need(binary(board)), *machine_args(board, ram), "-display", "none", "-monitor", "none"]


def dumped_dtb(board: Board, ram: str) -> Path:
    """The DTB QEMU generates for the board's machine, cached per QEMU version and options.
    The random seeds QEMU adds are dropped so the image is the same from build to build."""
    check(board)
    args = machine_args(board, ram)
    key = hashlib.sha256((version(board) + " ".join(args)).encode()).hexdigest()[:16]
    target = cache_home() / "derived" / f"{board.name}-{key}.dtb"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = target.with_suffix(".raw")
        machine = args[1] + f",dumpdtb={raw}"
        run([binary(board), "-machine", machine, *args[2:], "-display", "none"])
        tree = DeviceTree.load(raw)
        for prop in ("rng-seed", "kaslr-seed"):
            tree.delete_prop("/chosen", prop)
        target.write_bytes(tree.to_bytes())
        raw.unlink()
    return target


def nic(netdev: str) -> list[str]:
    """A virtio network card on QEMU backend `netdev` (e.g. "user,tftp=DIR" or
    "tap,ifname=tap0,script=no,downscript=no"). On the MMIO bus, not PCI: U-Boot and Linux
    find it without a PCI scan, and the DTB QEMU dumps already lists the slot."""
    return ["-netdev", f"{netdev},id=net0", "-device", "virtio-net-device,netdev=net0"]


def serial_args(board: Board, workdir: Path) -> list[str]:
    """The console on chardev "con", at the serial port index the board's console uses;
    the ports before it log to files."""
    args = []
    for index in range(board.emulate.console_serial + 1):
        if index == board.emulate.console_serial:
            args += ["-serial", "chardev:con"]
        else:
            args += ["-serial", f"file:{workdir / f'serial{index}.log'}"]
    return args


def mirrors_bootfile(mirrors: tuple[str, ...]) -> str:
    """The user network's option that hands the stores' URLs over as the DHCP boot file,
    where a network root's first stage looks (a comma doubled); "" for none."""
    return ",bootfile=" + ",,".join(mirrors) if mirrors else ""


@functools.cache
def _io_uring(qemu: str) -> bool:
    """Whether this QEMU can read its disks through Linux's io_uring here: built with it,
    and the kernel (or a container's seccomp filter) allowing it. Asked once a process."""
    with tempfile.NamedTemporaryFile() as f:
        probe = ["-monitor", "stdio", "-drive", f"if=none,format=raw,file={f.name},aio=io_uring"]
        head = [qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S"]
        proc = run([*head, *probe], capture=True, check=False, stdin=b"quit\n")
    return proc.returncode == 0


def drive(board: Board, spec: str) -> list[str]:
    """`-drive spec`, read through io_uring where the host has it. QEMU's card models read
    one 512-byte block per request, and its default thread pool hands each to a worker
    thread and back: measured on the emulated Pi 4 (2 host cores), U-Boot read Dom0's
    11 MiB kernel from the card in 7.7 s with the pool and 4.6 s with io_uring."""
    return ["-drive", spec + (",aio=io_uring" if _io_uring(need(binary(board))) else "")]


def cache_drive(board: Board, disk: Path, device: str) -> list[str]:
    """A network root's cache disk image on `device` (the machine's virtio block device)."""
    return [
        *drive(board, f"if=none,id=cache,format=raw,file={disk}"),
        "-device",
        f"{device},drive=cache",
    ]
