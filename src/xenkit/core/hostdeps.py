"""What xenkit, its tests and its benchmarks take from the host, and which Debian package gives it.

One table, three readers: scripts/install-system-deps.sh installs these packages (it runs this
file: `python3 src/xenkit/core/hostdeps.py [--backports]`), proc.need names the package in its
"not found" error, and tests/core/test_hostdeps.py asks dpkg who owns each program and file and
fails unless that package is one the script installs or one of those depends on. A machine
that kept something installed by hand can no longer hide a missing install step (it did:
ipxe-qemu, procps, iproute2).

Standard library only: the set-up script runs it before any venv exists.
"""

from __future__ import annotations

import sys

# QEMU >= 9 is needed for the raspi4b machine: only bookworm-backports has it.
BACKPORTS = "bookworm-backports"
FROM_BACKPORTS = frozenset({"qemu-system-arm", "qemu-system-x86"})

# Programs started by xenkit (through proc), its tests or its benchmarks -> the package to install.
PROGRAMS: dict[str, str] = {
    "qemu-system-aarch64": "qemu-system-arm",
    # The PC: QEMU 10 for x86, and GRUB's hybrid BIOS + UEFI live images.
    "qemu-system-x86_64": "qemu-system-x86",
    "grub-mkrescue": "grub-common",
    "grub-mknetdir": "grub-common",
    "xorriso": "xorriso",
    # The PC's live root: a compressed read-only image, and the module index its Dom0's
    # modprobe reads to load drivers for the hardware it finds.
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "depmod": "kmod",
    # A network root: the chunk store and index, and the tests that read through it.
    "casync": "casync",
    "chroot": "coreutils",
    "ldd": "libc-bin",
    # The static server the chunk benchmark measures xenkit's HTTP server against.
    "lighttpd": "lighttpd",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "cp": "coreutils",
    "sh": "dash",
    "mkfs.fat": "dosfstools",
    "fsck.fat": "dosfstools",
    "fatlabel": "dosfstools",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "sfdisk": "fdisk",
    "dtc": "device-tree-compiler",
    "fdtoverlay": "device-tree-compiler",
    "mkimage": "u-boot-tools",
    "cpio": "cpio",
    # The bare-metal guests (xenkit.system.baremetal) need only the cross assembler and linker.
    "aarch64-linux-gnu-as": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-ld": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-objcopy": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-nm": "binutils-aarch64-linux-gnu",
    # TFTP clients the server is tested and benchmarked against.
    "tftp": "tftp-hpa",
    "atftp": "atftp",
    "busybox": "busybox",
    "curl": "curl",
    # Network namespaces and tap devices for the netboot tests and the TFTP benchmark.
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "pgrep": "procps",
    # A small tmpfs the tests fill, for what a full disk does to xenkit's writes.
    "mount": "mount",
    "umount": "mount",
    "gpgv": "gpgv",
    # Building pylibfdt into .venv.
    "swig": "swig",
    "gcc": "gcc",
    "make": "make",
}

# Files handed to a program rather than run: apt's keyring.
FILES: dict[str, str] = {
    "/usr/share/keyrings/debian-archive-keyring.gpg": "debian-archive-keyring",
    # grub-mkrescue puts in every platform whose modules it finds: BIOS and 64-bit UEFI.
    "/usr/lib/grub/i386-pc/moddep.lst": "grub-pc-bin",
    "/usr/lib/grub/x86_64-efi/moddep.lst": "grub-efi-amd64-bin",
    # UEFI firmware for QEMU's PC, the live image's other boot path.
    "/usr/share/ovmf/OVMF.fd": "ovmf",
}

# Firmware QEMU finds by name in its own search path (`qemu-system-aarch64 -L help`).
QEMU_ROMS: dict[str, str] = {
    # QEMU virt's default NIC (virtio-net-pci) loads it even when the machine only dumps its DTB.
    "efi-virtio.rom": "ipxe-qemu",
    # The PC's BIOS (SeaBIOS) and its default NIC's boot ROM.
    "bios-256k.bin": "seabios",
    "efi-e1000.rom": "ipxe-qemu",
}

# Packages with nothing to point at by path: Python's venv module and headers for pylibfdt.
OTHER = ("python3-venv", "python3-dev")


def packages() -> list[str]:
    """Every package to install, backports first, each once."""
    names = {*PROGRAMS.values(), *FILES.values(), *QEMU_ROMS.values(), *OTHER}
    return sorted(names, key=lambda n: (n not in FROM_BACKPORTS, n))


def provider(tool: str) -> str:
    """How to get `tool`, for an error message."""
    pkg = PROGRAMS.get(tool, tool)
    return f"{pkg} (from {BACKPORTS})" if pkg in FROM_BACKPORTS else pkg


def main(argv: list[str]) -> int:
    backports = "--backports" in argv
    print(" ".join(p for p in packages() if (p in FROM_BACKPORTS) == backports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
