"""A dependency-free progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __enter__(self) -> Progress:
        return self

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self._tty and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            sys.stderr.write(
                f"\r{self.label:<28} [{bar:<30}] {frac * 100:5.1f}% {self.done / 2**20:8.1f} MiB"
            )
            sys.stderr.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
