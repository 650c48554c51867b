"""Boot targets: how a board's firmware gets Xen, Dom0 and the guests into memory.

A board file names its target (`target = "rpi"`); the target is the module of that name in
this package, found when asked for, as binman finds its entry types. A target writes the boot
files, scripts and media of a build, and starts them under QEMU. Adding one is a new module
and a board file: the pipeline does not change.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from xenkit.errors import XenkitError

if TYPE_CHECKING:
    from xenkit.config.boards import Board
    from xenkit.config.bootconfig import Domain
    from xenkit.config.spec import SystemSpec
    from xenkit.pipeline.manifest import BootFiles, LoadEntry
    from xenkit.run.qemu import RunPlan
    from xenkit.system.artifacts import Artifacts
    from xenkit.xen.memory import Module


@dataclass(frozen=True)
class Job:
    """What the pipeline hands a target: the system, its artifacts, and a build directory
    whose boot/ already holds Xen, Dom0's kernel and initramfs and the guests' files."""

    spec: SystemSpec
    art: Artifacts
    out: Path  # the build directory being written (renamed into place at the end)
    boot: Path  # out/boot
    root: Path  # Dom0's root filesystem tree, for the target's media
    root_size: int
    domains: tuple[Domain, ...]  # dom0less domains, their files named as in boot/
    # Names in boot/ of Xen, Dom0's kernel and Dom0's initramfs.
    xen: str
    kernel: str
    ramdisk: str


@dataclass(frozen=True)
class Staged:
    """What a target wrote, for the manifest and the checks."""

    boot_files: BootFiles
    media: tuple[str, ...]  # what to write to a card, stick or disc, in the build
    layout: tuple[LoadEntry, ...]  # the hardware boot's loads
    xen_modules: dict[str, tuple[Module, ...]]  # "hardware" and "emulator"


class Target(ABC):
    name: ClassVar[str]
    # What the board runs from power-on until Xen: the first phase of a boot's timings.
    firmware: ClassVar[str]
    # The pre-boot checks (xenkit.analysis.check.CHECKS, by name) that apply to its boards.
    checks: ClassVar[tuple[str, ...]]

    @abstractmethod
    def validate(self, board: Board) -> None:
        """Refuse, with one line, a board file that lacks what this target needs."""

    def refuse(self, spec: SystemSpec) -> None:  # noqa: B027 - most targets build any system
        """Refuse, with one line, a system this target cannot build (before anything is
        fetched or assembled for it)."""

    @abstractmethod
    def stage(self, job: Job) -> Staged:
        """Write the boot files, scripts and media into job.out."""

    @abstractmethod
    def run_plan(
        self, board: Board, ram: str, build_dir: Path, workdir: Path, netdev: str = ""
    ) -> RunPlan:
        """QEMU booting the build as the board would, from a copy of its media."""

    def netboot_plan(
        self,
        board: Board,
        ram: str,
        tftp_root: Path,
        firmware: Path,
        workdir: Path,
        bootfile: str,
    ) -> RunPlan:
        """QEMU with no disk, netbooting from QEMU's own DHCP/TFTP serving `tftp_root`."""
        raise XenkitError(f"{board.name} boots through {self.name}, which cannot netboot yet")


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> Target:
    if name not in available():
        raise XenkitError(
            f"unknown boot target {name!r} in the board file: choose one of "
            f"{', '.join(available())}"
        )
    target: Target = importlib.import_module(f"{__name__}.{name}").TARGET
    return target


def for_board(board: Board) -> Target:
    target = get(board.target)
    target.validate(board)
    return target
