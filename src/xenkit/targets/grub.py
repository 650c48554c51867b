"""The PC's boot: the firmware (SeaBIOS, or UEFI) starts GRUB from one hybrid live image, and
GRUB's menu loads Xen with multiboot2 and Dom0's kernel and initramfs as its modules.

grub-mkrescue writes the image from a directory, without root or loop mounts: an ISO 9660
filesystem with El Torito entries for BIOS and UEFI and an MBR, so the same file boots from a
CD, and written to a USB stick or used as a disk (../shared/field-notes.md: verified with
SeaBIOS from CD, OVMF from CD and SeaBIOS as a USB stick). Under QEMU it boots from a CD
drive, on the pc machine with -cpu max (TCG gives Xen SVM and hardware-assisted paging).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from xenkit.config import arch
from xenkit.config.boards import Board
from xenkit.config.spec import SystemSpec
from xenkit.core import files
from xenkit.core.proc import need, run
from xenkit.core.sizes import format_size
from xenkit.errors import XenkitError
from xenkit.pipeline.manifest import BootFiles
from xenkit.run import qemu
from xenkit.run.qemu import RunPlan
from xenkit.targets import Job, Staged, Target

ISO = "live.iso"
VOLUME = "XENKIT"
TIMEOUT = 3
# Xen's conservative options, as XCP-ng's installer offers them for machines where a normal
# boot fails: one CPU, no reboot on a crash (the message stays on screen), no boot-time
# memory scrub, no machine-check handling, no deep C-states, no NUMA.
SAFE = ("nosmp", "noreboot", "bootscrub=false", "mce=false", "max_cstate=0", "numa=off")
# Words that only mean something under Xen, dropped from Dom0's line for plain Linux.
XEN_ONLY = ("console=hvc0", "earlyprintk=xen")


def _capped(xen_cmdline: str, dom0_mem: int) -> str:
    """Xen's line with Dom0's memory fixed: it cannot balloon above its start size."""
    size = format_size(dom0_mem)
    words = [w for w in xen_cmdline.split() if not w.startswith("dom0_mem=")]
    return " ".join([*words, f"dom0_mem={size},max:{size}"])


def menu(spec: SystemSpec, timeout: int, dom0_cmdline: str) -> str:
    """grub.cfg: on the serial line and the screen alike, Xen by default."""
    a = arch.get(spec.board.arch)
    xen, kernel, initrd = (f"/boot/{n}" for n in (a.xen_file, a.kernel_file, arch.RAMDISK_FILE))
    linux = [w for w in dom0_cmdline.split() if w not in XEN_ONLY]
    speed = spec.board.xen_console.split(",")[0] or "115200"

    def xen_entry(title: str, xen_cmdline: str) -> list[str]:
        return [
            f'menuentry "{title}" {{',
            f"    multiboot2 {xen} {xen_cmdline}",
            f"    module2 {kernel} {dom0_cmdline}",
            f"    module2 {initrd}",
            "}",
        ]

    lines = [
        "# Written by xenkit.",
        f"serial --unit=0 --speed={speed}",
        "terminal_input serial console",
        "terminal_output serial console",
        f"set timeout={timeout}",
        "set default=0",
        "",
        *xen_entry("Xen", spec.xen_cmdline),
        *xen_entry(
            f"Xen, Dom0 memory capped at {format_size(spec.dom0_mem)}",
            _capped(spec.xen_cmdline, spec.dom0_mem),
        ),
        'menuentry "Linux without Xen" {',
        f"    linux {kernel} {' '.join([f'console=ttyS0,{speed}', *linux])}",
        f"    initrd {initrd}",
        "}",
        *xen_entry("Xen safe mode", " ".join([spec.xen_cmdline, *SAFE])),
        "",
    ]
    return "\n".join(lines)


class Grub(Target):
    name = "grub"
    firmware = "firmware + GRUB"
    # The PC's own checks (virtualisation features, HAP, console) are still to come.
    checks = ()

    def validate(self, board: Board) -> None:
        where = f"board {board.name} (target grub)"
        for role in ("xen", "kernel", "busybox"):
            if not any(r.role == role for r in board.packages):
                raise XenkitError(f"{where}: give [packages.{role}]")
        if board.arch != "amd64":
            raise XenkitError(f"{where}: GRUB live images are for amd64 boards, not {board.arch}")
        unknown = set(board.boot) - {"timeout"}
        if unknown:
            raise XenkitError(f"{where}: unknown [boot] keys {', '.join(sorted(unknown))}")
        timeout = board.boot.get("timeout", TIMEOUT)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise XenkitError(f"{where}: [boot] timeout is whole seconds, 0 or more")

    def refuse(self, spec: SystemSpec) -> None:
        if spec.domains:
            raise XenkitError(
                "[[domain]] tables are dom0less guests, which Xen starts only on Arm: "
                "on the PC, start guests with xl (toolstack)"
            )
        if spec.toolstack:
            raise XenkitError(
                "toolstack on the pc board is not built yet (its live root comes next): "
                "build without --toolstack"
            )
        if spec.netboot:
            raise XenkitError("netboot on the pc board is not built yet: boot the live image")

    def stage(self, job: Job) -> Staged:
        spec = job.spec
        self.refuse(spec)
        tree = job.out / "iso"
        (tree / "boot" / "grub").mkdir(parents=True)
        for name in (job.xen, job.kernel, job.ramdisk):
            shutil.copyfile(job.boot / name, tree / "boot" / name)
        timeout = int(spec.board.boot.get("timeout", TIMEOUT))
        (tree / "boot" / "grub" / "grub.cfg").write_text(menu(spec, timeout, spec.dom0_cmdline))
        with files.replacing(job.out / ISO) as partial:
            run(
                [
                    need("grub-mkrescue"),
                    "-o",
                    partial,
                    tree,
                    "--",
                    "-volid",
                    VOLUME,
                ]
            )
        shutil.rmtree(tree)
        return Staged(
            boot_files=BootFiles(
                xen=f"boot/{job.xen}", kernel=f"boot/{job.kernel}", dtb="", emulator_dtb=""
            ),
            media=(ISO,),
            layout=(),
            xen_modules={},
        )

    def run_plan(
        self, board: Board, ram: str, build_dir: Path, workdir: Path, netdev: str = ""
    ) -> RunPlan:
        """The live image in a CD drive, read-only, so the build's file is what boots."""
        argv = qemu.start(board, ram)
        image = build_dir / ISO
        if not image.exists():
            raise XenkitError(f"{build_dir} has no {ISO}: run xenkit build -o {build_dir} first")
        workdir.mkdir(parents=True, exist_ok=True)
        argv += ["-drive", f"file={image},media=cdrom,readonly=on,format=raw"]
        if netdev:
            argv += ["-netdev", f"{netdev},id=net0", "-device", "e1000,netdev=net0"]
        argv += qemu.serial_args(board, workdir)
        return RunPlan(argv, image, workdir / "console.log", self.firmware)


TARGET = Grub()
