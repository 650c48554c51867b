"""Plan where U-Boot loads each boot module.

Rules (those of ImageBuilder's uboot-script-gen, plus the board's own constraints): every
image starts 2 MiB aligned and takes the larger of its file size and the size its Image header
claims; images go in order, upward; nothing overlaps another image or a reserved range;
everything ends below the board's limit (1 GiB on the Pi 4) and below the top of the RAM bank
U-Boot relocated itself to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xenkit.core import spans
from xenkit.core.sizes import MiB, human
from xenkit.core.spans import Reserved
from xenkit.errors import XenkitError

ALIGN = 2 * MiB


@dataclass(frozen=True)
class Item:
    """A file to place in RAM."""

    name: str
    size: int  # bytes the image occupies once loaded (>= file size)
    file_size: int


@dataclass(frozen=True)
class Placement:
    """Where one file was placed."""

    name: str
    addr: int
    size: int
    file_size: int

    @property
    def end(self) -> int:
        return self.addr + self.size


@dataclass(frozen=True)
class Window:
    """A span of RAM files may go in, and what inside it they must avoid."""

    start: int
    end: int
    reserved: tuple[Reserved, ...]


def align_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def window(
    banks: Sequence[tuple[int, int]],
    limit: int,
    top_reserve: int,
    reserved: Sequence[Reserved],
) -> Window:
    """Where loads may go: the first RAM bank, cut at the limit and below U-Boot's area."""
    start, size = banks[0]
    end = min(start + size - top_reserve, limit)
    return Window(start, end, tuple(sorted(reserved, key=lambda r: r.start)))


def plan(items: Sequence[Item], win: Window, fix: str = "") -> list[Placement]:
    """Place items in order; `fix` is the advice given when they do not fit."""
    placed: list[Placement] = []
    cursor = win.start
    for item in items:
        addr = align_up(cursor)
        moved = True
        while moved:
            moved = False
            for r in win.reserved:
                if spans.meet(addr, addr + item.size, r.start, r.end):
                    addr = align_up(r.end)
                    moved = True
        if addr + item.size > win.end:
            need = sum(i.size for i in items)
            raise XenkitError(
                f"boot modules do not fit: {item.name} ({human(item.size)}) would end at "
                f"{addr + item.size:#x}, past {win.end:#x}; all modules need {human(need)} "
                f"in {win.start:#x}-{win.end:#x}. "
                + (fix or "Use smaller images or a board with more low memory")
            )
        placed.append(Placement(item.name, addr, item.size, item.file_size))
        cursor = addr + item.size
    return placed
