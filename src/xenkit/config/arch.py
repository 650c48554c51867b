"""Architecture facts, in one place: what a board's `arch` means for packages, QEMU, kernel
images, boot file names and Xen's console."""

from __future__ import annotations

from dataclasses import dataclass

from xenkit.errors import XenkitError


@dataclass(frozen=True)
class Arch:
    name: str  # as board files and Debian name it
    qemu: str  # the QEMU system emulator
    xen_console: str  # Xen's console= driver for the board's UART
    # Names on the boot medium.
    xen_file: str
    kernel_file: str
    # Whether the kernel goes on the medium gzip'd: an arm64 Image is raw in Debian's
    # package, and U-Boot reads the emulated card at 1.3 MiB/s while Xen inflates a gzip'd
    # Dom0 kernel itself; an x86 bzImage compresses itself.
    gzip_kernel: bool
    # The kinds of run-time guest a user can ask for here, the default first. On Arm there
    # is one kind ("arm", which xl.cfg calls "pvh"); on x86 PV guests need no VT-x/AMD-V,
    # PVH and HVM ones need it with nested paging (HAP: Debian's Xen has no shadow paging).
    guest_types: tuple[str, ...]
    # Debian's packages of the QEMU above, where a board runs a release's QEMU unpacked
    # beside the installed one (run/qemudeb.py): the emulator, then its TCG module's.
    qemu_packages: tuple[str, ...] = ()
    # Dom0 packages for the guest types beyond the first (HVM's device model and firmware).
    guest_packages: tuple[str, ...] = ()
    # Guest kernel modules beyond the PV ones (an HVM guest's emulated NIC and disk).
    guest_modules: tuple[str, ...] = ()
    # The least memory a guest running Dom0's own kernel (xenkit's default) is built in;
    # 0: the Linux minimum of xen.xl.
    default_kernel_memory: int = 0

    @property
    def qdisk(self) -> bool:
        """Whether Dom0 has QEMU's PV disk backend, which serves guest disk images: it comes
        with the device model."""
        return DEVICE_MODEL in self.guest_packages


# Debian's build of QEMU as Xen's device model (and PV backends such as qdisk).
DEVICE_MODEL = "qemu-system-xen"

ARCHES = {
    # Xen on Arm finds its UART in the device tree (dtuart=alias or path).
    "arm64": Arch(
        "arm64",
        "qemu-system-aarch64",
        "dtuart",
        "xen",
        "Image.gz",
        True,
        ("arm",),
        qemu_packages=("qemu-system-arm", "qemu-system-common"),
    ),
    # Xen on x86: the first 16550 (com1=BAUD,8n1); GRUB's multiboot2 loads xen.gz as it is.
    # HVM guests need Debian's device model build of QEMU (with SeaBIOS; hvmloader comes with
    # xen-utils); e1000 and ata_piix drive what it emulates when PV drivers are turned off.
    "amd64": Arch(
        "amd64",
        "qemu-system-x86_64",
        "com1",
        "xen.gz",
        "vmlinuz",
        False,
        ("pv", "pvh", "hvm"),
        qemu_packages=("qemu-system-x86", "qemu-system-common"),
        guest_packages=(DEVICE_MODEL,),
        guest_modules=("e1000", "ata_piix", "sd_mod"),
        # Debian 12's amd64 kernel as a PV guest in 64M: "xc_dom_chk_alloc_pages: segment
        # kernel too large (0x3a00 > 0x4000 - 0x1000 pages)": 58 MiB of kernel segment and
        # 16 MiB the domain builder keeps need more than 74 MiB.
        default_kernel_memory=80 * 2**20,
    ),
}
# Guest types that run in a hardware-virtualised container and so need VT-x/AMD-V and HAP.
HARDWARE_GUESTS = ("pvh", "hvm")
RAMDISK_FILE = "initrd.cpio.gz"


def get(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise XenkitError(
            f"architecture {name!r} is not supported: choose one of {', '.join(ARCHES)}"
        ) from None
