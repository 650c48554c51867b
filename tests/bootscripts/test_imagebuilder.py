"""Reading ImageBuilder configs: syntax, defaults and derivations, errors."""

from __future__ import annotations

import pytest

from xenkit.bootscripts import imagebuilder as ib
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError


def cfg(text: str, load: str | None = "tftp"):  # type: ignore[no-untyped-def]
    return ib.to_config(ib.parse(text), load)


BASE = """
MEMORY_START="0x40000000"
MEMORY_END="0xC0000000"
DEVICE_TREE="board.dtb"
XEN="xen"
DOM0_KERNEL="Image"
"""


def test_shell_syntax_arrays_quotes_comments_and_expansion() -> None:
    raw = ib.parse(
        "MEMORY_START=0x0  # trailing comment\n"
        "# a comment line\n"
        "NAME='a b'\n"
        'DOMU_CMD[1]="console=ttyAMA0 $NAME ${NAME}"\n'
        'XEN_CMD="multi\nline"\n'
        "LOAD_CMD=tftpb BOOT_CMD=booti\n"
    )
    assert raw.get("MEMORY_START") == "0x0"
    assert raw.at("DOMU_CMD", 1) == "console=ttyAMA0 a b a b"
    assert raw.get("XEN_CMD") == "multi\nline"
    assert raw.get("LOAD_CMD") == "tftpb" and raw.get("BOOT_CMD") == "booti"
    assert any("unknown variable NAME" in w for w in raw.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('XEN="xen\n', "unterminated quote"),
        ("echo hello\n", "'echo' is not an assignment"),
        (
            "MEMORY_END=lots\nXEN=x\nDEVICE_TREE=d\nDOM0_KERNEL=k",
            "MEMORY_END='lots' is not a number",
        ),
    ],
)
def test_syntax_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(XenkitError, match=message) as err:
        ib.to_config(ib.parse(text, "cfg"), "tftp")
    assert "\n" not in str(err.value)


def test_unsupported_variables_are_warned_about() -> None:
    raw = ib.parse('FIT="boot.fit"\nDOMU_CAPS[0]=control\nXEN=x\n')
    assert [w.split(": ", 1)[1] for w in raw.warnings] == [
        "FIT is not supported by xenkit (ignored)",
        "DOMU_CAPS is not supported by xenkit (ignored)",
    ]


def test_xen_and_dom0_defaults() -> None:
    c = cfg(BASE)
    assert c.xen_cmdline == (
        "console=dtuart dtuart=serial0 dom0_mem=1024M dom0_max_vcpus=1 "
        "bootscrub=0 vwfi=native sched=null"
    )
    assert c.dom0 is not None
    assert (
        c.dom0.cmdline
        == "console=hvc0 earlycon=xenboot earlyprintk clk_ignore_unused root=/dev/ram0"
    )
    c = cfg(BASE + "DOM0_MEM=512\nDOM0_VCPUS=2\nXEN_COLORS=0-3\n")
    assert "dom0_mem=512M dom0_max_vcpus=2" in c.xen_cmdline
    assert c.xen_cmdline.endswith("xen_colors=0-3")
    assert c.load_cmd == "tftpb" and c.boot_cmd == "booti"


def test_domu_defaults_and_enhanced_rules() -> None:
    c = cfg(
        BASE + "NUM_DOMUS=3\nDOMU_KERNEL[0]=Image\nDOMU_KERNEL[1]=Image\nDOMU_VPL011[1]=0\n"
        "DOMU_ENHANCED[1]=0\nDOMU_KERNEL[2]=Image\nDOMU_MEM[2]=128\nDOMU_VCPUS[2]=2\n"
    )
    d0, d1, d2 = c.domains
    assert (d0.memory, d0.vcpus, d0.vpl011, d0.cmdline, d0.enhanced) == (
        512 * MiB,
        1,
        True,
        "console=ttyAMA0",
        "enabled",
    )
    assert (d1.vpl011, d1.cmdline, d1.enhanced) == (False, "", "")
    assert (d2.memory, d2.vcpus) == (128 * MiB, 2)
    assert [d.name for d in c.domains] == ["domU0", "domU1", "domU2"]


def test_dom0less_only_drops_dom0_words_and_enhanced() -> None:
    text = (
        BASE.replace('DOM0_KERNEL="Image"', "")
        + "NUM_DOMUS=1\nDOMU_KERNEL[0]=Image\nDOMU_ENHANCED[0]=2\n"
    )
    c = cfg(text)
    assert c.dom0 is None
    assert "dom0" not in c.xen_cmdline and "bootscrub=0" in c.xen_cmdline
    assert c.domains[0].enhanced == "no-xenstore"
    with pytest.raises(XenkitError, match="DOM0_MEM is set but there is no DOM0_KERNEL"):
        cfg(text + "DOM0_MEM=512\n")


def test_static_memory_sets_the_size_and_direct_map() -> None:
    c = cfg(
        BASE + 'NUM_DOMUS=2\nDOMU_KERNEL[0]=Image\nDOMU_STATIC_MEM[0]="0x50000000 0x8000000 '
        '0x58000000 0x8000000"\nDOMU_KERNEL[1]=Image\n'
        'DOMU_STATIC_MEM[1]="0x80000000 0x10000000"\nDOMU_DIRECT_MAP[1]=0\n'
    )
    assert c.domains[0].memory == 256 * MiB and c.domains[0].direct_map
    assert c.domains[0].static_mem == ((0x50000000, 0x8000000), (0x58000000, 0x8000000))
    assert c.domains[1].memory == 256 * MiB and not c.domains[1].direct_map


def test_noboot_and_rootfs_domus_are_skipped() -> None:
    c = cfg(
        BASE + "NUM_DOMUS=3\nDOMU_KERNEL[0]=Image\nDOMU_NOBOOT[0]=1\nDOMU_KERNEL[1]=Image\n"
        "DOMU_ROOTFS[1]=rootfs.ext4\nDOMU_KERNEL[2]=Image\n"
    )
    assert [d.name for d in c.domains] == ["domU2"]


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ("tftp", "tftpb"),
        ("sd", "load mmc 0:1"),
        ("scsi", "load scsi 0:1"),
        ("usb", "fatload usb 0:1"),
        ("virtio", "load virtio 0:1"),
        ("ext4load mmc 1:2", "ext4load mmc 1:2"),
    ],
)
def test_load_command_aliases(load: str, expected: str) -> None:
    assert cfg(BASE, load).load_cmd == expected


def test_root_device_follows_the_load_command() -> None:
    assert cfg(BASE + "DOM0_ROOTFS=rootfs.ext4\n", "load mmc 1:1").dom0.cmdline.endswith(
        "root=/dev/mmcblk1p2"
    )
    assert cfg(BASE + "DOM0_ROOTFS=rootfs.ext4\n", "load scsi 2:3").dom0.cmdline.endswith(
        "root=/dev/sdc4"
    )
    with pytest.raises(XenkitError, match="DOM0_ROOTFS: cannot tell the root device"):
        cfg(BASE + "DOM0_ROOTFS=rootfs.ext4\n", "tftp")


def test_linux_without_xen() -> None:
    c = cfg(
        "MEMORY_START=0\nMEMORY_END=0x80000000\nDEVICE_TREE=board.dtb\nLINUX=Image\n"
        "LINUX_RAMDISK=initrd\n",
        "sd",
    )
    assert c.linux is not None and c.xen == ""
    assert c.linux.cmdline == "earlycon console=ttyPS0,115200 root=/dev/ram0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("XEN=xen\n", "neither DOM0_KERNEL nor any DOMU_KERNEL"),
        ("DEVICE_TREE=d\n", "neither XEN nor LINUX"),
        (BASE + "NUM_DOMUS=1\n", r"DOMU_KERNEL\[0\] is not set"),
        (BASE + 'XEN_CMD="console=dtuart"\nDOM0_MEM=512\n', "XEN_CMD together with DOM0_MEM"),
        (
            BASE + 'NUM_DOMUS=1\nDOMU_KERNEL[0]=Image\nDOMU_STATIC_MEM[0]="0x5000"\n',
            r"DOMU_STATIC_MEM\[0\]='0x5000': give base and size pairs",
        ),
        (BASE + "NUM_CPUPOOLS=1\n", r"CPUPOOL\[0\] is not set"),
    ],
)
def test_bad_configs_name_the_variable(text: str, message: str) -> None:
    with pytest.raises(XenkitError, match=message) as err:
        cfg(text)
    assert "\n" not in str(err.value)


def test_missing_load_command() -> None:
    with pytest.raises(XenkitError, match="LOAD_CMD is not set"):
        cfg(BASE, None)
