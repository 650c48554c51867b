"""U-Boot as the machine's firmware (QEMU virt: -bios), finding boot.scr on the card (a
virtio disk) by its distro boot, and the DTB the machine hands it."""

from __future__ import annotations

from pathlib import Path

from xenkit.bootscripts.card import UBootCard
from xenkit.config.spec import SystemSpec
from xenkit.images import layers
from xenkit.system import netroot
from xenkit.system.initramfs import RootSource


class UBoot(UBootCard):
    name = "uboot"

    def root_source(self, spec: SystemSpec) -> RootSource:
        # A network root: the card carries U-Boot, Xen, Dom0's kernel and first stage; the
        # root comes over the machine's NIC (virtio-net on QEMU's virt).
        if spec.net_root:
            return netroot.Net(layers.LAYERS, mirrors=spec.mirrors, fetch=spec.net_fetch)
        return self.root

    def qemu_firmware(self, uboot: Path, emulator_dtb: Path | None) -> list[str]:
        # The machine makes its own DTB and hands it to U-Boot: nothing to pass.
        return ["-bios", str(uboot)]


TARGET = UBoot()
