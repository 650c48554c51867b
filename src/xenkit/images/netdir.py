"""The PC's network boot directory: what a PXE client loads over TFTP. GRUB's core images
for BIOS and 64-bit UEFI (grub-mknetdir's, with the modules they load on demand) and the
boot medium's own grub.cfg, Xen, Dom0 kernel and initramfs at the same paths, so one menu
serves both. GRUB finds its grub.cfg on the TFTP server the DHCP answer named."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from xenkit.bootscripts.grubcfg import HTTP_CFG
from xenkit.core.proc import need, run

SUBDIR = "boot/grub"
GRUB_LIB = Path("/usr/lib/grub")
# DHCP option 93, the client's architecture (RFC 4578: 0 x86 BIOS, 7 and 9 x64 UEFI) -> the
# core image it must be given.
BIOS = f"{SUBDIR}/i386-pc/core.0"
UEFI = f"{SUBDIR}/x86_64-efi/core.efi"
BY_ARCH: Mapping[int, str] = {0: BIOS, 7: UEFI, 9: UEFI}


def make(medium: Path, dest: Path, http: tuple[str, str] | None = None) -> None:
    """`dest` (a TFTP tree's default/) from `medium`, the boot medium's tree (boot/...).
    `http` (grubcfg.pxe_http's header and http.cfg): the menu fetches the big files over
    HTTP where it can. grub-mknetdir copies every module beside the core images (Debian's
    2.06: http.mod too), so `insmod http` loads it over TFTP; the core images hold only
    the PXE or EFI network driver and TFTP."""
    for platform in ("i386-pc", "x86_64-efi"):
        run(
            [
                need("grub-mknetdir"),
                f"--net-directory={dest}",
                f"--subdir={SUBDIR}",
                "-d",
                GRUB_LIB / platform,
            ]
        )
    shutil.copytree(medium / "boot", dest / "boot", dirs_exist_ok=True)
    if http:
        header, http_cfg = http
        cfg = dest / SUBDIR / "grub.cfg"
        # After the menu's terminal lines, so what it says reaches the serial line too.
        text = cfg.read_text()
        at = text.index("menuentry ")
        cfg.write_text(text[:at] + header + text[at:])
        (dest / HTTP_CFG).write_text(http_cfg)


def boot_files(tree: Path) -> dict[int, str]:
    """The core image for each client architecture `tree` has one for."""
    return {arch: path for arch, path in BY_ARCH.items() if (tree / path).is_file()}
