"""`xenkit guest add`: put a run-time guest (its xl.cfg and files) into an existing build.

The card image is edited on a copy that replaces the original only when the edit has
passed a filesystem check, so a failed add leaves the build as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xenkit.config import boards
from xenkit.config.spec import BRIDGE_ADDR, guest_room
from xenkit.core.proc import run
from xenkit.core.sizes import MiB, format_size, parse_size
from xenkit.debian.apt import sha256
from xenkit.errors import XenkitError
from xenkit.images import media
from xenkit.pipeline import build
from xenkit.xen import xl


def _free_for_guests(manifest: dict[str, Any]) -> int:
    """Memory left beside Dom0, the dom0less guests and the run-time guests already added,
    by the rule `xenkit build` applies."""
    guests = [*manifest.get("guests", []), *manifest.get("runtime_guests", [])]
    return guest_room(
        sum(size for _, size in manifest["ram_banks"]),
        parse_size(manifest["dom0_mem"], "dom0_mem"),
        sum(parse_size(g["memory"], "memory") for g in guests),
    )


def add(build_dir: Path, table: dict[str, Any]) -> xl.Guest:
    manifest = build.read_manifest(build_dir)
    if not manifest.get("toolstack"):
        raise XenkitError(
            f"{build_dir} has no toolstack in Dom0 to start guests with: rebuild it with "
            "--toolstack"
        )
    if manifest.get("dom0_root") != "sd":
        raise XenkitError(
            f"{build_dir}'s Dom0 runs from its initramfs, which guest add cannot edit: add a "
            "[[guest]] table to the build config and rebuild"
        )
    board = boards.load(manifest["board"])
    existing = manifest.get("runtime_guests", [])
    g = xl.guest_from_table(
        table, len(existing), board.cpus, BRIDGE_ADDR, BRIDGE_ADDR.split("/")[0]
    )
    taken = {"Domain-0", *(d["name"] for d in manifest.get("guests", []))}
    taken |= {d["name"] for d in existing}
    if g.name in taken:
        raise XenkitError(f"guest {g.name}: the name is taken in {build_dir}; pick another")
    free = _free_for_guests(manifest)
    if max(g.memory, g.maxmem) > free:
        raise XenkitError(
            f"guest {g.name}: {format_size(max(g.memory, g.maxmem))} does not fit: about "
            f"{format_size(max(free, 0) // MiB * MiB)} is left beside Dom0 and the other guests"
        )
    g, files = xl.stage(g)

    card = build_dir / "sd.img"
    partial = build_dir / ".sd.img.partial"
    try:
        run(["cp", "--sparse=always", card, partial])
        media.ext4_put(partial, {f"/{path}": data for path, data in files.items()})
        os.replace(partial, card)
    finally:
        partial.unlink(missing_ok=True)
    manifest["runtime_guests"] = [*existing, xl.record(g)]
    manifest["files"]["sd.img"] = {"size": card.stat().st_size, "sha256": sha256(card)}
    tmp = build_dir / f".{build.MANIFEST}.partial"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, build_dir / build.MANIFEST)
    return g
