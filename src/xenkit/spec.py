"""Board + user settings -> the resolved, validated description of the system to build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkit import boards, xen
from xenkit.boards import Bank, Board
from xenkit.errors import XenkitError
from xenkit.sizes import MiB, format_size, parse_size


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
    xen_image: Path | None
    kernel_image: Path | None
    root_size: int
    refresh: bool

    @property
    def ram_total(self) -> int:
        return sum(size for _, size in self.ram_banks)


def _local_file(value: str, setting: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise XenkitError(f"{setting}: {value} is not a readable file; give the path of one")
    return path.resolve()


def resolve(values: dict[str, Any]) -> SystemSpec:
    board = boards.load(values["board"])
    ram = values["ram"] or board.default_ram
    if ram not in board.ram:
        raise XenkitError(
            f"{board.name} has no {ram} model: choose --ram from {', '.join(board.ram)}"
        )
    banks = board.ram[ram]
    dom0_mem = parse_size(values["dom0_mem"] or board.dom0_mem, "dom0_mem")
    total = sum(size for _, size in banks)
    if dom0_mem < 32 * MiB:
        raise XenkitError(f"dom0_mem={format_size(dom0_mem)} is too small: give at least 32M")
    if dom0_mem >= total:
        raise XenkitError(
            f"dom0_mem={format_size(dom0_mem)} does not fit in the {ram} {board.name}: "
            f"give less than {format_size(total)}"
        )
    vcpus = int(values["dom0_vcpus"])
    if not 0 <= vcpus <= board.cpus:
        raise XenkitError(
            f"dom0_vcpus={vcpus}: {board.name} has {board.cpus} CPUs; give 0 (all) to {board.cpus}"
        )
    xen_cmdline = values["xen_cmdline"] or xen.xen_cmdline(
        board.xen_console, board.xen_cmdline, dom0_mem, vcpus, values["xen_extra"]
    )
    if values["xen_cmdline"] and values["xen_extra"]:
        xen_cmdline += " " + values["xen_extra"]
    dom0 = xen.dom0_cmdline(values["dom0_cmdline"] or board.dom0_cmdline, values["dom0_extra"])
    return SystemSpec(
        board=board,
        ram=ram,
        ram_banks=banks,
        dom0_mem=dom0_mem,
        dom0_vcpus=vcpus,
        xen_cmdline=xen_cmdline,
        dom0_cmdline=dom0,
        emu_dom0_cmdline=xen.dom0_cmdline(dom0, board.emulate.dom0_cmdline),
        xen_image=_local_file(values["xen_image"], "xen_image"),
        kernel_image=_local_file(values["kernel_image"], "kernel_image"),
        root_size=parse_size(values["root_size"], "root_size"),
        refresh=bool(values["refresh"]),
    )
