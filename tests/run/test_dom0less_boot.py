"""Dom0 and two dom0less guests, fetched by U-Boot over TFTP on QEMU virt, each printing its
own banner on Xen's console."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import make_spec, run_xenkit
from xenkit.bootscripts import scriptgen
from xenkit.config import boards
from xenkit.pipeline import build, manifest
from xenkit.run import emulate
from xenkit.system import initramfs

pytestmark = pytest.mark.debian  # the test that boots is marked qemu as well

CONFIG = """MEMORY_START="0x40000000"
MEMORY_END="0xC0000000"
DEVICE_TREE="qemu-virt.dtb"
XEN="xen"
XEN_CMD="console=dtuart dtuart=serial0 dom0_mem=512M"
DOM0_KERNEL="Image.gz"
DOM0_RAMDISK="initrd.cpio.gz"
DOM0_CMD="console=hvc0 earlycon=xen"
NUM_DOMUS=2
DOMU_KERNEL[0]="Image.gz"
DOMU_RAMDISK[0]="guest1.cpio.gz"
DOMU_MEM[0]=256
DOMU_KERNEL[1]="Image.gz"
DOMU_RAMDISK[1]="guest2.cpio.gz"
DOMU_MEM[1]=256
DOMU_VCPUS[1]=2
UBOOT_SOURCE="boot.source"
"""


@pytest.mark.qemu
def test_dom0_and_two_dom0less_guests_boot_over_tftp(tmp_path: Path, busybox: bytes) -> None:
    out = tmp_path / "virt"
    build.build(make_spec(board="qemu-virt"), out)
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    for name in ("xen", "Image.gz", "initrd.cpio.gz", "u-boot.bin"):
        shutil.copy(out / "boot" / name, tftp / name)
    shutil.copy(out / "emulate" / "qemu-virt.dtb", tftp / "qemu-virt.dtb")
    for name in ("guest1", "guest2"):
        (tftp / f"{name}.cpio.gz").write_bytes(initramfs.build(busybox, guest=name))
    (tftp / "config").write_text(CONFIG)
    scriptgen.generate(tftp / "config", tftp, "tftp", "boot")
    # U-Boot's distro boot ends in DHCP, which fetches and runs boot.scr.uimg.
    shutil.copy(tftp / "boot.scr", tftp / "boot.scr.uimg")
    board = boards.load("qemu-virt")
    plan = emulate.netboot_plan(board, "2G", tftp, tftp / "u-boot.bin", tmp_path / "run")
    want = [initramfs.READY, "xenkit: guest guest1 ready", "xenkit: guest guest2 ready"]
    result = emulate.check(plan, 300, None, want)
    console = plan.console_log.read_text(errors="replace")
    assert result.ok, result.reason + "\n" + console[-3000:]
    assert "Loading d1 kernel" in console and "Loading d2 kernel" in console
    assert "TFTP from server" in console  # U-Boot really fetched over the network
    g1, g2 = result.banners[want[1]][1], result.banners[want[2]][1]
    assert "(XEN) DOM" in g1 and "memory" in g1 and "1 vCPUs" in g1
    assert "2 vCPUs" in g2


def test_build_with_domain_tables_waits_for_every_guest(tmp_path: Path) -> None:
    """`build -c` with [[domain]] tables: the script loads each guest and `run --check` waits
    for each banner (the boots themselves are in the test above and in
    tests/run/test_guests_boot.py)."""
    config = tmp_path / "guests.toml"
    config.write_text(
        'board = "qemu-virt"\n'
        '[[domain]]\nname = "rtos-stand-in"\nmemory = "128M"\n'
        '[[domain]]\nname = "linux2"\nmemory = "192M"\nvcpus = 2\n'
        'cmdline = "console=ttyAMA0 quiet"\n'
    )
    out = tmp_path / "out"
    built = run_xenkit("build", "-c", str(config), "-o", str(out))
    assert built.returncode == 0, built.stderr
    script = (out / "boot/boot.source").read_text()
    assert "fdt mknod /chosen domU1" in script and "guest-linux2.cpio.gz" in script
    assert emulate.banners(manifest.read(out)) == [
        initramfs.READY,
        "xenkit: guest rtos-stand-in ready",
        "xenkit: guest linux2 ready",
    ]
