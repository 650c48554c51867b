"""`xenkit write`: a build's image onto a stick, card or disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from xenkit.core.sizes import human
from xenkit.pipeline import manifest


def cmd_write(args: argparse.Namespace) -> int:
    from xenkit.images import writer

    build_dir = Path(args.dir)
    m = manifest.read(build_dir)
    image = writer.medium(build_dir, m.media)
    hint = "use a bigger one, or rebuild with a smaller --persist"
    done = writer.write(image, Path(args.device), hint)
    print(f"wrote {image.name} ({human(done)}) to {args.device}")
    return 0
