"""Xen's buddy allocator (xen/common/page_alloc.c, 4.17), as far as it decides where large
allocations land: zones, free lists with their order, splitting and merging.

Zone z holds page frames whose highest set bit is z (flsl(mfn)), i.e. addresses
[2^(z+11), 2^(z+12)). A search runs from the highest allowed zone down, takes the smallest
order that fits, the head of that list, and when it splits a chunk keeps the top part.
Chunks freed at boot are "dirty" (scrubbed later, when idle) and join the tail of their list;
clean chunks join the head. A search without MEMF_no_scrub prefers clean chunks and rotates
lists whose head is dirty.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

PAGE_SHIFT = 12
MAX_ORDER = 18  # CONFIG_PAGEALLOC_MAX_ORDER on Arm: 1 GiB chunks
NR_ZONES = 40 + 1


def zone_of(mfn: int) -> int:
    return mfn.bit_length()


def bits_to_zone(bits: int) -> int:
    return 1 if bits < PAGE_SHIFT + 1 else bits - PAGE_SHIFT


def order_for(nbytes: int) -> int:
    """get_order_from_bytes: the smallest order whose chunk holds nbytes."""
    return ((max(nbytes, 1) - 1) >> PAGE_SHIFT).bit_length()


@dataclass
class Heap:
    lists: dict[tuple[int, int], deque[int]] = field(default_factory=lambda: defaultdict(deque))
    free: dict[int, tuple[int, bool]] = field(default_factory=dict)  # head mfn -> (order, dirty)
    avail: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    # -- list handling ----------------------------------------------------------------------
    def _add(self, mfn: int, order: int, dirty: bool) -> None:
        key = (zone_of(mfn), order)
        if dirty:
            self.lists[key].append(mfn)
        else:
            self.lists[key].appendleft(mfn)
        self.free[mfn] = (order, dirty)
        self.avail[zone_of(mfn)] += 1 << order

    def _take(self, mfn: int) -> tuple[int, bool]:
        order, dirty = self.free.pop(mfn)
        self.lists[(zone_of(mfn), order)].remove(mfn)
        self.avail[zone_of(mfn)] -= 1 << order
        return order, dirty

    # -- freeing ----------------------------------------------------------------------------
    def free_pages(self, mfn: int, order: int, dirty: bool) -> None:
        """free_heap_pages: merge with free buddies of the same order, then list it."""
        while order < MAX_ORDER:
            buddy = mfn ^ (1 << order)
            found = self.free.get(buddy)
            if found is None or found[0] != order or buddy == 0:
                break
            _, buddy_dirty = self._take(buddy)
            dirty = dirty or buddy_dirty
            mfn = min(mfn, buddy)
            order += 1
        self._add(mfn, order, dirty)

    def init_pages(self, start: int, end: int, dirty: bool = True) -> None:
        """init_heap_pages for frames [start, end): greedy aligned chunks, low to high.
        Frame 0 never enters the heap, so chunks never cross a zone boundary."""
        s = max(start, 1)
        while s < end:
            order = min(MAX_ORDER, (end - s).bit_length() - 1, (s & -s).bit_length() - 1)
            self.free_pages(s, order, dirty)
            s += 1 << order

    # -- allocation -------------------------------------------------------------------------
    def _find(self, zone_hi: int, order: int, use_dirty: bool) -> tuple[int, int] | None:
        """get_free_buddy."""
        for zone in range(zone_hi, 0, -1):
            if self.avail[zone] < 1 << order:
                continue
            for j in range(order, MAX_ORDER + 1):
                queue = self.lists.get((zone, j))
                if not queue:
                    continue
                mfn = queue[0]
                if not self.free[mfn][1] or order == 0 or use_dirty:
                    return mfn, j
                queue.rotate(-1)  # a dirty head goes to the tail
        return None

    def alloc(self, order: int, bits: int = 0, no_scrub: bool = False) -> int | None:
        """alloc_domheap_pages(order, MEMF_bits(bits)): the first frame, or None."""
        if order > MAX_ORDER:
            return None
        zone_hi = min(bits_to_zone(bits), NR_ZONES - 1) if bits else NR_ZONES - 1
        hit = self._find(zone_hi, order, no_scrub)
        if hit is None and not no_scrub:
            hit = self._find(zone_hi, order, True)
        if hit is None:
            return None
        mfn, j = hit
        _, dirty = self._take(mfn)
        while j != order:
            j -= 1
            self._add(mfn, j, dirty)
            mfn += 1 << j
        return mfn

    def copy(self) -> Heap:
        twin = Heap()
        for key, queue in self.lists.items():
            twin.lists[key] = deque(queue)
        twin.free = dict(self.free)
        twin.avail = defaultdict(int, self.avail)
        return twin

    def scrub_steps(self) -> Iterator[None]:
        """Scrub in the idle loop's order, yielding after each chunk: zones from the bottom,
        orders from the top, each list from its tail; a chunk made clean moves to the head."""
        for zone in range(NR_ZONES):
            for order in range(MAX_ORDER, -1, -1):
                queue = self.lists.get((zone, order))
                while queue and self.free[queue[-1]][1]:
                    mfn = queue.pop()
                    queue.appendleft(mfn)
                    self.free[mfn] = (order, False)
                    yield

    def scrub(self, up_to_zone: int = NR_ZONES) -> None:
        """What idle CPUs do: per zone (low first), per order (high first), move dirty chunks
        from the tail to the head as clean; a whole list keeps its order."""
        for zone in range(0, min(up_to_zone, NR_ZONES - 1) + 1):
            for order in range(MAX_ORDER, -1, -1):
                queue = self.lists.get((zone, order))
                if not queue:
                    continue
                for mfn in list(queue):
                    self.free[mfn] = (order, False)
