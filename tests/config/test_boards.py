from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import edited_board
from xenkit import targets
from xenkit.config import boards
from xenkit.errors import XenkitError


def test_every_board_file_loads() -> None:
    assert {"rpi4", "qemu-virt"} <= set(boards.available())
    for name in boards.available():
        board = boards.load(name)
        assert board.name == name
        assert board.default_ram in board.ram
        assert {"xen", "kernel", "busybox"} <= {f for p in board.packages for f in p.files}
        # Each is complete for its boot target.
        targets.for_board(board)


def test_rpi4_facts() -> None:
    b = boards.load("rpi4")
    assert b.xen_console == "serial1" and b.dma_bitsize == 30
    assert set(b.ram) == {"1G", "2G", "4G", "8G"}
    assert all(banks[0][0] == 0 and banks[0][1] < 1 << 30 for banks in b.ram.values())
    assert sum(s for _, s in b.ram["8G"]) > 7 << 30
    assert b.target == "rpi"
    config_txt = b.boot["config_txt"]
    assert "enable_uart=1" in config_txt and "kernel=u-boot.bin" in config_txt
    assert b.emulate.machine == "raspi4b" and b.emulate.console_serial == 1
    assert b.load_limit == 1 << 30
    assert not b.dtb_from_qemu


def test_the_pc_has_no_device_tree() -> None:
    b = boards.load("pc")
    assert b.arch == "amd64" and b.target == "grub" and not b.dtb_name
    assert not b.dtb_from_qemu


def test_the_pc_is_a_workbench_that_configures_itself() -> None:
    b = boards.load("pc")
    assert b.toolstack and "kernel/drivers/net/ethernet" in b.hardware_modules
    assert {"isofs", "squashfs", "overlay", "usb_storage"} <= set(b.root_modules)
    arm = boards.load("rpi4")
    assert not arm.toolstack and not arm.hardware_modules


def test_a_board_flag_that_is_not_true_or_false_is_refused(tmp_path: Path) -> None:
    bad = edited_board(tmp_path, "pc", "toolstack = true", 'toolstack = "yes"')
    with pytest.raises(XenkitError, match=r"dom0.toolstack = 'yes' must be true or false"):
        boards.load(str(bad))


def test_qemu_virt_takes_its_dtb_from_qemu() -> None:
    b = boards.load("qemu-virt")
    assert b.dtb_from_qemu
    assert "virtualization=on" in b.emulate.machine and "gic-version=2" in b.emulate.machine


def test_unknown_board_lists_the_known_ones() -> None:
    message = "unknown board 'rpi5': choose one of pc, qemu-virt, rpi4"
    with pytest.raises(XenkitError, match=message):
        boards.load("rpi5")


def test_the_pc_runs_on_bookworms_qemu_and_the_arm_boards_on_the_installed_one() -> None:
    assert boards.load("pc").emulate.qemu_release == "bookworm"
    assert boards.load("rpi4").emulate.qemu_release == ""
    assert boards.load("qemu-virt").emulate.qemu_release == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"sid"', r"\[emulate\] qemu_release = 'sid': choose one of bookworm, trixie, or leave"),
        ("12", r"emulate.qemu_release = 12 must be"),
    ],
)
def test_a_qemu_release_that_is_not_a_known_one_is_refused(
    tmp_path: Path, value: str, message: str
) -> None:
    bad = edited_board(tmp_path, "pc", 'qemu_release = "bookworm"', f"qemu_release = {value}")
    with pytest.raises(XenkitError, match=message):
        boards.load(str(bad))
