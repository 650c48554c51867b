"""Address ranges: how much two share, whether one sits inside RAM, which of a set collide.
The load planner, the boot script's dry run and `xenkit check` all ask these questions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Span = tuple[int, int, str]  # (start, end, what), end exclusive


@dataclass(frozen=True)
class Reserved:
    """A range nothing may be loaded into, and why (firmware, the emulator's DTB)."""

    start: int
    size: int
    why: str

    @property
    def end(self) -> int:
        return self.start + self.size


def common(a0: int, a1: int, b0: int, b1: int) -> int:
    """Bytes [a0, a1) and [b0, b1) share."""
    return max(0, min(a1, b1) - max(a0, b0))


def meet(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def inside(start: int, end: int, banks: Iterable[tuple[int, int]]) -> bool:
    """Whether [start, end) lies within one of the (start, size) banks."""
    return any(s <= start and end <= s + n for s, n in banks)


def collisions(checked: Sequence[Span], others: Sequence[Span] = ()) -> list[str]:
    """Each collision of a `checked` span with a later checked one or with any of `others`,
    as "WHAT a-b overlaps WHAT c-d"."""
    found = []
    for i, (a0, a1, an) in enumerate(checked):
        for b0, b1, bn in [*checked[i + 1 :], *others]:
            if meet(a0, a1, b0, b1):
                found.append(f"{an} {a0:#x}-{a1:#x} overlaps {bn} {b0:#x}-{b1:#x}")
    return found
