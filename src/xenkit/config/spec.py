"""Board + user settings -> the resolved, validated description of the system to build."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xenkit import xen
from xenkit.config import arch, boards, builtin, settings
from xenkit.config.boards import Bank, Board
from xenkit.config.bootconfig import Domain
from xenkit.config.boottoml import domain_from_table
from xenkit.config.settings import Dom0Root, NetFetch
from xenkit.core import files, log
from xenkit.core.sizes import MiB, format_size, parse_size
from xenkit.errors import XenkitError
from xenkit.formats import binaries, identify
from xenkit.xen import xl


@dataclass(frozen=True)
class SystemSpec:
    board: Board
    ram: str
    ram_banks: tuple[Bank, ...]
    dom0_mem: int
    dom0_vcpus: int
    xen_cmdline: str
    dom0_cmdline: str
    emu_dom0_cmdline: str
    emu_xen_cmdline: str
    xen_image: Path | None
    kernel_image: Path | None
    root_size: int
    refresh: bool
    persist: int = 0  # a live image's persistence partition (0: none)
    domains: tuple[Domain, ...] = ()
    netboot: bool = False
    netboot_server: str = ""
    netboot_address: str = ""  # ADDR/PREFIX, or "" to ask DHCP
    tftp_blocksize: int = 0
    tftp_windowsize: int = 0
    netboot_http_port: int = 8080  # 0: the boot loader fetches everything over TFTP
    toolstack: bool = False
    dom0_root: Dom0Root = "sd"
    dom0_autorun: Path | None = None
    guests: tuple[xl.Guest, ...] = ()
    net_root: bool = False
    net_store: Path | None = None
    mirrors: tuple[str, ...] = ()
    net_fetch: NetFetch = "lazy"

    @property
    def ram_total(self) -> int:
        return sum(size for _, size in self.ram_banks)


def resolve(values: dict[str, Any]) -> SystemSpec:
    board = boards.load(values["board"])
    board = board.for_release(values.get("debian") or board.release)
    if values["toolstack"] is None:
        values = {**values, "toolstack": board.toolstack}
    settings.unmet(values)
    ram = values["ram"] or board.default_ram
    if ram not in board.ram:
        raise XenkitError(
            f"{board.name} has no {ram} model: choose --ram from {', '.join(board.ram)}"
        )
    banks = board.ram[ram]
    dom0_mem = values["dom0_mem"] or parse_size(board.dom0_mem, f"board {board.name} dom0_mem")
    total = sum(size for _, size in banks)
    xl.too_small(dom0_mem, "dom0_mem")
    if dom0_mem >= total:
        raise XenkitError(
            f"dom0_mem={format_size(dom0_mem)} does not fit in the {ram} {board.name}: "
            f"give less than {format_size(total)}"
        )
    vcpus = values["dom0_vcpus"]
    if vcpus > board.cpus:
        raise XenkitError(
            f"dom0_vcpus={vcpus}: {board.name} has {board.cpus} CPUs; give 0 (all) to {board.cpus}"
        )
    xen_cmdline = values["xen_cmdline"] or xen.xen_cmdline(
        board.xen_console,
        board.xen_cmdline,
        dom0_mem,
        vcpus,
        values["xen_extra"],
        arch.get(board.arch).xen_console,
    )
    if values["xen_cmdline"] and values["xen_extra"]:
        xen_cmdline += " " + values["xen_extra"]
    dom0 = xen.cmdline(values["dom0_cmdline"] or board.dom0_cmdline, values["dom0_extra"])
    domains = _domains(values["domain"], board, banks, dom0_mem)
    if values["toolstack"]:
        domains = _join_xenstore(domains, values["domain"])
    guests = _guests(values, board, banks, dom0_mem, domains)
    dom0less = sum(d.memory for d in domains)
    if shortfall := emulator_shortfall(
        sum(n for _, n in board.emulated_ram(ram)),
        dom0_mem,
        dom0less,
        # What xl create allocates: memory (maxmem is only the balloon's ceiling).
        {g.name: g.memory for g in guests},
    ):
        log.warning("warning: %s", shortfall)
    # The user's own binaries are checked here, under the names the user gave: once copied
    # into the build, a message would name xenkit's temporary copy.
    if values["xen_image"]:
        binaries.xen_version(values["xen_image"], board.arch, "xen_image (--xen-image)")
    if values["kernel_image"]:
        accepted = identify.KERNELS[board.arch]
        identify.require(values["kernel_image"], accepted, "kernel_image (--kernel-image)")
        binaries.linux_version(values["kernel_image"], "kernel_image (--kernel-image)")
    return SystemSpec(
        board=board,
        ram=ram,
        ram_banks=banks,
        dom0_mem=dom0_mem,
        dom0_vcpus=vcpus,
        xen_cmdline=xen_cmdline,
        dom0_cmdline=dom0,
        emu_dom0_cmdline=xen.cmdline(dom0, board.emulate.dom0_cmdline),
        # The board's emulator words first: a user's own option, later, wins.
        emu_xen_cmdline=xen.cmdline(board.emulate.xen_cmdline, xen_cmdline),
        xen_image=values["xen_image"],
        kernel_image=values["kernel_image"],
        root_size=values["root_size"],
        persist=values["persist"],
        refresh=bool(values["refresh"]),
        domains=domains,
        netboot=bool(values["netboot"]),
        netboot_server=values["netboot_server"],
        netboot_address=_needs_server(values["netboot_address"], values["netboot_server"]),
        tftp_blocksize=values["tftp_blocksize"],
        tftp_windowsize=values["tftp_windowsize"],
        netboot_http_port=values["netboot_http_port"],
        toolstack=bool(values["toolstack"]),
        dom0_root=values["dom0_root"],
        dom0_autorun=values["dom0_autorun"],
        guests=guests,
        net_root=bool(values["net_root"]),
        net_store=values["net_store"],
        mirrors=values["mirrors"],
        net_fetch=values["net_fetch"],
    )


def _needs_server(address: str, server: str) -> str:
    if address and not server:
        raise XenkitError(
            "netboot_address needs netboot_server: without DHCP nothing else names the server"
        )
    return address


def _domains(tables: list[Any], board: Board, banks: tuple[Bank, ...],
             dom0_mem: int) -> tuple[Domain, ...]:  # fmt: skip
    """dom0less guests from [[domain]] tables, refused here if they cannot boot."""
    domains: list[Domain] = []
    for i, table in enumerate(tables):
        d = domain_from_table(table, i, require_kernel=False)
        xl.check_name(d.name, f"[[domain]] #{i + 1}")
        if builtin.is_builtin(d.kernel):
            d = _builtin(d, table)
        else:
            xl.too_small(d.memory, f"[[domain]] {d.name}")
        for what, accepted in (
            ("kernel", identify.KERNELS[board.arch]),
            ("ramdisk", identify.RAMDISKS),
            ("passthrough_dtb", identify.DTBS),
        ):
            path = getattr(d, what)
            if path and not builtin.is_builtin(path):
                _user_file(path, accepted, f"[[domain]] {d.name}", what)
        if not 1 <= d.vcpus <= board.cpus:
            raise XenkitError(
                f"[[domain]] {d.name}: vcpus = {d.vcpus}, but {board.name} has {board.cpus} CPUs"
            )
        if any(other.name == d.name for other in domains) or d.name == "Domain-0":
            raise XenkitError(f"[[domain]] {d.name}: the name is taken; give each guest its own")
        domains.append(d)
    free = guest_room(sum(n for _, n in banks), dom0_mem, 0)
    wanted = sum(d.memory for d in domains)
    if wanted > free:
        raise XenkitError(
            f"the guests want {format_size(wanted)} but only about "
            f"{format_size(free // MiB * MiB)} is left after dom0_mem: give them "
            "less memory or lower dom0_mem"
        )
    return tuple(domains)


# Xen puts the Image and a 2 MiB slot for the guest's DTB, each rounded up to 2 MiB, in the
# first bank (place_modules in xen/arch/arm/kernel.c).
BUILTIN_MIN_MEMORY = 4 * MiB
BUILTIN_MEMORY = 16 * MiB
PERIOD_MS = (1, 10_000)


def _builtin(d: Domain, table: dict[str, Any]) -> Domain:
    """A bare-metal guest from xenkit's source: small by default, one vCPU, its console on
    the vpl011, and its name (printed in its banner) passed in its bootargs."""
    builtin.guest_name(d.kernel)
    where = f"[[domain]] {d.name}"
    # Xen flushes a vpl011 line at 126 characters: the banner stays within one.
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", d.name):
        raise XenkitError(
            f"{where}: a {d.kernel} guest gets its name as a boot argument: "
            "use up to 32 letters, digits, '.', '_' and '-'"
        )
    memory = d.memory if "memory" in table else BUILTIN_MEMORY
    if memory < BUILTIN_MIN_MEMORY:
        raise XenkitError(
            f"{where}: memory = {format_size(memory)} is too small for Xen to place the "
            f"guest and its device tree: give at least {format_size(BUILTIN_MIN_MEMORY)}"
        )
    if d.ramdisk:
        raise XenkitError(f"{where}: {d.kernel} takes no ramdisk: drop ramdisk")
    if not d.vpl011:
        raise XenkitError(f"{where}: {d.kernel} prints through its vpl011: drop vpl011 = false")
    if d.vcpus != 1:
        raise XenkitError(f"{where}: {d.kernel} runs on one vCPU: drop vcpus or set it to 1")
    words = d.cmdline.split() if "cmdline" in table else []
    for word in words:
        key, _, value = word.partition("=")
        if key == "period_ms" and not (
            value.isdigit() and PERIOD_MS[0] <= int(value) <= PERIOD_MS[1]
        ):
            raise XenkitError(
                f"{where}: {word}: give the tick period in whole milliseconds, "
                f"{PERIOD_MS[0]} to {PERIOD_MS[1]}"
            )
    return replace(d, memory=memory, cmdline=" ".join([f"name={d.name}", *words]))


# Xen, its heap and the frame table need some room of their own.
XEN_OVERHEAD = 64 * MiB


def guest_room(total: int, dom0_mem: int, guests: int) -> int:
    """Memory left for more guests beside Dom0 and `guests` bytes of guests already."""
    return total - dom0_mem - XEN_OVERHEAD - guests


def emulator_shortfall(emulated: int, dom0_mem: int, dom0less: int, runtime: dict[str, int]) -> str:
    """Why a plan that fits the board does not fit its emulator's `emulated` bytes of RAM
    (the emulated Pi 4 has 960 MiB of the 4G board's), given the run-time guests' memory by
    name: "" if it fits. A warning, not an error, since the image is for the board."""
    free = guest_room(emulated, dom0_mem, dom0less)
    wanted = sum(runtime.values())
    if wanted <= free:
        return ""
    if free < 0:
        return (
            f"the emulator has {format_size(emulated)} of RAM: Dom0 ({format_size(dom0_mem)}) "
            f"and the dom0less guests ({format_size(dom0less)}) alone do not fit it, so xenkit "
            "run cannot boot this (lower dom0_mem or the dom0less guests' memory)"
        )
    each = ", ".join(f"{name} {format_size(n)}" for name, n in runtime.items())
    return (
        f"the emulator has {format_size(emulated)} of RAM: beside Dom0 ({format_size(dom0_mem)})"
        f" and the dom0less guests about {format_size(max(free, 0) // MiB * MiB)} is free, but "
        f"the run-time guests want {format_size(wanted)} ({each}), so xenkit run cannot start "
        "them all (give them less memory, or lower dom0_mem)"
    )


# Dom0's bridge and its address: guests get addresses on this network.
BRIDGE_ADDR = "10.99.0.1/24"


def _join_xenstore(domains: tuple[Domain, ...], tables: list[Any]) -> tuple[Domain, ...]:
    """With xenstored in Dom0 the dom0less guests join xenstore, so `xl list` shows them by
    name (ImageBuilder's default too when there is a Dom0), unless Xen's init-dom0less
    cannot set them up."""
    joined = []
    for d, table in zip(domains, tables, strict=True):
        fails = xen.init_dom0less_fails(d.vcpus)
        if fails and d.enhanced == "enabled":
            raise XenkitError(
                f"domain {d.name}: enhanced with {d.vcpus} vCPUs: Xen's init-dom0less (4.17, 4.20) "
                f"fails on it (and on every later domain); give vcpus = 1, or drop enhanced"
            )
        if "enhanced" in (table or {}) or d.enhanced:  # the config's own choice
            joined.append(d)
        elif fails:
            log.warning(
                "domain %s has %d vCPUs, so it stays out of xenstore (Xen's "
                "init-dom0less fails on such domains): xl lists it without a name",
                d.name,
                d.vcpus,
            )
            joined.append(d)
        else:
            joined.append(replace(d, enhanced="enabled"))
    return tuple(joined)


def guest_from_table(table: dict[str, Any], index: int, board: Board) -> xl.Guest:
    """A run-time guest on `board`: on xenkit's host-only bridge, at a fixed address; on
    a board whose Dom0 bridges the machine's own network (hardware_modules), by DHCP."""
    net, dom0 = ("", "") if board.hardware_modules else (BRIDGE_ADDR, BRIDGE_ADDR.split("/")[0])
    types = arch.get(board.arch).guest_types
    g = xl.guest_from_table(table, index, board.cpus, net, dom0, types)
    if g.disk and not arch.get(board.arch).qdisk:
        raise XenkitError(
            f"[[guest]] {g.name}: disk = ...: its backend is QEMU's (qdisk), which Dom0 "
            f"carries only on the PC so far; drop disk on {board.name}"
        )
    least = arch.get(board.arch).default_kernel_memory
    if g.kernel == xl.DEFAULT_KERNEL and g.memory < least:
        raise XenkitError(
            f"[[guest]] {g.name}: memory = {format_size(g.memory)} is too small for Dom0's "
            f"kernel, which it runs: give at least {format_size(least)}"
        )
    for what, default, accepted in (
        ("kernel", xl.DEFAULT_KERNEL, identify.KERNELS[board.arch]),
        ("ramdisk", xl.DEFAULT_RAMDISK, identify.RAMDISKS),
    ):
        path = getattr(g, what)
        if path != default:
            _user_file(path, accepted, f"[[guest]] {g.name}", what)
    if g.kernel != xl.DEFAULT_KERNEL:
        # Past the header: Xen's own binary is an arm64 Image too. A run-time guest is
        # Linux (its command line carries xenkit.ip and xenkit.ping for its init).
        binaries.linux_version(Path(g.kernel), f"[[guest]] {g.name}: kernel")
    return g


def _user_file(path: str, accepted: tuple[str, ...], owner: str, what: str) -> None:
    """A file a [[domain]] or [[guest]] table names: there, and what its place needs."""
    files.binary(Path(path), f"{owner}: {what}", "give the file's path")
    identify.require(Path(path), accepted, f"{owner}: {what}")


def _guests(
    values: dict[str, Any],
    board: Board,
    banks: tuple[Bank, ...],
    dom0_mem: int,
    domains: tuple[Domain, ...],
) -> tuple[xl.Guest, ...]:
    """Run-time guests from [[guest]] tables: they need the toolstack, and must fit beside
    Dom0 and the dom0less guests."""
    tables = values["guest"]
    if tables and not values["toolstack"]:
        raise XenkitError("[[guest]] tables need Dom0's toolstack: set toolstack = true")
    guests: list[xl.Guest] = []
    taken = {"Domain-0", *(d.name for d in domains)}
    for i, table in enumerate(tables):
        g = guest_from_table(table, i, board)
        if g.name in taken:
            raise XenkitError(f"[[guest]] {g.name}: the name is taken; give each guest its own")
        taken.add(g.name)
        guests.append(g)
    free = guest_room(sum(n for _, n in banks), dom0_mem, sum(d.memory for d in domains))
    wanted = sum(max(g.memory, g.maxmem) for g in guests)
    if wanted > free:
        raise XenkitError(
            f"[[guest]]: the guests want {format_size(wanted)} but only about "
            f"{format_size(max(free, 0) // MiB * MiB)} is free beside Dom0 and the dom0less "
            "guests: give it less memory or lower dom0_mem"
        )
    return tuple(guests)
