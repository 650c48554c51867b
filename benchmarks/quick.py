"""The --quick mode every benchmark has: one run at the smallest sizes, what CI runs so the
benchmarks cannot rot. Options given on the command line still win over its defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    quick: dict[str, Any],
    what: str,
) -> argparse.Namespace:
    """Parse `argv`, with `quick` as the defaults under --quick (described by `what`)."""
    parser.add_argument("--quick", action="store_true", help=f"{what} (what CI runs)")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args
