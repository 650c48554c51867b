"""Run-time guests: xl domain configurations for guests Dom0 starts with `xl create`.

Reference: xl.cfg(5) from Xen 4.17. On Arm every guest is a PVH-like "pvh" domain booting
a kernel image directly; on x86 a PV guest does the same. Its console is hvc0 and its
network a PV vif on a Dom0 bridge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xenkit.core.sizes import MiB, format_size, parse_size
from xenkit.errors import XenkitError

# Where xenkit puts the default guest's kernel and initramfs inside Dom0's root.
GUEST_DIR = "var/lib/xenkit/guest"
DEFAULT_KERNEL = f"/{GUEST_DIR}/kernel"
DEFAULT_RAMDISK = f"/{GUEST_DIR}/initrd.cpio.gz"
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
# Guest addresses on the bridge start here; Dom0's own is .1.
FIRST_HOST = 10


@dataclass(frozen=True)
class Guest:
    name: str
    type: str = "pvh"  # xl.cfg's type: one of the architecture's (config.arch)
    kernel: str = DEFAULT_KERNEL  # path inside Dom0
    ramdisk: str = DEFAULT_RAMDISK
    memory: int = 128 * MiB
    maxmem: int = 0  # 0: same as memory
    vcpus: int = 1
    maxvcpus: int = 0  # 0: same as vcpus
    bridge: str = "xenbr0"
    ip: str = ""  # address/prefix inside the guest, on the bridge's network, or "dhcp"
    # Addresses the guest pings once up, comma-separated ("gateway": its default route's).
    ping: str = ""
    cmdline: str = ""


def check_name(name: str, where: str) -> str:
    if not NAME.fullmatch(name):
        raise XenkitError(
            f"{where}: guest name {name!r} must start with a letter and use only letters, "
            "digits, '.', '_' and '-' (at most 63)"
        )
    return name


def mac(name: str) -> str:
    """A stable MAC in the Xen Project's OUI (00:16:3e), so a guest keeps its address."""
    h = hashlib.sha256(name.encode()).digest()
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in (h[0] & 0x7F, h[1], h[2]))


def config(g: Guest) -> str:
    """The guest's xl.cfg."""
    # Debian's arm64 kernel sets 64 MiB aside for CMA, which a small guest without devices
    # never uses and its kernel cannot allocate from: a 128 MiB guest ran out of memory.
    words = ["console=hvc0", "cma=0", f"xenkit.name={g.name}"]
    if g.ip:
        words.append(f"xenkit.ip={g.ip}")
    if g.ping:
        words.append(f"xenkit.ping={g.ping}")
    if g.cmdline:
        words.append(g.cmdline)
    lines = [
        f"# xl.cfg for {g.name}, written by xenkit. Start it with: xl create /etc/xen/{g.name}.cfg",
        f'name = "{g.name}"',
        f'type = "{g.type}"',
        f'kernel = "{g.kernel}"',
        f'ramdisk = "{g.ramdisk}"',
        f'extra = "{" ".join(words)}"',
        f"memory = {g.memory // MiB}",
        f"maxmem = {max(g.maxmem, g.memory) // MiB}",
        f"vcpus = {g.vcpus}",
        f"maxvcpus = {max(g.maxvcpus, g.vcpus)}",
        # Stated, not defaulted: Xen 4.17's libxl asserts on an unset acpi when `xl mem-set`
        # reads the saved configuration back on Arm.
        "acpi = 0",
    ]
    if g.bridge:
        lines.append(f'vif = [ "mac={mac(g.name)},bridge={g.bridge}" ]')
    return "\n".join(lines) + "\n"


# The smallest Linux guest xenkit lets through: Debian's arm64 Image inflates to 32 MiB and
# shares the guest's first bank with its initramfs and device tree; 64M is the smallest the
# tests boot (g2 in tests/scenarios.py, through xl; below it was never seen to boot).
LINUX_MIN_MEMORY = 64 * MiB


def too_small(memory: int, where: str) -> None:
    """Refuse a Linux guest with less memory than it boots in."""
    if memory < LINUX_MIN_MEMORY:
        raise XenkitError(
            f"{where}: {format_size(memory)} is too small for Linux to boot in: "
            f"give at least {format_size(LINUX_MIN_MEMORY)}"
        )


def guest_from_table(
    t: dict[str, Any],
    index: int,
    cpus: int,
    bridge_net: str,
    dom0_addr: str,
    types: tuple[str, ...] = ("pvh",),
) -> Guest:
    """A [[guest]] table (or `xenkit guest add` options), checked against the board: its
    CPUs, the guest `types` its architecture runs (the first is the default), and the
    bridge's network. Without `bridge_net` the bridge is the machine's own network, where
    guests ask DHCP and ping the gateway."""
    where = f"[[guest]] #{index + 1}"
    known = set(Guest.__dataclass_fields__)
    unknown = set(t) - known
    if unknown:
        raise XenkitError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}"
        )
    if "name" not in t:
        raise XenkitError(f'{where} has no name: add name = "..."')
    name = check_name(str(t["name"]), where)
    where = f"[[guest]] {name}"
    kind = str(t.get("type", types[0]))
    if kind not in types:
        raise XenkitError(
            f"{where}: type = {kind!r} is not a guest this board runs yet: "
            f"give {' or '.join(repr(k) for k in types)}"
        )
    memory = parse_size(t.get("memory", "128M"), f"{where} memory")
    too_small(memory, where)
    vcpus = int(t.get("vcpus", 1))
    maxvcpus = int(t.get("maxvcpus", 0)) or vcpus
    for what, n in (("vcpus", vcpus), ("maxvcpus", maxvcpus)):
        if not 1 <= n <= cpus:
            raise XenkitError(f"{where}: {what} = {n}, but the board has {cpus} CPUs")
    if maxvcpus < vcpus:
        raise XenkitError(f"{where}: maxvcpus = {maxvcpus} is below vcpus = {vcpus}")
    bridge = str(t.get("bridge", "xenbr0"))
    ip = str(t.get("ip", ""))
    if bridge and not ip:
        if bridge_net:
            net = ipaddress.ip_network(bridge_net, strict=False)
            ip = f"{net.network_address + FIRST_HOST + index}/{net.prefixlen}"
        else:
            ip = "dhcp"
    if ip and ip != "dhcp":
        try:
            ipaddress.ip_interface(ip)
        except ValueError:
            raise XenkitError(f"{where}: ip = {ip!r} is not ADDRESS/PREFIX or dhcp") from None
    return Guest(
        name=name,
        type=kind,
        kernel=str(t.get("kernel", DEFAULT_KERNEL)),
        ramdisk=str(t.get("ramdisk", DEFAULT_RAMDISK)),
        memory=memory,
        maxmem=parse_size(t["maxmem"], f"{where} maxmem") if t.get("maxmem") else memory,
        vcpus=vcpus,
        maxvcpus=maxvcpus,
        bridge=bridge,
        ip=ip,
        ping=str(t.get("ping", (dom0_addr or "gateway") if bridge else "")),
        cmdline=str(t.get("cmdline", "")),
    )


def stage(g: Guest) -> tuple[Guest, dict[str, bytes]]:
    """The guest as Dom0 sees it, and the files (path under / -> content) that go into
    Dom0's root for it: its xl.cfg, and its own kernel and ramdisk if it has them."""
    files: dict[str, bytes] = {}
    paths = {}
    for what, default in (("kernel", DEFAULT_KERNEL), ("ramdisk", DEFAULT_RAMDISK)):
        path = getattr(g, what)
        if path == default:
            continue
        src = Path(path)
        if not src.is_file():
            raise XenkitError(f"guest {g.name}: {what} {path} is not a readable file")
        inside = f"var/lib/xenkit/guests/{g.name}/{src.name}"
        files[inside] = src.read_bytes()
        paths[what] = "/" + inside
    g = replace(g, kernel=paths.get("kernel", g.kernel), ramdisk=paths.get("ramdisk", g.ramdisk))
    files[f"etc/xen/{g.name}.cfg"] = config(g).encode()
    return g, files
