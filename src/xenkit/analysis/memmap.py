"""`xenkit map`: the machine's address spaces side by side, as SVG/PNG and in the terminal.

Columns: the CPU physical map (RAM, reserved memory, MMIO windows, the GIC), Dom0's
predicted banks, the boot modules, and one column per DMA window showing which CPU range a
bus's masters reach and at which bus address (on the Pi 4: the first GiB, seen at
0xC000_0000). Addresses span from zero to past 4 GiB with tiny and huge ranges side by side,
so the vertical axis is piecewise: each interval between two boundaries gets a height that
grows with the logarithm of its size.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from xenkit.analysis.check import GICV2, Target
from xenkit.core import files
from xenkit.core.sizes import human
from xenkit.errors import XenkitError
from xenkit.formats import dt

COLOURS = {
    "ram": "#8fd694",
    "reserved": "#9e9e9e",
    "mmio": "#90caf9",
    "gic": "#ffb74d",
    "dom0": "#b39ddb",
    "module": "#f48fb1",
    "dma": "#fff59d",
}


@dataclass(frozen=True)
class Region:
    column: str
    start: int
    end: int
    label: str
    kind: str


def regions(t: Target) -> list[Region]:
    cpu = "CPU physical"
    out = [Region(cpu, s, s + n, f"RAM {human(n)}", "ram") for s, n in t.ram]
    out += [
        Region(cpu, a, a + n, f"reserved ({why})", "reserved")
        for a, n, why in t.addresses.reserved()
    ]
    tree = t.devicetree
    for path, _ in tree.nodes():
        if path.count("/") != 1 or path == "/":
            continue
        ranges = t.addresses._mappings(path, "ranges")
        for m in ranges or ():
            out.append(Region(cpu, m.parent, m.parent + m.size, f"{path} {m.child:#x}", "mmio"))
    for path, _ in tree.nodes():
        compat = tree.compatible(path)
        if any(c in GICV2 or c == "arm,gic-v3" for c in compat):
            names = ["GICD", "GICC", "GICH", "GICV"]
            for i, (a, n) in enumerate(t.addresses.device(path).regs):
                out.append(Region(cpu, a, a + n, names[i] if i < 4 else "GIC", "gic"))
    for i, (s, n) in enumerate(t.dom0.banks):
        out.append(Region("Dom0 (predicted)", s, s + n, f"bank {i} {human(n)}", "dom0"))
    for mod in t.modules:
        out.append(Region("boot modules", mod.start, mod.end, mod.kind, "module"))
    buses: dict[tuple[dt.Mapping, ...], list[str]] = {}
    for path, _ in tree.nodes():
        if path != "/" and t.addresses._mappings(path, "dma-ranges"):
            windows = t.addresses.dma_windows(path)
            if windows:
                buses.setdefault(windows, []).append(path)
    for windows, paths in buses.items():
        for w in windows:
            out.append(
                Region(
                    f"DMA {', '.join(paths)}",
                    w.parent,
                    w.parent + w.size,
                    f"bus {w.child:#x}.. = CPU{w.offset:+#x}",
                    "dma",
                )
            )
    return out


def _columns(regs: Sequence[Region]) -> list[str]:
    return list(dict.fromkeys(r.column for r in regs))


class Scale:
    """Piecewise address -> height: each interval between boundaries gets 1 + log2 of its
    size in MiB (at least 1), so a 4 KiB page and a 4 GiB bank are both legible; a hole
    that nothing occupies gets a height of 1 whatever its size."""

    def __init__(self, regs: Sequence[Region]) -> None:
        self.edges = sorted({r.start for r in regs} | {r.end for r in regs})
        self.pos = [0.0]
        for a, b in zip(self.edges, self.edges[1:], strict=False):
            used = any(r.start <= a and b <= r.end for r in regs)
            grow = max(0.0, math.log2(max(b - a, 1) / (1 << 20))) if used else 0.0
            self.pos.append(self.pos[-1] + 1 + grow)

    def __call__(self, addr: int) -> float:
        i = self.edges.index(addr)
        return self.pos[i]


def render_files(t: Target, prefix: Path, drawn: dict[str, bytes] | None = None) -> list[Path]:
    """Write PREFIX.svg and PREFIX.png: `drawn` (as draw() returns it), or drawn now."""
    if not prefix.parent.is_dir():
        raise XenkitError(f"-o {prefix}: {prefix.parent} is not a directory; create it first")
    # Drawn in memory, written both or neither: savefig straight to a full disk left a
    # 0-byte SVG.
    made = {prefix.with_suffix(f".{ext}"): data for ext, data in (drawn or draw(t)).items()}
    files.write_atomically(made)
    return list(made)


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    fill: str
    label: str


@dataclass(frozen=True)
class Picture:
    """The map laid out in pixels, for each format's writer: boxes, the address ticks
    (y, text) on the left, the column titles (x centre, text) on top."""

    width: int
    height: int
    title: str
    columns: tuple[tuple[int, str], ...]
    ticks: tuple[tuple[int, str], ...]
    boxes: tuple[Box, ...]


# Pixels: a column's width, the address axis on the left, the title and headers above, one
# unit of Scale. Chosen so a 4 KiB page's label still reads at 11 px.
COLUMN, AXIS, TOP, UNIT, FONT = 230, 110, 64, 18, 11


def layout(t: Target) -> Picture:
    regs = regions(t)
    cols = _columns(regs)
    scale = Scale(regs)

    def y(addr: int) -> int:
        return TOP + round(scale(addr) * UNIT)

    boxes = []
    for x, col in enumerate(cols):
        mine = [r for r in regs if r.column == col]
        # Overlapping regions in one column (MMIO windows of nested buses) sit side by side.
        lanes: list[list[Region]] = []
        for r in sorted(mine, key=lambda r: (r.start, -r.end)):
            lane = next((ln for ln in lanes if ln[-1].end <= r.start), None)
            if lane is None:
                lanes.append([r])
            else:
                lane.append(r)
        width = (COLUMN - 20) // max(1, len(lanes))
        for li, lane in enumerate(lanes):
            for r in lane:
                left = AXIS + x * COLUMN + 10 + li * width
                boxes.append(
                    Box(left, y(r.start), width, y(r.end) - y(r.start), COLOURS[r.kind], r.label)
                )
    ticks, last = [], -UNIT
    for addr in scale.edges:
        if y(addr) - last >= UNIT:
            ticks.append((y(addr), f"{addr:#011x}"))
            last = y(addr)
    return Picture(
        width=AXIS + len(cols) * COLUMN + 10,
        height=y(scale.edges[-1]) + 20,
        title=f"xenkit map: {t.description}",
        columns=tuple((AXIS + x * COLUMN + COLUMN // 2, c) for x, c in enumerate(cols)),
        ticks=tuple(ticks),
        boxes=tuple(boxes),
    )


def svg(pic: Picture) -> bytes:
    """The picture as SVG: text stays text, so labels can be searched and copied."""

    def text(x: int, y: int, body: str, anchor: str = "middle", size: int = FONT) -> str:
        return (
            f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
            f'dominant-baseline="middle">{escape(body, quote=False)}</text>'
        )

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width}" height="{pic.height}" '
        f'viewBox="0 0 {pic.width} {pic.height}" font-family="sans-serif">',
        f'<rect width="{pic.width}" height="{pic.height}" fill="white"/>',
        text(pic.width // 2, 16, pic.title, size=FONT + 3),
        *(text(x, TOP - 18, c, size=FONT + 1) for x, c in pic.columns),
        *(
            text(AXIS - 6, y, label, "end").replace("<text ", '<text font-family="monospace" ')
            for y, label in pic.ticks
        ),
    ]
    for b in pic.boxes:
        out.append(
            f'<rect x="{b.x}" y="{b.y}" width="{b.w}" height="{b.h}" fill="{b.fill}" '
            'stroke="black" stroke-width="0.6"/>'
        )
        out.append(text(b.x + b.w // 2, b.y + b.h // 2, b.label))
    out.append("</svg>\n")
    return "\n".join(out).encode()


def png(pic: Picture) -> bytes:
    """The picture as PNG, for viewers without SVG."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (pic.width, pic.height), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default()

    def text(x: int, y: int, body: str, anchor: str = "middle") -> None:
        left, top, right, bottom = pen.textbbox((0, 0), body, font=font)
        dx = right - left if anchor == "end" else (right - left) // 2
        pen.text((x - dx - left, y - (bottom - top) // 2 - top), body, fill="black", font=font)

    text(pic.width // 2, 16, pic.title)
    for x, c in pic.columns:
        text(x, TOP - 18, c)
    for y, label in pic.ticks:
        text(AXIS - 6, y, label, "end")
    for b in pic.boxes:
        pen.rectangle((b.x, b.y, b.x + b.w, b.y + max(b.h, 1)), fill=b.fill, outline="black")
        text(b.x + b.w // 2, b.y + b.h // 2, b.label)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def draw(t: Target) -> dict[str, bytes]:
    """The map as SVG and PNG, by extension. Drawn by hand: matplotlib's import and drawing
    took 0.7-1.9 s of each build (measured, Pi 4), this takes milliseconds."""
    pic = layout(t)
    return {"svg": svg(pic), "png": png(pic)}


def render_text(t: Target) -> str:
    """One row per address interval where something changes, one column per address space."""
    regs = regions(t)
    cols = _columns(regs)
    edges = sorted({r.start for r in regs} | {r.end for r in regs})
    rows = []
    for a, b in itertools.pairwise(edges):
        cells = []
        for col in cols:
            here = [r.label for r in regs if r.column == col and r.start <= a and b <= r.end]
            cells.append(" + ".join(here))
        if any(cells):
            rows.append([f"{a:#011x}-{b:#011x}", human(b - a), *cells])
    merged: list[list[str]] = []
    for row in rows:
        if merged and merged[-1][2:] == row[2:]:
            prev = merged[-1]
            start = prev[0].split("-")[0]
            end = row[0].split("-")[1]
            prev[0] = f"{start}-{end}"
            prev[1] = human(int(end, 16) - int(start, 16))
        else:
            merged.append(row)
    header = ["address", "size", *cols]
    widths = [min(38, max(len(str(r[i])) for r in [header, *merged])) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(str(c)[: widths[i]].ljust(widths[i]) for i, c in enumerate(row)).rstrip()

    return "\n".join([f"xenkit map: {t.description}", fmt(header), *map(fmt, merged)])
