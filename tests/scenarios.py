"""Systems more than one test (or tool) boots, defined once."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_spec
from xenkit.config import spec
from xenkit.run import emulate

LIFECYCLE = Path(__file__).parent / "data" / "guest_lifecycle.sh"
# Not the tick guest's default (100 ms): a guest that ignored its bootargs would show it.
TICK_PERIOD_MS = 500


def lifecycle(work: Path, args: str) -> Path:
    """tests/data/guest_lifecycle.sh with its arguments fixed, to run as Dom0's autorun."""
    script = work / "lifecycle.sh"
    script.write_text(
        LIFECYCLE.read_text().replace("#!/bin/bash\n", f"#!/bin/bash\nset -- {args}\n", 1)
    )
    return script


def results(console: str) -> tuple[list[list[str]], dict[str, list[str]]]:
    """The lifecycle script's `XK` lines: the `xl list` rows, and the other results by key
    (the uptime each was printed at dropped)."""
    rows, found = [], {}
    for line in emulate.untangled(console).splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "XK":
            continue
        if words[1] == "list":
            rows.append(words[2:])
        elif len(words) >= 3:
            found[words[2]] = words[3:]
    return rows, found


def toolstack_guests(board: str, full: bool, work: Path, **settings: object) -> spec.SystemSpec:
    """Dom0 with the toolstack, a Linux dom0less guest, the tick guest and run-time guests
    that tests/data/guest_lifecycle.sh drives through xl: the whole lifecycle (`full`), or
    on the slower emulated Pi 4 what depends on the board."""
    script = lifecycle(work, "g1 g2" if full else "g1 '' basic")
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


# QEMU's user network hands out addresses from 10.0.2.15 in the order asked: Dom0's bridge
# asks first. 10.0.2.2 is its gateway.
PC_DOM0 = "10.0.2.15"
PC_GATEWAY = "10.0.2.2"


# The PV guest the PC's lifecycle drives (added with `xenkit guest add`): it pings Dom0 and
# the gateway of the network Dom0 bridged it onto.
PC_GUEST = ("g1", "--maxvcpus", "2", "--ping", f"{PC_DOM0},gateway", "--disk", "64M")


def pc_workbench(work: Path) -> spec.SystemSpec:
    """The PC's live workbench whose Dom0 runs the lifecycle script on guest g1: everything
    but the second guest, whose peer's DHCP address is not known in advance. [[guest]]
    tables that are never started show the tables and `guest add` land side by side, and an
    HVM guest what Dom0 says on a PC that cannot run it."""
    script = lifecycle(work, "g1 '' full")
    guests = [{"name": "spare"}, {"name": "h1", "type": "hvm"}]
    return make_spec(board="pc", dom0_autorun=str(script), guest=guests)


def tail(console: str, lines: int = 80) -> str:
    """The end of a console log for a failure message, without the tick guest's lines, which
    fill any fixed-size tail of a long boot and hide what went wrong."""
    kept = [line for line in console.splitlines() if "xenkit: tick " not in line]
    return "\n".join(kept[-lines:])


# Dom0's autorun on the network root: what it runs comes from the lazy root, and so do the
# files of the guest it starts (Dom0's default guest kernel and initramfs).
NETROOT_AUTORUN = r"""#!/bin/sh
say() { echo "XK $(cut -d' ' -f1 /proc/uptime) $*"; }
say root "$(awk '$2 == "/" { print $3 }' /proc/mounts)"
xl list >/tmp/xl.out 2>&1
say xl-list $? "$(awk 'NR == 2 { print $1 }' /tmp/xl.out)"
xenkit-start n1 >/tmp/create.out 2>&1
say create $? "$(tr '\n' ' ' </tmp/create.out)"
i=0
until grep -q "guest n1 ready" /var/log/xen/console/guest-n1.log 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 120 ] && break
    sleep 1
done
say banner "$(grep -c 'guest n1 ready' /var/log/xen/console/guest-n1.log 2>/dev/null)"
xl destroy n1
say filled-before "$(cat /run/xenkit/front/cache/filled 2>/dev/null || echo no)"
say done
"""
