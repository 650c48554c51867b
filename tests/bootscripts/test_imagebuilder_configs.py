"""The configs people already have: Xen CI's smoke tests and ImageBuilder's README example
(reproduced here as test data), read and turned into scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import bootfiles
from xenkit.bootscripts import bootscript, imagebuilder, scriptgen
from xenkit.errors import XenkitError

# automation/scripts/qemu-smoke-dom0-arm64.sh (Xen master)
CI_DOM0 = """MEMORY_START="0x40000000"
MEMORY_END="0xC0000000"
DEVICE_TREE="virt-gicv2.dtb"
XEN="xen"
DOM0_KERNEL="Image"
DOM0_RAMDISK="dom0-rootfs.cpio.gz"
XEN_CMD="console=dtuart dom0_mem=1024M console_timestamps=boot"
NUM_DOMUS=0
LOAD_CMD="tftpb"
UBOOT_SOURCE="boot.source"
UBOOT_SCRIPT="boot.scr"
"""

# automation/scripts/qemu-smoke-dom0less-arm64.sh (Xen master), before its variants append
CI_DOM0LESS = """MEMORY_START="0x40000000"
MEMORY_END="0x50000000"
DEVICE_TREE="virt.dtb"
XEN="xen"
DOM0_KERNEL="Image"
DOM0_RAMDISK="dom0-rootfs.cpio.gz"
XEN_CMD="console=dtuart dom0_mem=512M console_timestamps=boot"
NUM_DOMUS=1
DOMU_KERNEL[0]="Image"
DOMU_RAMDISK[0]="initrd"
DOMU_MEM[0]="256"
DOMU_KERNEL[1]="Image"
DOMU_RAMDISK[1]="initrd"
DOMU_MEM[1]="256"
LOAD_CMD="tftpb"
UBOOT_SOURCE="boot.source"
UBOOT_SCRIPT="boot.scr"
"""
VARIANTS = {
    "default": "",
    "static-mem": '\nDOMU_STATIC_MEM[0]="0x50000000 0x10000000"\n',
    "static-heap": '\nXEN_STATIC_HEAP="0x50000000 0x30000000"\n'
    "# The size of static heap should be greater than the guest memory\n"
    'DOMU_MEM[0]="128"\n',
    "boot-cpupools": '\nCPUPOOL[0]="cpu@1 null"\nDOMU_CPUPOOL[0]=0\nNUM_CPUPOOLS=1\n',
}

# ImageBuilder's README example
README = """MEMORY_START="0x0"
MEMORY_END="0x80000000"
LOAD_CMD="tftpb"
BOOT_CMD="booti"

DEVICE_TREE="mpsoc.dtb"
XEN="xen"
XEN_CMD="console=dtuart dtuart=serial0 dom0_mem=1G dom0_max_vcpus=1 bootscrub=0 vwfi=native sched=null"
PASSTHROUGH_DTS_REPO="git@github.com:Xilinx/xen-passthrough-device-trees.git device-trees-2021.2/zcu102"
DOM0_KERNEL="Image-dom0"
DOM0_CMD="console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused"
DOM0_RAMDISK="dom0-ramdisk.cpio"
DOM0_MEM=1024
DOM0_VCPUS=1

NUM_DT_OVERLAY=1
DT_OVERLAY[0]="host_dt_overlay.dtbo"

NUM_DOMUS=2
DOMU_KERNEL[0]="zynqmp-dom1/Image-domU"
DOMU_PASSTHROUGH_PATHS[0]="/axi/ethernet@ff0e0000 /axi/serial@ff000000"
DOMU_CMD[0]="console=ttyPS0 earlycon console=ttyPS0,115200 clk_ignore_unused rdinit=/sbin/init root=/dev/ram0 init=/bin/sh"
DOMU_RAMDISK[0]="zynqmp-dom1/domU-ramdisk.cpio"
DOMU_MEM[0]=1024
DOMU_KERNEL[1]="zynqmp-dom2/Image-domU"
DOMU_CMD[1]="console=ttyPS0 earlycon console=ttyPS0,115200 clk_ignore_unused rdinit=/sbin/init root=/dev/ram0 init=/bin/sh"
DOMU_RAMDISK[1]="zynqmp-dom2/domU-ramdisk.cpio"
DOMU_MEM[1]=1024

UBOOT_SOURCE="boot.source"
UBOOT_SCRIPT="boot.scr"
"""


def _tree(tmp: Path) -> Path:
    root = bootfiles.populate(tmp)
    for name in ("virt-gicv2.dtb", "virt.dtb"):
        shutil.copy(root / "board.dtb", root / name)
    shutil.copy(root / "domU-rootfs.cpio", root / "initrd")
    return root


def test_ci_dom0_smoke_config(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "config").write_text(CI_DOM0)
    plan = scriptgen.generate(root / "config", root, "tftp", "boot")
    assert [ld.role for ld in plan.loads] == ["dom0", "dom0-ramdisk", "xen", "dtb"]
    assert plan.config.xen_cmdline == "console=dtuart dom0_mem=1024M console_timestamps=boot"
    assert scriptgen.hint(plan.config, "boot.scr", plan.address) == (
        "tftpb 0x40200000 boot.scr; source 0x40200000"
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ci_dom0less_smoke_configs(tmp_path: Path, variant: str) -> None:
    root = _tree(tmp_path)
    (root / "config").write_text(CI_DOM0LESS + VARIANTS[variant])
    plan = scriptgen.generate(root / "config", root, "tftp", "boot")
    # NUM_DOMUS=1: the second domU's lines are there but not used
    assert [ld.role for ld in plan.loads] == [
        "dom0",
        "dom0-ramdisk",
        "domU0",
        "domU0-ramdisk",
        "xen",
        "dtb",
    ]
    dry = bootscript.dry_run(plan.script, root, [(0x40000000, 0x10000000)], plan.reserved)
    assert dry.problems == []
    t = dry.tree
    assert t.string("/chosen/domU0", "compatible") == "xen,domain"
    if variant == "static-mem":
        assert t.prop("/chosen/domU0", "xen,static-mem") is not None
        assert t.prop("/chosen/domU0", "direct-map") == b""
    if variant == "static-heap":
        assert t.prop("/chosen", "xen,static-heap") == (
            b"\0\0\0\0"
            + (0x50000000).to_bytes(4, "big")
            + b"\0\0\0\0"
            + (0x30000000).to_bytes(4, "big")
        )
        assert (t.prop("/chosen/domU0", "memory") or b"")[-4:] == (128 * 1024).to_bytes(4, "big")
    if variant == "boot-cpupools":
        assert t.string("/chosen/cpupool_0", "cpupool-sched") == "null"
        assert t.prop("/chosen/domU0", "domain-cpupool") is not None


def test_imagebuilder_readme_example_is_read_and_refused_as_imagebuilder_does() -> None:
    raw = imagebuilder.parse(README, "README")
    assert any("PASSTHROUGH_DTS_REPO is not supported" in w for w in raw.warnings)
    assert raw.at("DOMU_PASSTHROUGH_PATHS", 0) == "/axi/ethernet@ff0e0000 /axi/serial@ff000000"
    # It sets XEN_CMD and DOM0_MEM together: ImageBuilder stops there, so does xenkit (loudly).
    with pytest.raises(XenkitError, match="XEN_CMD together with DOM0_MEM"):
        imagebuilder.to_config(raw)
    fixed = imagebuilder.to_config(
        imagebuilder.parse(README.replace("DOM0_MEM=1024\n", "").replace("DOM0_VCPUS=1\n", ""))
    )
    assert [d.memory >> 20 for d in fixed.domains] == [1024, 1024]
    assert fixed.domains[0].passthrough_paths == ("/axi/ethernet@ff0e0000", "/axi/serial@ff000000")
    assert fixed.dt_overlays == ("host_dt_overlay.dtbo",)
    assert [role for role, _ in fixed.files()] == [
        "dom0",
        "dom0-ramdisk",
        "domU0",
        "domU0-ramdisk",
        "domU1",
        "domU1-ramdisk",
        "xen",
        "overlay0",
        "dtb",
    ]
