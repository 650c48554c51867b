"""xenkit's TOML boot config read into the boot model: every table's keys land where they
belong, defaults are ImageBuilder's, and a wrong shape is one line naming its place. (Scripts
made from it are compared with ImageBuilder's in tests/bootscripts; malformed files, one per
mistake, are in tests/data/bad/bootconfig.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from xenkit.config import boottoml
from xenkit.config.bootconfig import Cpupool, Dom0, Domain, Linux
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError

BOOT = {"memory_start": "0x40000000", "memory_end": 0xC0000000, "device_tree": "b.dtb"}


def test_every_table_lands_in_the_model() -> None:
    cfg = boottoml.from_toml(
        {
            "boot": {**BOOT, "load": "tftpb", "boot_cmd": "bootm", "dt_overlays": ["o.dtbo"]},
            "xen": {
                "image": "xen",
                "cmdline": "dom0_mem=512M",
                "static_heap": [[0x50000000, "16M"]],
            },
            "dom0": {"kernel": "Image", "ramdisk": "r.cpio", "memory": "512M", "vcpus": 2},
            "domain": [{"name": "rtos", "kernel": "zephyr.bin", "vpl011": False, "cpupool": 0}],
            "cpupool": [{"cpus": ["cpu@1", "/cpus/cpu@2"], "scheduler": "null"}],
        },
        "t.toml",
    )
    assert (cfg.memory_start, cfg.memory_end, cfg.device_tree) == (0x40000000, 0xC0000000, "b.dtb")
    assert (cfg.load_cmd, cfg.boot_cmd, cfg.dt_overlays) == ("tftpb", "bootm", ("o.dtbo",))
    assert (cfg.xen, cfg.xen_cmdline, cfg.xen_static_heap) == (
        "xen",
        "dom0_mem=512M",
        ((0x50000000, 16 * MiB),),
    )
    assert cfg.dom0 == Dom0("Image", "r.cpio", "", 512 * MiB, 2)
    # A guest without a virtual PL011 gets no console= of ImageBuilder's making.
    assert cfg.domains == (Domain("rtos", "zephyr.bin", vpl011=False, cpupool=0),)
    assert cfg.cpupools == (Cpupool(("/cpus/cpu@1", "/cpus/cpu@2"), "null"),)
    assert cfg.linux is None


def test_a_guest_gets_imagebuilder_defaults_and_a_plain_linux_boot_reads_too() -> None:
    (guest,) = boottoml.from_toml(
        {"boot": BOOT, "xen": {"image": "xen"}, "domain": [{"kernel": "Image"}]}, "t.toml"
    ).domains
    assert guest == Domain("domU0", "Image", cmdline="console=ttyAMA0", memory=512 * MiB)
    linux = boottoml.from_toml({"boot": BOOT, "linux": {"kernel": "Image"}}, "t.toml").linux
    assert linux == Linux("Image")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"boot": {"memory_end": 1}}, r"t\.toml: missing 'device_tree'"),
        ({"boot": BOOT, "dom": {}}, r"t\.toml: unknown table or key 'dom'"),
        ({"boot": {**BOOT, "load": ["tftpb"]}}, r"boot\.load = \['tftpb'\] must be a string"),
        ({"boot": BOOT, "domain": [{"kernel": "I", "memory": "0"}]}, r"memory = '0'"),
        ({"boot": BOOT, "cpupool": [{"cpus": "cpu@1"}]}, r"\[\[cpupool\]\] #1 cpus = 'cpu@1'"),
    ],
)
def test_a_wrong_shape_is_one_line_naming_its_place(data: dict[str, object], error: str) -> None:
    with pytest.raises(XenkitError, match=error) as exc:
        boottoml.from_toml(data, "t.toml")
    assert "\n" not in str(exc.value)


def test_load_reads_a_file_and_refuses_one_that_is_not_toml(tmp_path: Path) -> None:
    good = tmp_path / "boot.toml"
    good.write_text('[boot]\nmemory_end = "0x80000000"\ndevice_tree = "b.dtb"\n')
    assert boottoml.load(good).memory_end == 0x80000000
    bad = tmp_path / "bad.toml"
    bad.write_text('MEMORY_START="0x0"\n[boot\n')
    with pytest.raises(XenkitError, match=r"bad\.toml: "):
        boottoml.load(bad)
