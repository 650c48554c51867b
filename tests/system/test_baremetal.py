"""The tick guest, built with the real cross binutils: an Image Xen 4.17 loads, an ELF
entered at guest RAM base, one build per source version; and its [[domain]] rules."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit.analysis import tickstats
from xenkit.config import bootconfig, boottoml, settings
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError
from xenkit.formats import kernel
from xenkit.pipeline import build
from xenkit.system import baremetal

GUEST_RAM0_BASE = 0x40000000  # xen/include/public/arch-arm.h
EM_AARCH64 = 183


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XENKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tick_image_has_the_header_xen_loads(cache: Path) -> None:
    built = baremetal.build("tick")
    data = built.image.read_bytes()
    assert built.image.is_relative_to(cache) and not built.cached
    # Xen 4.17's kernel_zimage64_probe: magic1 "ARM\x64" at 0x38; it loads the file at
    # bank 0 + text_offset and enters at its first byte.
    assert data[0x38:0x3C] == b"ARM\x64"
    head = kernel.arm64_header(data)
    assert head.text_offset == 0
    assert head.flags & 1 == 0, "big-endian flag set"
    assert head.flags & 0b1000, "not marked relocatable, yet the code is position independent"
    assert len(data) <= head.image_size < 64 * 1024, "image_size must cover file and stack"
    # code0 branches forward past the header, into the image.
    code0 = struct.unpack_from("<I", data, 0)[0]
    assert code0 >> 26 == 0b000101, f"code0 {code0:#x} is not a B"
    target = (code0 & 0x3FFFFFF) * 4
    assert 64 <= target < len(data)


def test_tick_elf_enters_at_guest_ram_base(cache: Path) -> None:
    built = baremetal.build("tick")
    elf = built.elf.read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1  # 64-bit, little endian
    machine = struct.unpack_from("<H", elf, 18)[0]
    entry = struct.unpack_from("<Q", elf, 24)[0]
    assert machine == EM_AARCH64
    assert entry == GUEST_RAM0_BASE
    symbols = subprocess.run(
        ["aarch64-linux-gnu-nm", str(built.elf)], capture_output=True, text=True, check=True
    ).stdout
    addr = {line.split()[2]: int(line.split()[0], 16) for line in symbols.splitlines()}
    assert addr["_head"] == entry
    assert addr["vectors"] % 2048 == 0, "VBAR_EL1 needs a 2 KiB aligned table"
    # The flat Image is the ELF's one section from the entry point on.
    assert addr["_end"] - addr["_head"] == kernel.arm64_header(built.image.read_bytes()).image_size


def test_second_build_hits_the_cache_and_a_source_change_misses_it(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = baremetal.build("tick")
    stamp = first.image.stat().st_mtime_ns
    again = baremetal.build("tick")
    assert again.cached and again.image == first.image
    assert again.image.stat().st_mtime_ns == stamp
    sources = tmp_path / "guests"
    shutil.copytree(baremetal.SOURCES / "tick", sources / "tick")
    with (sources / "tick" / "tick.s").open("a") as f:
        f.write("// changed\n")
    monkeypatch.setattr(baremetal, "SOURCES", sources)
    changed = baremetal.build("tick")
    assert not changed.cached and changed.image != first.image
    # Only a comment changed: the same bytes, in their own cache entry.
    assert changed.image.read_bytes() == first.image.read_bytes()


def test_missing_toolchain_is_a_one_line_error(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(XenkitError) as err:
        baremetal.build("tick")
    message = str(err.value)
    assert "\n" not in message
    assert "aarch64-linux-gnu-as not found" in message
    assert "binutils-aarch64-linux-gnu" in message


def test_staging_puts_the_built_image_on_the_boot_partition(cache: Path, tmp_path: Path) -> None:
    system = make_spec(board="qemu-virt", domain=[{"name": "rtos", "kernel": "builtin:tick"}])
    boot = tmp_path / "boot"
    boot.mkdir()
    (staged,) = build._stage_guests(system, boot, b"busybox is not needed", build.KERNEL)
    assert staged.kernel == "domU0-tick.Image" and staged.ramdisk == ""
    assert (boot / staged.kernel).read_bytes() == baremetal.build("tick").image.read_bytes()
    assert sorted(p.name for p in boot.iterdir()) == ["domU0-tick.Image"]


def test_tick_domain_defaults() -> None:
    (d,) = make_spec(
        board="qemu-virt",
        domain=[{"name": "rtos", "kernel": "builtin:tick", "cmdline": "period_ms=20"}],
    ).domains
    assert d.memory == 16 * MiB and d.vcpus == 1 and d.vpl011
    assert d.cmdline == "name=rtos period_ms=20"
    (d,) = make_spec(board="rpi4", domain=[{"name": "r", "kernel": "builtin:tick"}]).domains
    assert d.cmdline == "name=r"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kernel": "builtin:nope"}, "no built-in guest 'nope'; known: builtin:tick"),
        ({"kernel": "builtin:tick", "ramdisk": "/etc/hostname"}, "takes no ramdisk"),
        ({"kernel": "builtin:tick", "vpl011": False}, "prints through its vpl011"),
        ({"kernel": "builtin:tick", "vcpus": 2}, "runs on one vCPU"),
        ({"kernel": "builtin:tick", "memory": "2M"}, "give at least 4M"),
        ({"kernel": "builtin:tick", "cmdline": "period_ms=0"}, "1 to 10000"),
        ({"kernel": "builtin:tick", "cmdline": "period_ms=fast"}, "whole milliseconds"),
        ({"kernel": "builtin:tick", "name": "has space"}, "letters, digits"),
        ({"kernel": "builtin:tick", "name": "x" * 33}, "up to 32"),
        ({"kernel": "builtin:tick", "memory": "2G"}, "the guests want"),
    ],
)
def test_bad_tick_domains_are_one_line_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(XenkitError) as err:
        make_spec(board="qemu-virt", domain=[{"name": "rtos", **table}])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_tick_guest_name_clash_is_refused() -> None:
    with pytest.raises(XenkitError, match="the name is taken"):
        make_spec(
            board="qemu-virt",
            domain=[{"name": "a"}, {"name": "a", "kernel": "builtin:tick"}],
        )


def test_config_file_keeps_builtin_kernels_as_they_are(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[domain]]\nname = "rtos"\nkernel = "builtin:tick"\n')
    assert settings.load_file(config)["domain"][0]["kernel"] == "builtin:tick"


def test_uboot_script_configs_refuse_builtin_kernels(tmp_path: Path) -> None:
    cfg = boottoml.from_toml(
        {
            "boot": {"memory_end": "0x80000000", "device_tree": "b.dtb"},
            "xen": {"image": "xen"},
            "domain": [{"name": "rtos", "kernel": "builtin:tick"}],
        },
        "t.toml",
    )
    with pytest.raises(XenkitError, match=r"DOMU_KERNEL\[0\]=builtin:tick: built-in guests"):
        bootconfig.validate(cfg, tmp_path)


CONSOLE = """\
(XEN) DOM1: xenkit: guest rtos ready: tick every 10 ms, cntfrq 1000000 Hz
(XEN) DOM1: xenkit: tick rtos 0 cntvct 5000 cntfrq 1000000
(XEN) DOM1: xenkit: tick other 0 cntvct 1 cntfrq 1000000
(XEN) DOM1: xenkit: tick rtos 1 cntvct 15100 cntfrq 1000000
(XEN) DOM1: xenkit: tick rtos 2 cntvct 25000 cntfrq 1000000
(XEN) DOM1: xenkit: tick rtos 5 cntvct 55300 cntfrq 1000000
"""


def test_tick_lines_give_lateness_missed_deadlines_and_jitter() -> None:
    run = tickstats.parse(CONSOLE, "rtos")
    assert (run.period_ms, run.cntfrq, run.period, run.start) == (10, 1000000, 10000, 5000)
    assert [t.n for t in run.ticks] == [0, 1, 2, 5]
    assert run.lateness() == [0, 100, 0, 300]
    assert run.missed() == 2
    assert run.periods() == [10100, 9900, 10100]
    j = run.jitter()
    assert (j.count, j.min, j.max, j.p99) == (3, 100, 300, 300)
    assert j.mean == pytest.approx(500 / 3)
    assert run.jitter(after_line=2).count == 2


def test_tick_log_without_the_guest_is_an_error() -> None:
    with pytest.raises(XenkitError, match="no banner of tick guest x"):
        tickstats.parse(CONSOLE, "x")
