"""Systems more than one test (or tool) boots, defined once."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_spec
from xenkit.config import spec

LIFECYCLE = Path(__file__).parent / "data" / "guest_lifecycle.sh"
# Not the tick guest's default (100 ms): a guest that ignored its bootargs would show it.
TICK_PERIOD_MS = 500


def toolstack_guests(board: str, full: bool, work: Path, **settings: object) -> spec.SystemSpec:
    """Dom0 with the toolstack, a Linux dom0less guest, the tick guest and run-time guests
    that tests/data/guest_lifecycle.sh drives through xl: the whole lifecycle (`full`), or
    on the slower emulated Pi 4 what depends on the board."""
    script = work / "lifecycle.sh"
    args = "g1 g2" if full else "g1 '' basic"
    script.write_text(
        LIFECYCLE.read_text().replace("#!/bin/bash\n", f"#!/bin/bash\nset -- {args}\n", 1)
    )
    guests: list[dict[str, object]] = [{"name": "g1", "memory": "128M", "maxvcpus": 2}]
    if full:
        # The second guest pings the first across the bridge.
        guests.append({"name": "g2", "memory": "64M", "ping": "10.99.0.10"})
    return make_spec(
        board=board,
        toolstack=True,
        dom0_autorun=str(script),
        domain=[
            # Two vCPUs keep it out of xenstore (xen.init_dom0less_fails): on the Pi 4 run,
            # to show that init-dom0less still sets up the other guest.
            {"name": "linux1", "memory": "128M", "vcpus": 1 if full else 2},
            {
                "name": "rtos",
                "kernel": "builtin:tick",
                "cmdline": f"period_ms={TICK_PERIOD_MS}",
            },
        ],
        guest=guests,
        **settings,
    )


def tail(console: str, lines: int = 80) -> str:
    """The end of a console log for a failure message, without the tick guest's lines, which
    fill any fixed-size tail of a long boot and hide what went wrong."""
    kept = [line for line in console.splitlines() if "xenkit: tick " not in line]
    return "\n".join(kept[-lines:])
