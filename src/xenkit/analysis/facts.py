"""What `xenkit check` and `xenkit map` know about a system, gathered in one Target: the
board, its device tree, RAM, command lines, the binaries' versions and the boot modules,
from a build directory (through its manifest) or from parts given one by one."""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from xenkit.config import boards
from xenkit.config.boards import Board
from xenkit.core import files, memo
from xenkit.core.sizes import format_size, parse_size
from xenkit.errors import XenkitError
from xenkit.formats import binaries, dt, identify, kernel
from xenkit.formats.binaries import Version
from xenkit.pipeline import manifest
from xenkit.xen import memory


def xen_size(text: str) -> int:
    """Xen's parse_size_and_unit(): T/G/M/K/B suffixes. With no suffix Xen counts KiB, where
    everything else a user writes for xenkit counts MiB: refused rather than guessed."""
    m = re.fullmatch(r"(\d+)([TtGgMmKkBb]?)", text)
    if not m:
        raise XenkitError(f"dom0_mem={text} is not a size Xen reads: write e.g. 512M")
    if not m.group(2):
        raise XenkitError(
            f"dom0_mem={text} has no unit, which Xen reads as KiB "
            f"({format_size(int(text) << 10)}): write the unit, e.g. {text}K or 512M"
        )
    shift = {"t": 40, "g": 30, "m": 20, "k": 10, "b": 0}[m.group(2).lower()]
    return int(m.group(1)) << shift


def cmdline_value(cmdline: str, key: str) -> str | None:
    found = None
    for word in cmdline.split():
        if word.startswith(key + "="):
            found = word.split("=", 1)[1]
    return found


@dataclass(frozen=True)
class Target:
    board: Board
    tree: dt.DeviceTree | None  # None: a board without one (the PC)
    ram: tuple[tuple[int, int], ...]
    xen_cmdline: str
    dom0_cmdline: str
    config_txt: tuple[str, ...] | None  # None: not known
    modules: tuple[memory.Module, ...] = ()
    xen_version: Version | None = None
    linux_version: Version | None = None
    kernel_isize: int | None = None
    description: str = ""
    # The checks that apply (the boot target's, by name); None: a device-tree board's.
    checks: tuple[str, ...] | None = None
    # What the run-time guests may take at most, together.
    guests_memory: int = 0
    emulated: bool = False
    # The CPU flags of the machine xenkit runs on (/proc/cpuinfo); None: not read.
    cpu_flags: frozenset[str] | None = None
    # The run-time guests' (name, type).
    guest_types: tuple[tuple[str, str], ...] = ()

    @property
    def devicetree(self) -> dt.DeviceTree:
        if self.tree is None:
            raise XenkitError(
                f"{self.board.name} has no device tree: the address map and the memory model "
                "are for device-tree boards"
            )
        return self.tree

    @cached_property
    def addresses(self) -> dt.AddressMap:
        return dt.AddressMap(self.devicetree)

    @property
    def dom0_mem(self) -> int | None:
        value = cmdline_value(self.xen_cmdline, "dom0_mem")
        return xen_size(value) if value else None

    @property
    def lowmem_bits(self) -> int:
        platform = self.board.dma_bitsize
        if self.board.platform_compatible not in self.devicetree.compatible("/"):
            platform = 0
        version = self.xen_version or Version(*self.board.min_xen, "")
        return memory.lowmem_bits(platform, version.major, version.minor)

    @cached_property
    def reserved(self) -> list[tuple[int, int]]:
        return [(a, s) for a, s, _ in self.addresses.reserved()]

    @cached_property
    def devices(self) -> tuple[dt.Device, ...]:
        """Every device of the tree, in CPU addresses: translated once per device tree
        (20 ms of every rebuild, whose tree a command line change leaves as it was)."""
        return _kept(
            "devices",
            lambda: tuple(self.addresses.devices()),
            (dt.Device, dt.Mapping),
            self.devicetree.blob(),
        )

    @cached_property
    def dom0(self) -> memory.Dom0Memory:
        # Without dom0_mem Xen on Arm takes 512M (and warns).
        inputs = (
            tuple(self.ram),
            tuple(self.modules),
            tuple(self.reserved),
            self.dom0_mem or 512 << 20,
            self.lowmem_bits,
            self.kernel_isize,
        )
        # Replaying Xen's heap is 40 ms of every rebuild, and a command line change leaves
        # the inputs as they were.
        return _kept("dom0-memory", lambda: memory.predict(*inputs), (memory.Dom0Memory,), *inputs)


T = TypeVar("T")


class _Loader(pickle.Unpickler):
    """Reads back only the classes a kept value is made of: the cache may be shared
    (XENKIT_CACHE), and a pickle naming any other class could run code here."""

    def __init__(self, data: bytes, allowed: tuple[type, ...]) -> None:
        super().__init__(io.BytesIO(data))
        self.allowed = {(c.__module__, c.__qualname__): c for c in allowed}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not a kept value's") from None


def _kept(kind: str, make: Callable[[], T], allowed: tuple[type, ...], *inputs: object) -> T:
    """make()'s value (made of tuples, numbers, strings and the `allowed` classes), made
    once per set of inputs (xenkit's code among them) and kept in xenkit's cache; an entry
    that does not read back is made again."""
    k = memo.key(memo.source(), *inputs)
    made = memo.cached(kind, k, lambda: {"value.pickle": pickle.dumps(make())})
    try:
        value: T = _Loader(made["value.pickle"], allowed).load()
    except Exception:  # a damaged or foreign entry, whatever pickle makes of it
        value = make()
        memo.forget(kind, k)
        memo.store(kind, k, {"value.pickle": pickle.dumps(value)})
    return value


# -- building a Target ------------------------------------------------------------------------
def from_build(
    build_dir: Path,
    emulated: bool = False,
    m: manifest.Manifest | None = None,
    name: Path | None = None,
) -> Target:
    """The system in a build directory: for hardware, or as the emulator boots it. `m` is
    its manifest when the caller has it at hand (the build itself), else it is read; `name`
    is what reports call the build (the build itself is written under a temporary name)."""
    m = m or manifest.read(build_dir)
    which = "emulator" if emulated else "hardware"
    config = m.boot_files.config_txt
    tree = None
    if m.boot_files.dtb:
        tree = dt.DeviceTree.load(m.path(build_dir, "emulator_dtb" if emulated else "dtb"))
    guests = sum(parse_size(g.memory, "memory") for g in m.runtime_guests)
    return Target(
        board=manifest.board(build_dir, m),
        tree=tree,
        ram=m.emulated_ram_banks if emulated else m.ram_banks,
        xen_cmdline=m.emulator_xen_cmdline if emulated else m.xen_cmdline,
        dom0_cmdline=m.emulator_dom0_cmdline if emulated else m.dom0_cmdline,
        config_txt=tuple((build_dir / config).read_text().splitlines()) if config else None,
        modules=m.xen_modules.get(which, ()),
        xen_version=binaries.xen_version(m.path(build_dir, "xen")),
        # As the build read it: inflating the kernel again took 0.17 s of every build.
        linux_version=binaries.version_text(m.linux_version)
        or binaries.linux_version(m.path(build_dir, "kernel")),
        kernel_isize=m.kernel_isize,
        description=f"{name or build_dir} ({which})",
        checks=m.checks,
        guests_memory=guests,
        emulated=emulated,
        cpu_flags=None if emulated else host_cpu_flags(),
        guest_types=tuple((g.name, g.type) for g in m.runtime_guests),
    )


def host_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """This machine's CPU flags: a PC build is often booted on the machine it was built on."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return frozenset(m.group(1).split()) if m else None


# The memory model walks Xen's page tables and heap over all of RAM: 64T took 51 s and
# 256T did not finish; no board xenkit knows has more than a few GiB.
MAX_RAM = 1 << 40


def ram_banks(board: Board, ram: str, emulated: bool = False) -> tuple[boards.Bank, ...]:
    """RAM for `ram`: one of the board's models (its banks; the emulator's if `emulated`), or
    any size, as one bank from where the board's RAM starts, as an emulator describes it."""
    model = ram or board.default_ram
    if model in board.ram:
        return board.emulated_ram(model) if emulated else board.ram[model]
    size = parse_size(model, "--ram")
    if not 64 << 20 <= size <= MAX_RAM:
        raise XenkitError(
            f"--ram {ram}: give a board model ({', '.join(board.ram)}) or a size from 64M to 1T"
        )
    return ((board.ram[board.default_ram][0][0], size),)


@dataclass(frozen=True)
class Given:
    """What check reads from the Xen, kernel and config.txt it is given."""

    config_txt: tuple[str, ...] | None = None
    xen_version: binaries.Version | None = None
    linux_version: binaries.Version | None = None
    kernel_isize: int | None = None


def read_given(
    board: Board,
    xen_image: Path | None = None,
    kernel_image: Path | None = None,
    config_txt: Path | None = None,
    dtb: Path | None = None,
) -> Given:
    """The files' facts, or one line naming the file that is not what it must be. `xenkit
    check` calls it on the user's own files before fetching any package, so a bad one is
    its first line, not its last."""
    for path, flag in ((xen_image, "--xen"), (kernel_image, "--kernel"), (dtb, "--dtb")):
        if path:
            files.binary(path, flag, "give the file")
    config = None
    if config_txt:
        text = files.read_text(config_txt, "config.txt", "give the Pi firmware's config.txt")
        config = tuple(text.splitlines())
    xen_version = binaries.xen_version(xen_image, board.arch, "--xen") if xen_image else None
    if kernel_image:
        identify.require(kernel_image, identify.KERNELS[board.arch], "--kernel")
    linux_version = binaries.linux_version(kernel_image, "--kernel") if kernel_image else None
    isize = kernel.gzip_isize(kernel_image) if kernel_image else None
    return Given(config, xen_version, linux_version, isize)


def from_parts(
    board: Board,
    dtb: Path,
    ram: tuple[boards.Bank, ...],
    xen_cmdline: str,
    dom0_cmdline: str,
    xen_image: Path | None = None,
    kernel_image: Path | None = None,
    config_txt: Path | None = None,
    label: str = "",
) -> Target:
    given = read_given(board, xen_image, kernel_image, config_txt)
    return Target(
        board=board,
        tree=dt.DeviceTree.load(dtb),
        ram=ram,
        xen_cmdline=xen_cmdline,
        dom0_cmdline=dom0_cmdline,
        config_txt=given.config_txt,
        xen_version=given.xen_version,
        linux_version=given.linux_version,
        kernel_isize=given.kernel_isize,
        description=f"{board.name} {label or format_size(sum(n for _, n in ram))} with {dtb.name}",
    )
