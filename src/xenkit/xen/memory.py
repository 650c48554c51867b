"""Predict the banks Xen on Arm gives a direct-mapped Dom0 (allocate_memory_11, Xen 4.17).

The prediction replays what Xen does between power-on and Dom0's memory (xen/arch/arm/
setup.c, domain_build.c, kernel.c; xen/common/page_alloc.c), with the same inputs:
1. the boot allocator gets RAM minus boot modules, /memreserve/ and /reserved-memory
   (populate_boot_allocator, next_module, dt_unreserved_regions), page-rounded outward;
2. it hands out the directmap page tables and the frame table from the top of RAM;
3. end_boot_allocator frees the lowest region, then the others from the top down, into the
   buddy heap, all of it dirty;
4. a few MiB of small allocations (stacks, the domain, the p2m root) come from the top;
5. a gzip'd Dom0 kernel is inflated into a buffer from the highest zone, and the compressed
   module is freed;
6. allocate_memory_11: bank 0 as large as possible from the lowest zone that has a chunk of
   that size below 2^lowmem_bits, then the rest from the highest zone down, with
   insert_11_bank's merging rules.

Where it is approximate, `Dom0Memory.notes` says so. The largest unknown is idle scrubbing:
other CPUs clean free memory while Dom0 is built, and a clean chunk is preferred over a dirty
one; the prediction is computed for the likely states and flagged when they disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xenkit.core.sizes import MiB
from xenkit.xen.heap import PAGE_SHIFT, Heap, order_for

PAGE = 1 << PAGE_SHIFT
NR_MEM_BANKS = 256  # NR_MEM_BANKS in 4.17's asm/setup.h
PAGE_INFO_SIZE = 56  # sizeof(struct page_info) on arm64
SMALL_ALLOCATIONS = 600  # order-0 pages: stacks, per-CPU data, the domain, vCPUs, p2m tables
MIN_BANK0 = 128 * MiB
MIN_BANK = 4 * MiB


@dataclass(frozen=True)
class Module:
    kind: str  # xen, fdt, kernel, ramdisk, ...
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Dom0Memory:
    banks: tuple[tuple[int, int], ...]  # (start, size), in the order Xen prints BANK[n]
    requested: int
    lowmem_bits: int
    kernel_buffer: tuple[int, int] | None  # where the gzip'd kernel was inflated
    alternatives: tuple[tuple[tuple[int, int], ...], ...]  # other outcomes, by scrub state
    notes: tuple[str, ...]

    @property
    def allocated(self) -> int:
        return sum(size for _, size in self.banks)

    @property
    def complete(self) -> bool:
        return self.allocated == self.requested

    def bank_lines(self) -> list[str]:
        """The lines Xen prints, for comparison with a console log."""
        return [
            f"BANK[{i}] {s:#016x}-{s + n:#016x} ({n >> 20}MB)"
            for i, (s, n) in enumerate(self.banks)
        ]


def lowmem_bits(platform_dma_bitsize: int, xen_major: int, xen_minor: int) -> int:
    """min(32, the platform's dma_bitsize); Xen before 4.14 had no per-platform value."""
    if platform_dma_bitsize and (xen_major, xen_minor) >= (4, 14):
        return min(32, platform_dma_bitsize)
    return 32


# -- 1. the boot allocator --------------------------------------------------------------------
def _next_module(modules: Sequence[Module], s: int, end: int) -> tuple[int, int]:
    """setup.c next_module(): the lowest module starting at or after s, and where the free
    range before it may end. Kept quirk for quirk (modules starting below s are ignored)."""
    lowest = (1 << 64) - 1
    for m in modules:
        if not m.size or m.start < s or m.start > lowest or m.start > end:
            continue
        lowest = m.start
        end = min(end, m.end)
    return lowest, end


def _unreserved(
    s: int, e: int, reserved: Sequence[tuple[int, int]], first: int, out: list[tuple[int, int]]
) -> None:
    """dt_unreserved_regions(): [s, e) minus reserved ranges, upper piece first."""
    for i in range(first, len(reserved)):
        r_s, r_size = reserved[i]
        r_e = r_s + r_size
        if s < r_e and r_s < e:
            _unreserved(r_e, e, reserved, i + 1, out)
            _unreserved(s, r_s, reserved, i + 1, out)
            return
    out.append((s, e))


def boot_regions(
    ram: Sequence[tuple[int, int]], modules: Sequence[Module], reserved: Sequence[tuple[int, int]]
) -> list[list[int]]:
    """populate_boot_allocator(): free frame ranges [s, e), sorted."""
    pieces: list[tuple[int, int]] = []
    for start, size in sorted(ram):
        bank_end = start + size
        s = start
        while s < bank_end:
            e, n = _next_module(modules, s, bank_end)
            if e == (1 << 64) - 1:
                e = n = bank_end
            e = min(e, bank_end)
            _unreserved(s, e, reserved, 0, pieces)
            s = n
    regions = []
    for s, e in pieces:
        ps, pe = -(-s // PAGE), e // PAGE
        if ps < pe:
            regions.append([ps, pe])
    return sorted(regions)


def _alloc_boot(regions: list[list[int]], nr: int, align: int) -> int:
    """alloc_boot_pages(): the top of the highest region that fits, aligned down."""
    for i in range(len(regions) - 1, -1, -1):
        s, e = regions[i]
        pg = (e - nr) & ~(align - 1)
        if pg >= e or pg < s:
            continue
        regions[i][1] = pg
        if pg + nr < e:
            regions.append([pg + nr, e])
            regions.sort()
        return pg
    raise ValueError("boot allocator exhausted")


def _directmap_tables(ram: Sequence[tuple[int, int]]) -> int:
    """Page-table pages setup_directmap_mappings() needs: an L1, an L2 per GiB not mapped
    by a 1 GiB block, an L3 per 2 MiB not mapped by a 2 MiB block."""
    tables = 1
    for start, size in ram:
        end = start + size
        gib, two_mib = 1 << 30, 2 * MiB
        for g in range(start // gib * gib, end, gib):
            if not (start <= g and g + gib <= end):
                tables += 1
        for edge in (start, end):
            if edge % two_mib:
                tables += 1
    return tables


def _boot_allocations(regions: list[list[int]], ram: Sequence[tuple[int, int]]) -> None:
    """arm64 setup_mm(): directmap tables, then the frame table (32 MiB aligned)."""
    for _ in range(_directmap_tables(ram)):
        _alloc_boot(regions, 1, 1)
    first = min(s for s, _ in ram)
    last = max(s + n for s, n in ram)
    size = ((last - first) >> PAGE_SHIFT) * PAGE_INFO_SIZE
    granule = 2 * MiB if size < 32 * MiB else 32 * MiB
    size = -(-size // granule) * granule
    _alloc_boot(regions, size // PAGE, (32 * MiB) // PAGE)
    _alloc_boot(regions, 1, 1)


def _end_boot_allocator(regions: list[list[int]]) -> Heap:
    heap = Heap()
    live = [r for r in regions if r[0] < r[1]]
    if live:
        first = live[0]
        heap.init_pages(first[0], first[1])
        for s, e in reversed(live[1:]):
            heap.init_pages(s, e)
    return heap


# -- 5. the Dom0 kernel -----------------------------------------------------------------------
def _inflate_kernel(
    heap: Heap, kernel: Module, isize: int, reserved: Sequence[tuple[int, int]]
) -> tuple[int, int] | None:
    """kernel_decompress(): a buffer of 2^order pages for the inflated image, the unused
    tail freed page by page, then the compressed module given back to the heap."""
    order = order_for(isize)
    mfn = heap.alloc(order)
    if mfn is None:
        return None
    used = -(-isize // PAGE)
    for page in range(mfn + used, mfn + (1 << order)):
        heap.free_pages(page, 0, True)
    pieces: list[tuple[int, int]] = []
    _unreserved(kernel.start, kernel.end, reserved, 0, pieces)
    for s, e in pieces:
        heap.init_pages(-(-s // PAGE), e // PAGE)
    return mfn * PAGE, (1 << order) * PAGE


# -- 6. allocate_memory_11 --------------------------------------------------------------------
def _insert_bank(banks: list[list[int]], heap: Heap, start: int, size: int) -> bool:
    if banks and size < MIN_BANK0 and start + size < banks[0][0]:
        heap.free_pages(start // PAGE, order_for(size), False)
        return False
    heap.alloc(0)  # a p2m table page for the new mapping
    for i, bank in enumerate(banks):
        if bank[0] == start + size:
            bank[0] = start
            bank[1] += size
            return True
        if start == bank[0] + bank[1]:
            bank[1] += size
            return True
        if start + size < bank[0]:
            banks.insert(i, [start, size])
            return True
    banks.append([start, size])
    return True


def _allocation_order(size: int) -> int:
    return order_for(size + 1) - 1


def _allocate_11(heap: Heap, dom0_mem: int, bits_cap: int) -> list[list[int]]:
    banks: list[list[int]] = []
    left = dom0_mem
    min_low_order = order_for(min(dom0_mem, MIN_BANK0))
    min_order = order_for(MIN_BANK)
    order = _allocation_order(left)
    lowmem = False
    while order >= min_low_order and not banks:
        for bits in range(order, bits_cap + 1):
            mfn = heap.alloc(order, bits)
            if mfn is not None:
                _insert_bank(banks, heap, mfn * PAGE, PAGE << order)
                left -= PAGE << order
                lowmem = True
                break
        else:
            order -= 1
    order = _allocation_order(left)
    while left and len(banks) < NR_MEM_BANKS:
        mfn = heap.alloc(order, bits_cap if lowmem else 0)
        if mfn is None:
            order -= 1
            if lowmem and order < min_low_order:
                order, lowmem = _allocation_order(left), False
                continue
            if order >= min_order:
                continue
            break
        if not _insert_bank(banks, heap, mfn * PAGE, PAGE << order):
            if len(banks) == NR_MEM_BANKS:
                break
            if lowmem:
                order, lowmem = _allocation_order(left), False
                continue
            break
        left -= PAGE << order
        order = _allocation_order(left)
    return banks


# -- putting it together ----------------------------------------------------------------------
def _heap_before_kernel(
    ram: Sequence[tuple[int, int]], modules: Sequence[Module], reserved: Sequence[tuple[int, int]]
) -> Heap:
    regions = boot_regions(ram, modules, reserved)
    _boot_allocations(regions, ram)
    heap = _end_boot_allocator(regions)
    for _ in range(SMALL_ALLOCATIONS):
        heap.alloc(0, no_scrub=True)
    heap.alloc(0)  # the p2m root (order 0 with the 44-bit PA of a Cortex-A72)
    return heap


def _below_top(heap: Heap) -> int:
    return max((z for z, n in heap.avail.items() if n), default=1) - 1


Banks = tuple[tuple[int, int], ...]


def _banks(heap: Heap, dom0_mem: int, bits: int) -> Banks:
    return tuple((s, n) for s, n in _allocate_11(heap.copy(), dom0_mem, bits))


def predict(
    ram: Sequence[tuple[int, int]],
    modules: Sequence[Module],
    reserved: Sequence[tuple[int, int]],
    dom0_mem: int,
    lowmem: int,
    kernel_isize: int | None = None,
) -> Dom0Memory:
    """ram: (start, size) banks; modules: what Xen registers (its own image sized by the
    Image header, the DTB by its totalsize, the /chosen modules); reserved: /memreserve/
    then /reserved-memory entries as (start, size); kernel_isize: the uncompressed size of
    a gzip'd Dom0 kernel (its last four bytes), None for a plain Image.

    Idle CPUs scrub free memory (zone by zone from the bottom) while Dom0 is built, and Xen
    prefers clean chunks, so the outcome can depend on how far they got. The prediction is
    the state measured under QEMU on both boards: nothing clean yet when the kernel buffer
    is taken, every zone but the top one clean when Dom0's memory is. Every other progress
    point is replayed too; outcomes that differ are listed as alternatives.
    """
    base = _heap_before_kernel(ram, modules, reserved)
    kernel = next((m for m in modules if m.kind == "kernel"), None)

    def inflate(heap: Heap) -> tuple[int, int] | None:
        if kernel is None or not kernel_isize:
            return None
        return _inflate_kernel(heap, kernel, kernel_isize, reserved)

    heap = base.copy()
    buffer = inflate(heap)
    likely = heap.copy()
    likely.scrub(_below_top(likely))
    first = _banks(likely, dom0_mem, lowmem)
    outcomes = [_banks(heap, dom0_mem, lowmem)]
    for _ in heap.scrub_steps():
        outcomes.append(_banks(heap, dom0_mem, lowmem))
    early = base.copy()
    early.scrub()
    inflate(early)
    outcomes.append(_banks(early, dom0_mem, lowmem))
    others = tuple(dict.fromkeys(o for o in outcomes if o != first))
    notes = [
        "small allocations before Dom0 are estimated (about 2.3 MiB of single pages)",
        "the frame table is sized without PDX compression",
    ]
    if others:
        notes.append("the result depends on how far idle CPUs have scrubbed free memory")
    if sum(n for _, n in first) < dom0_mem:
        notes.append("Xen cannot allocate all of dom0_mem 1:1 and panics")
    return Dom0Memory(first, dom0_mem, lowmem, buffer, others, tuple(notes))
