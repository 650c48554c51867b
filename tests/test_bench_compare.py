"""The uboot-script benchmark's verdict on two scripts: same meaning, not same addresses."""

from __future__ import annotations

from types import ModuleType

from tests.scripts import load


def bench() -> ModuleType:
    return load("benchmarks", "uboot_script")


def test_moved_modules_mean_the_same_and_other_files_do_not() -> None:
    b = bench()
    key = ("/chosen", "multiboot,kernel")
    ours = {key: b.Module(0x40400000, 0x2010000, "Image", 0x1F6DFC0)}
    # File-sized reg, elsewhere: the same meaning, one module moved.
    theirs = {key: b.Module(0x40600000, 0x1F6DFC0, "Image", 0x1F6DFC0)}
    assert b.differences(ours, theirs) == [] and b.moved(ours, theirs) == 1
    # Another file, or a reg that cuts the file short, or a module missing: different.
    for other in (
        {key: b.Module(0x40600000, 0x1F6DFC0, "xen", 0x1F6DFC0)},
        {key: b.Module(0x40600000, 0x100000, "Image", 0x1F6DFC0)},
        {},
    ):
        assert len(b.differences(ours, other)) == 1
