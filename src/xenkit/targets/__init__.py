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
from xenkit.system import netroot, rootfs
from xenkit.system.initramfs import Partition, RootSource

if TYPE_CHECKING:
    from xenkit.config.boards import Board
    from xenkit.config.bootconfig import Domain
    from xenkit.config.spec import SystemSpec
    from xenkit.pipeline.manifest import BootFiles, LoadEntry
    from xenkit.run.qemu import Choices, RunPlan
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
    # Dom0's root filesystem for the target's media: the whole tree, or with a layered
    # root (Target.root is Live) only this build's layer over `tree`, the cached part.
    root: Path
    root_size: int
    domains: tuple[Domain, ...]  # dom0less domains, their files named as in boot/
    # Names in boot/ of Xen, Dom0's kernel and Dom0's initramfs.
    xen: str
    kernel: str
    ramdisk: str
    tree: rootfs.Tree | None = None


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
    # Where Dom0's first stage finds the toolstack root.
    root: ClassVar[RootSource] = Partition(rootfs.LABEL)
    # What `xenkit run` lets the user choose (run.qemu.Choices fields -> the values), and
    # how many boot menu entries there are to pick from.
    offers: ClassVar[dict[str, tuple[str, ...]]] = {}
    menu_entries: ClassVar[int] = 0

    def check_choices(self, board: Board, choices: Choices) -> None:
        """Refuse, with one line, a run choice this target does not offer."""
        for what in ("firmware", "media", "nic"):
            value = getattr(choices, what)
            offered = self.offers.get(what, ())
            if value and value not in offered:
                if not offered:
                    raise XenkitError(
                        f"--{what} {value}: {board.name} boots through {self.name}, "
                        f"which offers no choice of {what}"
                    )
                raise XenkitError(f"--{what} {value}: choose one of {', '.join(offered)}")
        entry = choices.entry
        if entry is not None and not 0 <= entry < self.menu_entries:
            if not self.menu_entries:
                raise XenkitError(f"--entry: {board.name} boots through {self.name}, no menu")
            raise XenkitError(f"--entry {entry}: give 0 to {self.menu_entries - 1}")

    @abstractmethod
    def validate(self, board: Board) -> None:
        """Refuse, with one line, a board file that lacks what this target needs."""

    def refuse(self, spec: SystemSpec) -> None:
        """Refuse, with one line, a system this target cannot build (before anything is
        fetched or assembled for it)."""
        if spec.net_root and not isinstance(self.root_source(spec), netroot.Net):
            raise XenkitError(
                f"net_root: {spec.board.name} boots through {self.name}, which has no network "
                "root yet: build for the pc or qemu-virt board"
            )
        if spec.net_root and (not spec.toolstack or spec.dom0_root == "initramfs"):
            raise XenkitError(
                "net_root is Dom0's toolstack root over the network: add --toolstack (and drop "
                "dom0_root = initramfs)"
            )

    def root_source(self, spec: SystemSpec) -> RootSource:
        """Where this system's Dom0 finds its root (the target's medium, unless the system
        asks for another)."""
        return self.root

    @abstractmethod
    def stage(self, job: Job) -> Staged:
        """Write the boot files, scripts and media into job.out."""

    @abstractmethod
    def run_plan(
        self,
        board: Board,
        ram: str,
        build_dir: Path,
        workdir: Path,
        netdev: str = "",
        choices: Choices | None = None,
    ) -> RunPlan:
        """QEMU booting the build as the board would, from a copy of its media, as
        `choices` (checked by check_choices) ask."""

    def describe(self, build_dir: Path) -> list[str]:
        """Lines for `xenkit info` about what the target wrote (a boot menu, the image's
        contents), beyond what the manifest says."""
        return []

    def add_to_root(self, build_dir: Path, added: dict[str, bytes]) -> tuple[str, ...]:
        """Put `added` (path under / -> content) into Dom0's root in a built image, the
        image replaced only once whole; the media files it rewrote, for the manifest."""
        raise XenkitError(f"{self.name} cannot add files to a built Dom0 root yet: rebuild")

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
