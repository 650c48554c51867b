"""Boards are data: one TOML file each under xenkit/config/boards/, read into frozen dataclasses."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xenkit.config import releases
from xenkit.config.boards import shape
from xenkit.core import files
from xenkit.core.spans import Reserved as Reserved  # a board file's [layout] reserved
from xenkit.errors import XenkitError

Bank = tuple[int, int]  # (start, size)


@dataclass(frozen=True)
class PackageRef:
    role: str
    name: str
    files: dict[str, str]  # artifact role -> glob inside the package
    follow: str | None = None


@dataclass(frozen=True)
class Emulation:
    machine: str
    memory: str  # QEMU -m; empty: the RAM model chosen for the build
    ram: tuple[Bank, ...]  # RAM the emulated board reports; empty: the RAM model's banks
    disk: str  # "sd" or "virtio" (the card's bus, U-Boot targets); "cd" for a live image
    console_serial: int
    dom0_cmdline: str
    disable: tuple[str, ...]  # compatibles of blocks QEMU does not model
    cpu: str | None = None
    smp: int | None = None
    accel: str | None = None  # QEMU -accel, e.g. "tcg,thread=single"
    # The Debian release whose QEMU runs the board, unpacked into the cache; "": the
    # installed QEMU.
    qemu_release: str = ""
    # (compatible, property) pairs deleted on the emulator's copy of the DTB: hardware
    # hooks whose firmware side QEMU does not implement.
    drop_properties: tuple[tuple[str, str], ...] = ()
    # U-Boot default variables set in the emulator's copy of u-boot.bin, beside bootdelay=0
    # (bootscripts/ubootenv.py): waits and scans for hardware QEMU does not attach.
    uboot_env: tuple[tuple[str, str], ...] = ()
    # Words added to Xen's command line in the emulator's copy of a card's boot script.
    xen_cmdline: str = ""


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    arch: str
    release: str
    # The boot method (xenkit.targets.NAME), and its own options: the [boot] table.
    target: str
    boot: dict[str, Any]
    xen_console: str
    xen_cmdline: str
    dom0_cmdline: str
    dom0_mem: str
    dma_bitsize: int
    platform_compatible: str
    min_xen: tuple[int, int]
    min_dom0_linux: tuple[int, int]
    xen_hides: tuple[str, ...]
    default_ram: str
    cpus: int
    ram: dict[str, tuple[Bank, ...]]
    packages: tuple[PackageRef, ...]
    emulate: Emulation
    # The hardware's DTB as boot files name it: empty for a board without a device tree.
    dtb_name: str = ""
    # Where a boot loader may put boot modules ([layout]): below load_limit, clear of
    # top_reserve below the first bank's end and of the reserved ranges.
    load_limit: int = 0
    top_reserve: int = 0
    reserved: tuple[Reserved, ...] = ()
    # The board file's text, kept in each build (see pipeline.manifest.BOARD_FILE).
    source: str = field(default="", compare=False, repr=False)
    # Modules Dom0's first stage loads to reach its root partition (the card's controller).
    root_modules: tuple[str, ...] = ()
    # Whether Dom0 gets the toolstack unless the user says (the PC's live workbench does).
    toolstack: bool = False
    # Module directories Dom0's root carries so that it loads drivers for the hardware it
    # finds (by modalias), bridges the first wired NIC with a link into xenbr0 and asks
    # DHCP for an address: a machine xenkit cannot know in advance. Empty: Dom0's hardware
    # is the board's, known here, and xenbr0 is a host-only network.
    hardware_modules: tuple[str, ...] = ()
    # Modules a first stage whose root comes over the network loads besides root_modules:
    # NICs, the bridge Dom0's root and guests share, NBD for the lazily fetched layers.
    net_modules: tuple[str, ...] = ()

    def emulated_ram(self, model: str) -> tuple[Bank, ...]:
        return self.emulate.ram or self.ram[model]

    def emulated_memory(self, model: str) -> str:
        return self.emulate.memory or model

    def for_release(self, name: str) -> Board:
        """This board built from Debian `name`: its packages' {xen} filled in. Called once,
        on the board as its file says (boards.load keeps the braces)."""
        release = releases.get(name, "debian")
        where = f"board {self.name} package"
        return replace(
            self,
            release=release.name,
            packages=tuple(
                replace(
                    p,
                    name=release.expand(p.name, where),
                    files={r: release.expand(f, where) for r, f in p.files.items()},
                )
                for p in self.packages
            ),
        )

    @property
    def dtb_from_qemu(self) -> bool:
        """A device-tree board whose packages hold no DTB: the emulated machine makes it."""
        return bool(self.dtb_name) and not any("dtb" in p.files for p in self.packages)


# The built-in board files, beside this module as xenkit's other data files are (read where
# they lie, as memo.source() reads them): importlib.resources was 14 ms of every build's
# start.
BUILTIN = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in BUILTIN.glob("*.toml"))


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _banks(raw: list[list[int]], empty: bool = False) -> tuple[Bank, ...]:
    banks = tuple((int(a), int(b)) for a, b in raw)
    if (banks or not empty) and (problem := bank_problem(banks)) is not None:
        raise ValueError(f"ram {raw!r}: {problem}")
    return banks


def bank_problem(banks: tuple[Bank, ...]) -> str | None:
    """What is wrong with a list of RAM banks, or None: the memory model walks them and
    found none to allocate from ("boot allocator exhausted", exit 3) when one was empty."""
    if not banks:
        return "no RAM bank"
    end = 0
    for start, size in banks:
        if start < 0 or size <= 0 or start + size > 1 << 64:
            return f"bank ({start:#x}, {size:#x}) is not a start and size within 64 bits"
        if start < end:
            # The memory model walks banks in order, as Xen's own list from the DTB is.
            return f"bank ({start:#x}, {size:#x}) overlaps or comes before the one above it"
        end = start + size
    return None


def parse(data: dict[str, Any], source: str) -> Board:
    try:
        emu = data["emulate"]
        layout = data.get("layout", {})
        dom0 = data.get("dom0", {})
        return Board(
            name=data["name"],
            description=data["description"],
            arch=data["arch"],
            release=data["release"],
            target=str(data["target"]),
            boot=dict(data.get("boot", {})),
            xen_console=data["xen_console"],
            xen_cmdline=data["xen_cmdline"],
            dom0_cmdline=data["dom0_cmdline"],
            dom0_mem=data["dom0_mem"],
            dma_bitsize=int(data["dma_bitsize"]),
            platform_compatible=data["platform_compatible"],
            min_xen=_version(data["check"]["min_xen"]),
            min_dom0_linux=_version(data["check"]["min_dom0_linux"]),
            xen_hides=tuple(data["check"]["xen_hides"]),
            dtb_name=data.get("dtb_name", ""),
            default_ram=data["default_ram"],
            cpus=int(data["cpus"]),
            ram={k: _banks(v) for k, v in data["ram"].items()},
            packages=tuple(
                PackageRef(role, p["name"], dict(p["files"]), p.get("follow"))
                for role, p in data["packages"].items()
            ),
            load_limit=int(layout.get("limit", 0)),
            top_reserve=int(layout.get("top_reserve", 0)),
            reserved=tuple(
                Reserved(int(a), int(b), str(w)) for a, b, w in layout.get("reserved", ())
            ),
            emulate=Emulation(
                machine=emu["machine"],
                memory=emu["memory"],
                ram=_banks(emu["ram"], empty=True),
                disk=emu["disk"],
                console_serial=int(emu["console_serial"]),
                dom0_cmdline=emu["dom0_cmdline"],
                disable=tuple(emu["disable"]),
                cpu=emu.get("cpu"),
                smp=emu.get("smp"),
                accel=emu.get("accel"),
                qemu_release=str(emu.get("qemu_release", "")),
                drop_properties=tuple((str(c), str(p)) for c, p in emu.get("drop_properties", ())),
                uboot_env=tuple((str(k), str(v)) for k, v in emu.get("uboot_env", {}).items()),
                xen_cmdline=str(emu.get("xen_cmdline", "")),
            ),
            root_modules=tuple(dom0.get("root_modules", ())),
            toolstack=bool(dom0.get("toolstack", False)),  # a bool: shape.check
            hardware_modules=tuple(str(d) for d in dom0.get("hardware_modules", ())),
            net_modules=tuple(str(d) for d in dom0.get("net_modules", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise XenkitError(
            f"board file {source} is malformed near {exc}: compare with rpi4.toml"
        ) from None


def load(name: str) -> Board:
    """A built-in board by name, or a board file by path."""
    path = Path(name)
    # A path is a file whatever state it is in (a loop, a FIFO): read_text says which.
    if name.endswith(".toml") and (path.exists() or path.is_symlink() or "/" in name):
        text = files.read_text(path, "board file", "give a TOML board file like rpi4.toml")
        source = str(path)
    else:
        res = BUILTIN / f"{name}.toml"
        if "/" in name or not res.is_file():
            raise XenkitError(f"unknown board {name!r}: choose one of {', '.join(available())}")
        text, source = res.read_text(), f"{name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise XenkitError(f"board file {source}: {exc}") from None
    _check_types(data, source)
    return replace(parse(data, source), source=text)


def _known_release(source: str, key: str, value: Any, other: str = "") -> None:
    """Refuse a board file's release name that xenkit does not know (a non-string is
    shape.check's to refuse)."""
    if isinstance(value, str) and value not in releases.NAMES:
        raise XenkitError(
            f"board file {source}: {key} = {value!r}: choose one of "
            f"{', '.join(releases.NAMES)}{other}"
        )


def _check_types(data: dict[str, Any], source: str) -> None:
    shape.check(data, source)
    ram = data.get("ram")
    if isinstance(ram, dict) and data.get("default_ram") not in ram:
        raise XenkitError(
            f"board file {source}: default_ram = {data.get('default_ram')!r} is not one of "
            f"its [ram] models ({', '.join(ram)})"
        )
    _known_release(source, "release", data.get("release"))
    emulator = data.get("emulate", {})
    if isinstance(emulator, dict) and emulator.get("qemu_release"):
        _known_release(
            source,
            "[emulate] qemu_release",
            emulator["qemu_release"],
            ", or leave it out for the installed QEMU",
        )
    bits = data.get("dma_bitsize", 0)
    # Xen's DMA zone is the RAM below 2^bits; 0 means the platform has none (Pi 4: 30).
    if not isinstance(bits, int) or isinstance(bits, bool) or not (bits == 0 or 20 <= bits <= 64):
        raise XenkitError(f"board file {source}: dma_bitsize = {bits!r} must be 0 or 20 to 64")
    cpus = data.get("cpus", 1)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise XenkitError(f"board file {source}: cpus = {cpus!r} must be a whole number above 0")
    shape.required(data, source)
