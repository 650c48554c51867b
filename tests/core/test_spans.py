from __future__ import annotations

from xenkit.core import spans


def test_common_and_meet_treat_ends_as_exclusive() -> None:
    assert spans.common(0, 10, 5, 20) == 5
    assert spans.common(0, 10, 10, 20) == 0 and not spans.meet(0, 10, 10, 20)
    assert spans.meet(0, 10, 9, 20)


def test_inside_needs_one_bank_to_hold_it_all() -> None:
    banks = [(0, 0x1000), (0x1000, 0x1000)]
    assert spans.inside(0x100, 0x200, banks)
    assert not spans.inside(0xF00, 0x1100, banks)  # across two banks


def test_collisions_name_both_sides_once() -> None:
    checked = [(0, 10, "kernel"), (5, 15, "ramdisk"), (20, 30, "dtb")]
    others = [(25, 26, "reserved memory")]
    assert spans.collisions(checked, others) == [
        "kernel 0x0-0xa overlaps ramdisk 0x5-0xf",
        "dtb 0x14-0x1e overlaps reserved memory 0x19-0x1a",
    ]
