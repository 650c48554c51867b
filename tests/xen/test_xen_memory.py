"""The Dom0 memory model against the real thing: Xen's own BANK[n] lines."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit.analysis import check
from xenkit.config import boards, releases
from xenkit.core.sizes import MiB
from xenkit.pipeline import build
from xenkit.run import emulate
from xenkit.xen import memory
from xenkit.xen.heap import Heap, order_for

RPI_MODULES = [
    memory.Module("xen", 0x200000, 0x1360C8),
    memory.Module("kernel", 0x400000, 0xAC09A1),
    memory.Module("ramdisk", 0x1000000, 0xF1322),
    memory.Module("fdt", 0x1200000, 0x70000),
]


def test_buddy_split_keeps_the_top_part() -> None:
    heap = Heap()
    heap.init_pages(0x10000, 0x20000)  # one 256 MiB chunk
    mfn = heap.alloc(order_for(64 * MiB))
    assert mfn is not None and mfn * 4096 == 0x1C000000
    # The lower halves went back: the next 64 MiB comes from the 128 MiB piece, top part.
    assert heap.alloc(order_for(64 * MiB)) == 0x18000000 // 4096


def test_zone_limit_keeps_allocations_low() -> None:
    heap = Heap()
    heap.init_pages(0x1, 0x80000)  # 4 KiB .. 2 GiB
    assert heap.alloc(order_for(256 * MiB), bits=30) == 0x30000000 // 4096
    assert heap.alloc(order_for(256 * MiB)) == 0x70000000 // 4096


def test_boot_regions_skip_modules_and_memreserve() -> None:
    regions = memory.boot_regions([(0, 0x3C000000)], RPI_MODULES, [(0, 0x1000)])
    pages = [(s * 4096, e * 4096) for s, e in regions]
    assert pages[0] == (0x1000, 0x200000)
    assert (0x337000, 0x400000) in pages  # Xen ends at 0x3360c8, rounded up to a page
    assert pages[-1] == (0x1270000, 0x3C000000)


def test_known_pi4_run_is_reproduced() -> None:
    # QEMU raspi4b, dom0_mem=512M, Debian's 6.1 kernel gzip'd (31.4 MiB inflated).
    d = memory.predict([(0, 0x3C000000)], RPI_MODULES, [(0, 0x1000)], 512 * MiB, 30, 32956352)
    assert d.bank_lines() == ["BANK[0] 0x00000010000000-0x00000030000000 (512MB)"]
    assert d.kernel_buffer == (0x38000000, 32 * MiB)


def test_xen_413_style_lowmem_lets_bank_0_land_high() -> None:
    # Before 4.14 the cap was 32 bits: on a 4 GiB Pi, bank 0 goes above the 1 GiB DMA limit.
    ram = [(0, 0x3B400000), (0x40000000, 0xBC000000)]
    old = memory.predict(ram, RPI_MODULES, [(0, 0x1000)], 512 * MiB, 32, 32956352)
    new = memory.predict(ram, RPI_MODULES, [(0, 0x1000)], 512 * MiB, 30, 32956352)
    assert old.banks[0][0] >= 1 << 30
    assert all(s + n <= 1 << 30 for s, n in new.banks)


def test_too_much_dom0_memory_cannot_be_mapped() -> None:
    d = memory.predict([(0, 0x3C000000)], RPI_MODULES, [(0, 0x1000)], 896 * MiB, 30, 32956352)
    assert not d.complete and d.allocated < 896 * MiB


def _banks_from_console(text: str) -> list[str]:
    return re.findall(r"\(XEN\) (BANK\[\d+\] 0x[0-9a-f]+-0x[0-9a-f]+ \(\d+MB\))", text)


DOM0_PLACED = "(XEN) Loading d0 DTB to"

# Each case builds, boots, and compares Xen's printed banks with the prediction made from
# the build. Where the model is unambiguous they must be equal; the 384M cases depend on how
# far idle scrubbing got (the model says so), and Xen's banks must be one of its outcomes.
# Every case on both releases: Xen 4.20's allocate_memory_11 reads as 4.17's; the boots are
# what says so.
CASES = [
    (board, ram, dom0_mem, exact, debian)
    for debian in ("bookworm", "trixie")
    for board, ram, dom0_mem, exact in (
        ("rpi4", "4G", "256M", True),
        ("rpi4", "4G", "768M", True),
        ("qemu-virt", "1G", "512M", True),
        ("qemu-virt", "4G", "2G", True),
        ("rpi4", "4G", "384M", False),
        ("qemu-virt", "2G", "384M", False),
    )
]


@dataclasses.dataclass(frozen=True)
class Booted:
    out: Path
    result: emulate.CheckResult
    console: str


def boot(work: Path, board: str, ram: str, dom0_mem: str, debian: str) -> Booted:
    """One case built and booted until Xen has placed Dom0: the banks are settled once Xen
    loads Dom0's DTB (Dom0's own boot is tested elsewhere). One case a test: a module
    fixture that booted them all, two at a time, ran on both of CI's workers, since xdist
    hands a module's tests to either, so every case was built and booted twice (170 s of
    each worker)."""
    out = work / "out"
    build.build(make_spec(board=board, ram=ram, dom0_mem=dom0_mem, debian=debian), out)
    plan = emulate.prepare(boards.load(board), ram, out, work / "run")
    result = emulate.check(plan, 300, None, [DOM0_PLACED])
    return Booted(out, result, plan.console_log.read_text(errors="replace"))


@pytest.mark.qemu
@pytest.mark.parametrize(("board", "ram", "dom0_mem", "exact", "debian"), CASES)
def test_prediction_equals_xens_banks(
    board: str,
    ram: str,
    dom0_mem: str,
    exact: bool,
    debian: str,
    tmp_path: Path,
) -> None:
    b = boot(tmp_path, board, ram, dom0_mem, debian)
    out, result, console = b.out, b.result, b.console
    # The Xen that booted is the release's (its banner names the version).
    assert f"Xen version {releases.get(debian).xen}." in console
    predicted = check.from_build(out, emulated=True).dom0
    assert predicted.complete
    assert exact == (not predicted.alternatives)
    assert result.ok, result.reason + "\n" + console[-3000:]
    # The DTB module size the model assumes is the one U-Boot reports.
    fdt = next(m for m in predicted_modules(out) if m.kind == "fdt")
    assert f"Using Device Tree in place at {fdt.start:016x}, end {fdt.end - 1:016x}" in console
    seen = _banks_from_console(console)
    if exact:
        assert seen == predicted.bank_lines()
    else:
        outcomes = [predicted.bank_lines()]
        outcomes += [
            dataclasses.replace(predicted, banks=b).bank_lines() for b in predicted.alternatives
        ]
        assert seen in outcomes


def predicted_modules(out: Path) -> tuple[memory.Module, ...]:
    return check.from_build(out, emulated=True).modules
