"""The Raspberry Pi's boot: the VideoCore firmware reads config.txt from the card's FAT
partition and starts U-Boot as its "kernel", with its own DTB; U-Boot runs boot.scr.

Under QEMU (raspi4b) there is no VideoCore: QEMU loads U-Boot itself (-kernel) with the
emulator's DTB (-dtb), as the firmware would.
"""

from __future__ import annotations

from pathlib import Path

from xenkit.bootscripts.card import UBootCard
from xenkit.config.boards import Board, shape
from xenkit.errors import XenkitError
from xenkit.targets import Job


class Rpi(UBootCard):
    name = "rpi"
    options = ("config_txt",)
    checks = (*UBootCard.checks, "config.txt enable_uart")

    def validate(self, board: Board) -> None:
        super().validate(board)
        lines = board.boot.get("config_txt")
        # One line each: a line break inside one wrote a second line into config.txt.
        if not isinstance(lines, list) or any(shape.line(x) for x in lines):
            raise XenkitError(
                f"board {board.name} (target rpi): give [boot] config_txt, the firmware's "
                'config.txt lines, e.g. ["arm_64bit=1", "kernel=u-boot.bin"], one line each'
            )
        if not any(r.role == "firmware" for r in board.packages):
            raise XenkitError(
                f"board {board.name} (target rpi): give [packages.firmware] with start4.elf "
                "and fixup4.dat as firmware/NAME files"
            )

    def firmware_files(self, job: Job) -> dict[str, bytes]:
        out = {
            role.removeprefix("firmware/"): path.read_bytes()
            for role, path in job.art.files.items()
            if role.startswith("firmware/")
        }
        lines = job.spec.board.boot["config_txt"]
        out["config.txt"] = (
            "# Written by xenkit: the firmware starts U-Boot, U-Boot runs boot.scr.\n"
            + "\n".join(lines)
            + "\n"
        ).encode()
        return out

    def qemu_firmware(self, uboot: Path, emulator_dtb: Path | None) -> list[str]:
        dtb = ["-dtb", str(emulator_dtb)] if emulator_dtb else []
        return ["-kernel", str(uboot), *dtb]


TARGET = Rpi()
