"""Built-in guests as a config names them (`kernel = "builtin:NAME"`): which names exist.
Building one is xenkit.system.baremetal's job; this is only the vocabulary, so settings can
be checked without the build machinery."""

from __future__ import annotations

from pathlib import Path

from xenkit.errors import XenkitError

PREFIX = "builtin:"
# The guests' sources, package data beside the code that builds them.
SOURCES = Path(__file__).resolve().parent.parent / "system" / "guests"


def is_builtin(kernel: str) -> bool:
    return kernel.startswith(PREFIX)


def known() -> list[str]:
    return sorted(p.name for p in SOURCES.iterdir() if (p / f"{p.name}.s").is_file())


def guest_name(kernel: str) -> str:
    """The built-in guest a kernel setting names, refused if xenkit has no such source."""
    name = kernel.removeprefix(PREFIX)
    if name not in known():
        raise XenkitError(
            f"kernel = {kernel!r}: xenkit has no built-in guest {name!r}; "
            f"known: {', '.join(PREFIX + k for k in known())}"
        )
    return name
