"""Debian releases xenkit builds from, and what each one's packages carry.

A board names the release it is tested on; `debian = "trixie"` (or --debian) builds the
same board from another. Board files write {xen} where a package's name or path holds the
Xen series (xen-hypervisor-{xen}-arm64); the release a build uses fills it in, so one
board file serves every release.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenkit.errors import XenkitError


@dataclass(frozen=True)
class Release:
    name: str  # the codename apt knows it by
    version: int  # Debian's number for it
    xen: str  # the series its xen-hypervisor-X.Y packages carry
    linux: str  # the kernel series it ships, for messages

    def expand(self, text: str, where: str) -> str:
        """A board file's package name or path with {xen} filled in."""
        try:
            return text.format(xen=self.xen)
        except (KeyError, IndexError, ValueError):
            raise XenkitError(
                f"{where} {text!r}: only {{xen}} may stand in braces (the release's Xen series)"
            ) from None


# Checked against each release's package indexes (2026-12-06).
RELEASES = {
    r.name: r
    for r in (
        Release("bookworm", 12, xen="4.17", linux="6.1"),
        Release("trixie", 13, xen="4.20", linux="6.12"),
    )
}
NAMES: tuple[str, ...] = tuple(RELEASES)


def get(name: str, where: str = "debian") -> Release:
    if name not in RELEASES:
        raise XenkitError(
            f"{where}={name!r} is not a Debian release xenkit builds from: choose one of "
            f"{', '.join(NAMES)}"
        )
    return RELEASES[name]
