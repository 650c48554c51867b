"""`xenkit info`: what a build holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from xenkit import targets
from xenkit.core.sizes import human
from xenkit.pipeline import manifest
from xenkit.pipeline.manifest import Manifest


def _info(m: Manifest, build_dir: Path) -> str:
    lines = [
        f"board      {m.board} ({m.description}), RAM {m.ram}, boots through {m.target}",
        f"Debian     {m.debian}",
        f"built      {m.built} by xenkit {m.xenkit}",
        f"Xen        {m.xen_version}: {m.xen_cmdline}",
        f"Dom0       Linux {m.linux_version}: {m.dom0_cmdline}",
        "packages",
    ]
    lines += [f"  {p.name:<32} {p.version:<36} {p.sha256[:16]}" for p in m.packages]
    lines += [f"  {role:<32} {path} (local file)" for role, path in m.local_files.items()]
    if m.layout:
        lines.append("load layout (hardware boot script)")
        lines += [
            f"  {p.name:<8} {p.address:>#12x} - {p.end:>#12x}  {human(p.file_size)}"
            for p in m.layout
        ]
    lines += targets.get(m.target).describe(build_dir)
    lines.append("files (sha256; of a disk image, without its all-zero MiB blocks)")
    for name, f in m.files.items():
        zero = sum(end - start for start, end in f.zero_mib)
        skipped = f"  ({zero} zero MiB left out)" if zero else ""
        lines.append(f"  {name:<40} {human(f.size):>10}  {f.sha256[:16]}{skipped}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    m = manifest.read(Path(args.dir))
    print(manifest.to_json(m).rstrip() if args.json else _info(m, Path(args.dir)))
    return 0
