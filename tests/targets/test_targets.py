"""Boot targets are plug-ins found by name, and boards are data: a board file no code knows
builds and boots."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit import targets
from xenkit.analysis import check
from xenkit.config import boards
from xenkit.errors import XenkitError

DATA = Path(__file__).resolve().parents[1] / "data" / "boards"


def xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenkit", *args], capture_output=True, text=True)


def test_targets_are_found_by_name() -> None:
    assert targets.available() == ["grub", "rpi", "uboot"]
    for name in ("rpi4", "qemu-virt"):
        board = boards.load(name)
        assert targets.for_board(board).name == board.target
    with pytest.raises(XenkitError, match=r"unknown boot target 'pxe'.*grub, rpi, uboot"):
        targets.get("pxe")


def _board(tmp_path: Path, old: str, new: str) -> boards.Board:
    path = tmp_path / "b.toml"
    path.write_text((DATA / "acme-devkit.toml").read_text().replace(old, new, 1))
    return boards.load(str(path))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('target = "uboot"', 'target = "pxe"', "unknown boot target 'pxe'"),
        ('dtb_name = "acme-devkit.dtb"', "", "give dtb_name"),
        ("scriptaddr = 0x40200000", "scriptaddr = 0x41000000", "not in any \\[layout\\] reserved"),
        ("scriptaddr = 0x40200000", 'scriptaddr = "x"', "give \\[boot\\] scriptaddr"),
        ("[boot]", "[boot]\nconfig_txt = []", "unknown \\[boot\\] keys config_txt"),
        ('target = "uboot"', 'target = "rpi"', "give \\[boot\\] config_txt"),
    ],
)
def test_a_target_refuses_a_board_it_cannot_boot(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    board = _board(tmp_path, old, new)
    with pytest.raises(XenkitError, match=message):
        targets.for_board(board)


@pytest.mark.qemu
def test_a_made_up_board_builds_and_boots_through_the_uboot_target(tmp_path: Path) -> None:
    board_file = tmp_path / "acme-devkit.toml"
    shutil.copyfile(DATA / "acme-devkit.toml", board_file)
    out = tmp_path / "out"
    built = xenkit("build", "--board", str(board_file), "-o", str(out))
    assert built.returncode == 0, built.stderr
    # The build keeps its board: run, info and check need nothing else.
    board_file.unlink()
    info = xenkit("info", str(out))
    assert "acme-devkit" in info.stdout and "boots through uboot" in info.stdout, info.stderr
    check = xenkit("check", str(out))
    assert check.returncode == 0 and "GICv3" in check.stdout, check.stdout
    ran = xenkit("run", "--check", "--quiet", "--timeout", "300", str(out))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr
    assert "Dom0 is up" in ran.stdout
    console = (out / "run" / "console.log").read_text(errors="replace")
    # Xen found the made-up board's two CPUs and its GICv3, and gave Dom0 384 MiB.
    assert "GICv3" in console and "Brought up 2 CPUs" in console, console[-3000:]
    assert "Allocating 1:1 mappings totalling 384MB for dom0" in console


def test_each_target_names_the_checks_that_apply_to_its_boards(pi4_dtb: Path) -> None:
    rpi, uboot, grub = (targets.get(n).checks for n in ("rpi", "uboot", "grub"))
    assert {*rpi, *uboot, *grub} <= set(check.CHECKS)
    # Only the Pi firmware reads config.txt; the PC has no device tree to check, and its
    # Xen no dtuart.
    assert set(rpi) - set(uboot) == {"config.txt enable_uart"}
    assert "pc console" in grub and not {"gic", "xen console", "dma reach"} & set(grub)
    board = boards.load("rpi4")
    t = check.from_parts(board, pi4_dtb, board.ram["4G"], "console=dtuart dtuart=serial1", "")
    everything = {f.check for f in check.run_checks(t)}
    assert everything == set(check.CHECKS) - set(check.PC_CHECKS) == set(rpi)
    as_uboot = {f.check for f in check.run_checks(dataclasses.replace(t, checks=uboot))}
    assert as_uboot == set(uboot) == set(rpi) - {"config.txt enable_uart"}
    with pytest.raises(XenkitError, match="no check named spelling"):
        check.run_checks(dataclasses.replace(t, checks=("spelling",)))


def test_persistence_is_for_live_images() -> None:
    spec = make_spec(board="rpi4", persist="1G")
    with pytest.raises(XenkitError, match="persist is for live images"):
        targets.for_board(spec.board).refuse(spec)
