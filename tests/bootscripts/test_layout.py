from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenkit.bootscripts import layout
from xenkit.core.sizes import MiB
from xenkit.core.spans import Reserved
from xenkit.errors import XenkitError

RPI_RESERVED = (
    Reserved(0, 2 * MiB, "firmware"),
    Reserved(0x2400000, 2 * MiB, "script"),
    Reserved(0x8000000, 2 * MiB, "qemu dtb"),
)


def _win(size: int = 0x3C000000) -> layout.Window:
    return layout.window([(0, size)], 0x40000000, 64 * MiB, RPI_RESERVED)


def test_images_are_aligned_in_order_and_skip_reserved_ranges() -> None:
    items = [
        layout.Item("xen", 1300000, 983048),
        layout.Item("kernel", 40 * MiB, 40 * MiB),
        layout.Item("ramdisk", MiB, MiB),
    ]
    placed = layout.plan(items, _win())
    assert [p.name for p in placed] == ["xen", "kernel", "ramdisk"]
    assert placed[0].addr == 0x200000
    # 40 MiB from 0x400000 would cross boot.scr at 0x2400000: it goes after it.
    assert placed[1].addr == 0x2600000
    assert placed[2].addr == 0x2600000 + 40 * MiB


def test_a_plan_that_does_not_fit_names_the_sizes() -> None:
    with pytest.raises(XenkitError) as err:
        layout.plan([layout.Item("kernel", 1000 * MiB, 1000 * MiB)], _win())
    msg = str(err.value)
    assert "kernel (1000.0 MiB)" in msg
    assert "0x38000000" in msg  # the window's end: top of bank minus U-Boot's area


def _largest_gap(win: layout.Window) -> int:
    gaps, cursor = [], win.start
    for r in sorted(win.reserved, key=lambda r: r.start):
        gaps.append(min(r.start, win.end) - layout.align_up(cursor))
        cursor = max(cursor, r.end)
    gaps.append(win.end - layout.align_up(cursor))
    return max(gaps)


sizes = st.integers(min_value=1, max_value=200 * MiB)


@given(
    st.lists(sizes, min_size=1, max_size=8), st.sampled_from([0x3B400000, 0x3C000000, 0x10000000])
)
def test_random_plans_are_aligned_disjoint_and_inside(sizes_: list[int], bank: int) -> None:
    items = [layout.Item(f"m{i}", s, s) for i, s in enumerate(sizes_)]
    win = _win(bank)
    try:
        placed = layout.plan(items, win)
    except XenkitError:
        # In-order placement can only fail if the images, together, do not fit in the
        # largest free gap (otherwise every image finds room in or before that gap).
        assert sum(layout.align_up(s) for s in sizes_) > _largest_gap(win)
        return
    spans = sorted((p.addr, p.end) for p in placed)
    for (_a0, a1), (b0, _) in itertools.pairwise(spans):
        assert a1 <= b0
    for p in placed:
        assert p.addr % layout.ALIGN == 0
        assert win.start <= p.addr and p.end <= win.end
        for r in RPI_RESERVED:
            assert p.end <= r.start or p.addr >= r.end, (p, r)
