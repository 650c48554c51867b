"""The PC's boot target: GRUB's menu from the settings, and one hybrid live image that boots
Xen and Dom0 from a CD drive."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit import targets
from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.targets import grub


def _entries(cfg: str) -> dict[str, list[str]]:
    found = re.findall(r'^menuentry "([^"]+)" \{\n(.*?)\n\}', cfg, re.M | re.S)
    return {title: [line.strip() for line in body.splitlines()] for title, body in found}


def test_the_menu_offers_xen_a_capped_dom0_plain_linux_and_safe_mode() -> None:
    spec = make_spec(board="pc", dom0_mem="768M", xen_extra="loglvl=all")
    cfg = grub.menu(spec, 5, spec.dom0_cmdline)
    assert "serial --unit=0 --speed=115200" in cfg and "terminal_output serial console" in cfg
    assert "set timeout=5" in cfg and "set default=0" in cfg
    entries = _entries(cfg)
    assert list(entries) == [
        "Xen",
        "Xen, Dom0 memory capped at 768M",
        "Linux without Xen",
        "Xen safe mode",
    ]
    xen = entries["Xen"]
    assert xen == [
        "multiboot2 /boot/xen.gz console=com1 com1=115200,8n1 dom0_mem=768M loglvl=all",
        "module2 /boot/vmlinuz console=hvc0 earlyprintk=xen",
        "module2 /boot/initrd.cpio.gz",
    ]
    capped = entries["Xen, Dom0 memory capped at 768M"][0].split()
    assert "dom0_mem=768M,max:768M" in capped and "dom0_mem=768M" not in capped
    assert entries["Linux without Xen"] == [
        "linux /boot/vmlinuz console=ttyS0,115200",
        "initrd /boot/initrd.cpio.gz",
    ]
    assert entries["Xen safe mode"][0].endswith(" ".join(grub.SAFE))


def _board(tmp_path: Path, old: str, new: str) -> boards.Board:
    path = tmp_path / "pc.toml"
    text = (Path(boards.__file__).parent / "pc.toml").read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return boards.load(str(path))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('arch = "amd64"', 'arch = "arm64"', "for amd64 boards, not arm64"),
        ("timeout = 3", "timeout = -1", "whole seconds"),
        ("timeout = 3", "timeout = 3\nscriptaddr = 1", "unknown \\[boot\\] keys scriptaddr"),
        ("[packages.busybox]", "[packages.shell]", "give \\[packages.busybox\\]"),
    ],
)
def test_the_target_refuses_a_board_it_cannot_boot(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(XenkitError, match=message):
        targets.for_board(_board(tmp_path, old, new))


def xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenkit", *args], capture_output=True, text=True)


@pytest.mark.debian
def test_dom0less_guests_are_refused_on_the_pc(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('board = "pc"\n[[domain]]\nname = "rtos"\nkernel = "builtin:tick"\n')
    proc = xenkit("build", "-c", str(config), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "which Xen starts only on Arm" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.qemu
def test_the_live_image_is_hybrid_and_boots_xen_and_dom0_from_cd(tmp_path: Path) -> None:
    out = tmp_path / "pc"
    built = xenkit("build", "--board", "pc", "-o", str(out))
    assert built.returncode == 0, built.stderr
    assert "live.iso" in built.stdout and "map in" not in built.stdout
    iso = out / "live.iso"
    # El Torito entries for BIOS and UEFI, and an MBR for a USB stick or disk.
    torito = subprocess.run(
        ["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    platforms = re.findall(r"^El Torito boot img :\s+\d+\s+(\w+)\s+y", torito, re.M)
    assert sorted(platforms) == ["BIOS", "UEFI"], torito
    assert iso.read_bytes()[510:512] == b"\x55\xaa"
    info = xenkit("info", str(out))
    assert "boots through grub" in info.stdout and "Xen        4.17" in info.stdout, info.stdout
    check = xenkit("check", str(out))
    assert check.returncode == 2 and "without a device tree" in check.stderr
    ran = xenkit("run", "--check", "--quiet", "--timeout", "600", str(out))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr
    banner = re.search(r"Dom0 ready: Xen (4\.17[.\d]*), memory (\d+) MiB, (\d+) vCPUs", ran.stdout)
    assert banner and banner.group(3) == "2", ran.stdout
    for phase in ("firmware \\+ GRUB", "Xen", "Dom0 kernel", "Dom0 userspace"):
        assert re.search(rf"^{phase}\s+\d+\.\d s\s+\d+\.\d s$", ran.stdout, re.M), ran.stdout
    console = (out / "run" / "console.log").read_text(errors="replace")
    # Xen on TCG's -cpu max: the HVM machinery the next issue's guests need is there.
    assert "HVM: SVM enabled" in console and "Hardware Assisted Paging (HAP) detected" in console


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"toolstack": True}, "toolstack on the pc board is not built yet"),
        ({"netboot": True}, "netboot on the pc board is not built yet"),
    ],
)
def test_what_the_pc_cannot_build_yet_is_refused_before_any_download(
    tmp_path: Path, setting: dict[str, object], message: str
) -> None:
    from xenkit.pipeline import build

    with pytest.raises(XenkitError, match=message):
        build.build(make_spec(board="pc", **setting), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_check_and_map_say_the_pc_has_no_device_tree_to_check() -> None:
    for command in ("check", "map"):
        proc = xenkit(command, "--board", "pc")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "pc has no device tree" in lines[0]
