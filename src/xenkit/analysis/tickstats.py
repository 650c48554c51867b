"""The tick guest's console lines, and what they say about its timing.

Every figure comes from the guest's own counter (CNTVCT at each wake-up, CNTFRQ), never
from the host's clock: under emulation the host's view of time says little about the guest.
Tick n is due at start + n * period, start being the counter value printed with tick 0.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

from xenkit.errors import XenkitError

BANNER = re.compile(r"xenkit: guest (\S+) ready: tick every (\d+) ms, cntfrq (\d+) Hz")
TICK = re.compile(r"xenkit: tick (\S+) (\d+) cntvct (\d+) cntfrq (\d+)")


@dataclass(frozen=True)
class Tick:
    line: int  # index of the console line it came on
    n: int
    cntvct: int


@dataclass(frozen=True)
class Summary:
    """Microseconds, over consecutive printed ticks."""

    count: int
    min: float
    mean: float
    max: float
    p99: float

    def __str__(self) -> str:
        return (
            f"min {self.min:.0f} us, mean {self.mean:.0f} us, max {self.max:.0f} us, "
            f"p99 {self.p99:.0f} us (n={self.count})"
        )


@dataclass(frozen=True)
class TickRun:
    name: str
    period_ms: int
    cntfrq: int
    banner_line: int
    ticks: tuple[Tick, ...]

    @property
    def period(self) -> int:
        """The period in counter ticks, computed as the guest computes it."""
        return self.cntfrq * self.period_ms // 1000

    @property
    def start(self) -> int:
        return self.ticks[0].cntvct

    def lateness(self) -> list[int]:
        """Counter ticks between each tick's deadline and the wake-up that printed it."""
        return [t.cntvct - (self.start + t.n * self.period) for t in self.ticks]

    def missed(self) -> int:
        """Deadlines that passed with no wake-up of their own."""
        return sum(b.n - a.n - 1 for a, b in self.pairs())

    def pairs(self) -> list[tuple[Tick, Tick]]:
        return list(zip(self.ticks, self.ticks[1:], strict=False))

    def periods(self) -> list[float]:
        """The measured period around each tick: counter time per deadline between two
        consecutive printed ticks."""
        return [(b.cntvct - a.cntvct) / (b.n - a.n) for a, b in self.pairs()]

    def jitter(self, after_line: int = -1) -> Summary:
        """How far each interval between printed ticks strays from the whole number of
        periods it spans, for ticks printed after console line `after_line`."""
        pairs = [(a, b) for a, b in self.pairs() if a.line > after_line]
        if not pairs:
            raise XenkitError(f"tick guest {self.name}: no two ticks after line {after_line}")
        us = 1e6 / self.cntfrq
        return summarize(
            [abs(b.cntvct - a.cntvct - (b.n - a.n) * self.period) * us for a, b in pairs]
        )

    def seconds(self, counts: int) -> float:
        return counts / self.cntfrq


def summarize(values: list[float]) -> Summary:
    """min, mean, max and 99th percentile (nearest rank) of a non-empty list."""
    v = sorted(values)
    p99 = v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)]
    return Summary(len(v), v[0], statistics.fmean(v), v[-1], p99)


def parse(console: str, name: str) -> TickRun:
    """The tick guest `name`'s banner and ticks from a console log (Xen prefixes them with
    "(XEN) DOMn: ", which is ignored)."""
    banner: tuple[int, re.Match[str]] | None = None
    ticks: list[Tick] = []
    for i, line in enumerate(console.splitlines()):
        if banner is None:
            m = BANNER.search(line)
            if m and m.group(1) == name:
                banner = (i, m)
            continue
        m = TICK.search(line)
        if m and m.group(1) == name:
            ticks.append(Tick(i, int(m.group(2)), int(m.group(3))))
    if banner is None:
        raise XenkitError(f"no banner of tick guest {name} in the console log")
    if not ticks or ticks[0].n != 0:
        raise XenkitError(f"tick guest {name}: no tick 0 after its banner")
    at, found = banner
    return TickRun(name, int(found.group(2)), int(found.group(3)), at, tuple(ticks))
