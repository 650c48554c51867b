"""Where xenkit keeps what outlives a build: apt's indexes, the packages, files extracted
from them and derived images. Every stage finds it here, so none needs another's module to
know it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    if "XENKIT_CACHE" in os.environ:
        return Path(os.environ["XENKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xenkit"
