"""`xenkit guest add`: put a run-time guest (its xl.cfg and files) into an existing build.

The boot target edits its media (the card's root partition, the live image's layer) on a
copy that replaces the original only when whole, so a failed add leaves the build as it was.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from xenkit import targets
from xenkit.config.spec import emulator_shortfall as emulator_misfit
from xenkit.config.spec import guest_from_table, guest_room
from xenkit.core import log
from xenkit.core.sizes import MiB, format_size, parse_size
from xenkit.errors import XenkitError
from xenkit.pipeline import manifest
from xenkit.pipeline.manifest import Manifest
from xenkit.xen import xl


def _free_for_guests(m: Manifest) -> int:
    """Memory left beside Dom0, the dom0less guests and the run-time guests already added,
    by the rule `xenkit build` applies."""
    memory = [g.memory for g in m.guests] + [g.memory for g in m.runtime_guests]
    return guest_room(
        sum(size for _, size in m.ram_banks),
        parse_size(m.dom0_mem, "dom0_mem"),
        sum(parse_size(size, "memory") for size in memory),
    )


def emulator_shortfall(m: Manifest, added: dict[str, int] | None = None) -> str:
    """The build's (with run-time guests `added`, by name) emulator misfit, "" if none:
    spec.emulator_shortfall on what the manifest records."""
    return emulator_misfit(
        sum(n for _, n in m.emulated_ram_banks),
        parse_size(m.dom0_mem, "dom0_mem"),
        sum(parse_size(g.memory, "memory") for g in m.guests),
        {g.name: parse_size(g.memory, "memory") for g in m.runtime_guests} | (added or {}),
    )


def add(build_dir: Path, table: dict[str, Any]) -> xl.Guest:
    m = manifest.read(build_dir)
    if not m.toolstack:
        raise XenkitError(
            f"{build_dir} has no toolstack in Dom0 to start guests with: rebuild it with "
            "--toolstack"
        )
    if m.dom0_root != "sd":
        raise XenkitError(
            f"{build_dir}'s Dom0 runs from its initramfs, which guest add cannot edit: add a "
            "[[guest]] table to the build config and rebuild"
        )
    if "netroot" in m.media:
        raise XenkitError(
            f"{build_dir}'s Dom0 root is in its chunk store, pinned by the boot medium: add "
            "a [[guest]] table to the build config and rebuild (the store keeps the shared "
            "chunks)"
        )
    board = manifest.board(build_dir, m)
    g = guest_from_table(table, len(m.runtime_guests), board)
    taken = {"Domain-0", *(d.name for d in m.guests), *(d.name for d in m.runtime_guests)}
    if g.name in taken:
        raise XenkitError(f"guest {g.name}: the name is taken in {build_dir}; pick another")
    free = _free_for_guests(m)
    if max(g.memory, g.maxmem) > free:
        raise XenkitError(
            f"guest {g.name}: {format_size(max(g.memory, g.maxmem))} does not fit: about "
            f"{format_size(max(free, 0) // MiB * MiB)} is left beside Dom0 and the other guests"
        )
    if shortfall := emulator_shortfall(m, {g.name: g.memory}):
        log.warning("warning: %s", shortfall)
    g, staged = xl.stage(g)

    target = targets.for_board(board)
    changed = target.add_to_root(build_dir, staged)
    entries = {name: manifest.file_entry(build_dir / name) for name in changed}
    manifest.write(
        build_dir,
        replace(
            m,
            runtime_guests=(*m.runtime_guests, manifest.guest_entry(g)),
            files={**m.files, **entries},
        ),
    )
    return g
