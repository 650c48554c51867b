from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.analysis.test_check import _target
from xenkit.analysis import memmap
from xenkit.core.sizes import human
from xenkit.errors import XenkitError


def test_regions_cover_every_address_space(pi4_dtb: Path) -> None:
    regs = memmap.regions(_target(pi4_dtb))
    cols = {r.column for r in regs}
    assert {
        "CPU physical",
        "Dom0 (predicted)",
        "boot modules",
        "DMA /soc, /emmc2bus",
        "DMA /scb/pcie@7d500000",
    } <= cols
    dma = next(r for r in regs if r.column == "DMA /soc, /emmc2bus")
    assert (dma.start, dma.end) == (0, 1 << 30) and "bus 0xc0000000" in dma.label
    gic = {r.label: r.start for r in regs if r.kind == "gic"}
    assert gic["GICH"] == 0xFF844000


def test_terminal_rendering_shows_dom0_inside_the_dma_window(pi4_dtb: Path) -> None:
    text = memmap.render_text(_target(pi4_dtb))
    row = next(line for line in text.splitlines() if "bank 0" in line)
    assert "bus 0xc0000000.. = CPU+0xc0000000" in row
    assert text.splitlines()[1].split()[:2] == ["address", "size"]


def test_svg_and_png_are_written(pi4_dtb: Path, tmp_path: Path) -> None:
    target = _target(pi4_dtb)
    svg, png = memmap.render_files(target, tmp_path / "map")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    labels = [e.text for e in root.iter() if e.tag.endswith("text")]
    banks = [f"bank {i} {human(n)}" for i, (_, n) in enumerate(target.dom0.banks)]
    assert banks and set(banks) <= set(labels), labels
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each region is a box at its place on the scale: Dom0's banks below the DMA window's end.
    boxes = {e.get("y"): e for e in root.iter() if e.tag.endswith("rect")}
    assert len(boxes) > len(banks)


def test_a_map_that_does_not_fit_leaves_no_empty_picture(pi4_dtb: Path, full_dir: Path) -> None:
    """savefig onto a full disk left a 0-byte map.svg and an OSError (exit 3)."""
    with pytest.raises(XenkitError, match="its filesystem is full"):
        memmap.render_files(_target(pi4_dtb), full_dir / "map")
    assert list(full_dir.iterdir()) == []
