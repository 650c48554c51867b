"""U-Boot as the machine's firmware (QEMU virt: -bios), finding boot.scr on the card (a
virtio disk) by its distro boot, and the DTB the machine hands it."""

from __future__ import annotations

from pathlib import Path

from xenkit.bootscripts.card import UBootCard


class UBoot(UBootCard):
    name = "uboot"

    def qemu_firmware(self, uboot: Path, emulator_dtb: Path | None) -> list[str]:
        # The machine makes its own DTB and hands it to U-Boot: nothing to pass.
        return ["-bios", str(uboot)]


TARGET = UBoot()
