from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.formats import dt


def _dts(blob: bytes, tmp: Path) -> str:
    path = tmp / "t.dtb"
    path.write_bytes(blob)
    return subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _node(dts: str, name: str) -> str:
    start = dts.index(f"\t{name} {{")
    return dts[start : dts.index("\n\t\t};", start)]


@pytest.mark.debian  # a fact about Debian's DTB, which tests/data/bcm2711-rpi-4-b.dts models
def test_console_resolves_to_the_mini_uart_xen_drives(rpi4_dtb: Path) -> None:
    tree = dt.DeviceTree.load(rpi4_dtb)
    assert dt.console_uart(tree, "serial1") == ("/soc/serial@7e215040", "ns16550")
    assert dt.console_uart(tree, "serial0") == ("/soc/serial@7e201000", "pl011")
    assert tree.string("/chosen", "stdout-path") == "serial1:115200n8"
    assert tree.mem_reserve() == [(0, 0x1000)]


def test_a_console_that_is_not_a_uart_is_refused(pi4_dtb: Path) -> None:
    tree = dt.DeviceTree.load(pi4_dtb)
    with pytest.raises(XenkitError, match="not a UART Xen drives"):
        dt.console_uart(tree, "/soc/mmc@7e300000")
    with pytest.raises(XenkitError, match="neither a node nor an alias"):
        dt.console_uart(tree, "serial7")


def test_emulation_edits_read_back_with_dtc(pi4_dtb: Path, tmp_path: Path) -> None:
    tree = dt.DeviceTree.load(pi4_dtb)
    disabled = tree.disable_compatible(boards.load("rpi4").emulate.disable)
    assert "/scb/ethernet@7d580000" in disabled
    assert "/soc/interrupt-controller@7ef00100" in disabled
    tree.set_string("/chosen", "xen,xen-bootargs", "console=dtuart dtuart=serial1")
    dts = _dts(tree.to_bytes(), tmp_path)
    assert 'status = "disabled";' in _node(dts, "ethernet@7d580000")
    assert 'status = "disabled";' in _node(dts, "interrupt-controller@7ef00100")
    assert 'status = "disabled";' not in _node(dts, "serial@7e215040")
    assert 'xen,xen-bootargs = "console=dtuart dtuart=serial1";' in dts


def test_the_original_dtb_is_untouched_by_edits_on_a_copy(pi4_dtb: Path) -> None:
    before = pi4_dtb.read_bytes()
    tree = dt.DeviceTree(before)
    tree.disable_compatible(["brcm,bcm2711-genet-v5"])
    assert pi4_dtb.read_bytes() == before
    assert dt.DeviceTree(before).enabled("/scb/ethernet@7d580000")


@pytest.mark.parametrize("blob", [b"", b"not a dtb", b"\xd0\x0d\xfe\xed" + b"\0" * 12])
def test_invalid_dtbs_give_one_line_errors(blob: bytes) -> None:
    with pytest.raises(XenkitError, match="not a valid device tree blob") as err:
        dt.DeviceTree(blob, "bad.dtb")
    assert "\n" not in str(err.value)


def test_truncated_real_dtb_is_refused(pi4_dtb: Path) -> None:
    with pytest.raises(XenkitError, match="not a valid device tree"):
        dt.DeviceTree(pi4_dtb.read_bytes()[:1000])


def test_node_paths_follow_every_edit(pi4_dtb: Path) -> None:
    """nodes() and offset() answer from an index of paths, which an edit must not leave stale:
    a property that grows moves every node after it."""
    tree = dt.DeviceTree.load(pi4_dtb)
    fresh = dict(dt.DeviceTree.load(pi4_dtb).nodes())
    paths = list(fresh)
    assert paths[0] == "/" and len(paths) == len(set(paths)) > 20
    first, last = paths[1], paths[-1]
    tree.set_bytes(first, "xenkit,pad", b"x" * 4096)  # every later node moves by 4 KiB
    tree.add_node("/", "xenkit-test")
    assert "/xenkit-test" in dict(tree.nodes())
    assert tree.prop(first, "xenkit,pad") == b"x" * 4096
    assert tree.offset(last) == dict(tree.nodes())[last] != fresh[last]
    assert tree.compatible(last) == dt.DeviceTree.load(pi4_dtb).compatible(last)
    tree.delete_prop(first, "xenkit,pad")
    assert tree.prop(first, "xenkit,pad") is None
    assert tree.compatible(last) == dt.DeviceTree.load(pi4_dtb).compatible(last)
