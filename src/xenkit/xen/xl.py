"""Run-time guests: xl domain configurations for guests Dom0 starts with `xl create`.

Reference: xl.cfg(5) from Xen 4.17. On Arm every guest is one kind (xl.cfg's "pvh")
booting a kernel image directly. On x86 a guest is PV (no hardware virtualisation needed),
PVH (a hardware container without emulated devices) or HVM (a whole emulated PC from
Debian's device model, here booting the kernel directly too). Each has Xen's PV console
(hvc0; an HVM guest also its emulated serial port, which `xl console` shows), and its
network is a PV vif on a Dom0 bridge, or the device model's emulated NIC when an HVM guest
is asked to do without PV drivers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xenkit.core.sizes import MiB, format_size, parse_count, parse_size
from xenkit.errors import XenkitError

# Where xenkit puts the default guest's kernel and initramfs inside Dom0's root.
GUEST_DIR = "var/lib/xenkit/guest"
DEFAULT_KERNEL = f"/{GUEST_DIR}/kernel"
DEFAULT_RAMDISK = f"/{GUEST_DIR}/initrd.cpio.gz"
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
# Guest addresses on the bridge start here; Dom0's own is .1.
FIRST_HOST = 10
# The bridge Dom0 makes: host-only (on the network bridge_net names) unless Dom0 bridges
# the machine's own NIC into it.
BRIDGE = "xenbr0"
# Linux's interface names: IFNAMSIZ (16) bytes with the terminating NUL, and never '/',
# ':' or white space (dev_valid_name); ',' and '=' would split xl.cfg's vif spec.
IFNAME = re.compile(r"[^/:,=\s]{1,15}")
# Guest disks are sparse files Dom0 makes on first start, in its root: on a live medium that
# is the USB stick's persistence partition when there is one, else RAM.
DISK_DIR = "/var/lib/xenkit/disks"


@dataclass(frozen=True)
class Guest:
    name: str
    type: str = "arm"  # one of the architecture's guest types (config.arch)
    kernel: str = DEFAULT_KERNEL  # path inside Dom0
    ramdisk: str = DEFAULT_RAMDISK
    memory: int = 128 * MiB
    maxmem: int = 0  # 0: same as memory
    vcpus: int = 1
    maxvcpus: int = 0  # 0: same as vcpus
    bridge: str = BRIDGE
    ip: str = ""  # address/prefix inside the guest, on the bridge's network, or "dhcp"
    # Addresses the guest pings once up, comma-separated ("gateway": its default route's).
    ping: str = ""
    cmdline: str = ""
    # HVM only: use Xen's PV network and disk drivers (PVHVM), not the emulated ones.
    pv_drivers: bool = True
    disk: int = 0  # bytes of a disk image made for the guest in DISK_DIR; 0: none

    @property
    def disk_path(self) -> str:
        return f"{DISK_DIR}/{self.name}.img" if self.disk else ""


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
    if g.type == "hvm":
        # The emulated serial port first, so `xl console` (which shows it for HVM) has the
        # kernel's messages; hvc0 last, so init's output also reaches Xen's console log.
        words.insert(0, "console=ttyS0")
        if not g.pv_drivers:
            words.append("xen_emul_unplug=never")
    if g.ip:
        words.append(f"xenkit.ip={g.ip}")
    if g.ping:
        words.append(f"xenkit.ping={g.ping}")
    if g.cmdline:
        words.append(g.cmdline)
    lines = [
        f"# xl.cfg for {g.name}, written by xenkit. Start it with: xenkit-start {g.name}",
        f"# (or xl create /etc/xen/{g.name}.cfg)",
        f'name = "{g.name}"',
        f'type = "{"pvh" if g.type == "arm" else g.type}"',
        f'kernel = "{g.kernel}"',
        f'ramdisk = "{g.ramdisk}"',
        f'extra = "{" ".join(words)}"',
        f"memory = {g.memory // MiB}",
        f"maxmem = {max(g.maxmem, g.memory) // MiB}",
        f"vcpus = {g.vcpus}",
        f"maxvcpus = {max(g.maxvcpus, g.vcpus)}",
    ]
    if g.type == "arm":
        # Stated, not defaulted: Xen 4.17's libxl asserts on an unset acpi when `xl mem-set`
        # reads the saved configuration back on Arm.
        lines.append("acpi = 0")
    if g.type == "hvm":
        # No display: the device model then runs with -nographic, and the guest's console
        # is its serial port and hvc0.
        lines += ['serial = "pty"', 'vga = "none"', "vnc = 0", "sdl = 0"]
    emulated = g.type == "hvm" and not g.pv_drivers
    if g.bridge:
        nic = ",type=ioemu,model=e1000" if emulated else ""
        lines.append(f'vif = [ "mac={mac(g.name)},bridge={g.bridge}{nic}" ]')
    if g.disk:
        vdev = "hda" if emulated else "xvda"
        # QEMU's PV disk backend (qdisk) serves the file: Xen's block hotplug script, which
        # would put it on a loop device, timed out in xenkit's Dom0.
        spec = f"format=raw,vdev={vdev},access=rw,backendtype=qdisk,target={g.disk_path}"
        lines.append(f'disk = [ "{spec}" ]')
        lines.append(f"# xenkit-disk: {g.disk_path} {g.disk}")
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


UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


def guest_from_table(
    t: dict[str, Any],
    index: int,
    cpus: int,
    bridge_net: str,
    dom0_addr: str,
    types: tuple[str, ...] = ("arm",),
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
        if len(types) == 1:
            raise XenkitError(
                f"{where}: type = {kind!r}: on this board every guest is the one kind "
                f'{types[0]!r} (hardware-assisted, xl.cfg\'s "pvh"): leave type out'
            )
        raise XenkitError(
            f"{where}: type = {kind!r} is not a guest type here: give "
            f"{', '.join(repr(k) for k in types)}"
        )
    pv_drivers = t.get("pv_drivers", True)
    if not isinstance(pv_drivers, bool):
        raise XenkitError(f"{where}: pv_drivers = {pv_drivers!r} must be true or false")
    if not pv_drivers and kind != "hvm":
        raise XenkitError(
            f"{where}: pv_drivers = false is for HVM guests (a {kind} guest has only PV "
            'devices): set type = "hvm" or drop it'
        )
    disk = parse_size(t["disk"], f"{where} disk") if t.get("disk") else 0
    memory = parse_size(t.get("memory", "128M"), f"{where} memory")
    too_small(memory, where)
    maxmem = parse_size(t["maxmem"], f"{where} maxmem") if t.get("maxmem") else memory
    if maxmem < memory:
        # xl.cfg would take max(maxmem, memory): the ceiling the user asked for was lost.
        raise XenkitError(
            f"{where}: maxmem = {format_size(maxmem)} is below memory = {format_size(memory)}: "
            "raise maxmem or drop it"
        )
    vcpus = parse_count(t.get("vcpus", 1), f"{where} vcpus")
    maxvcpus = parse_count(t.get("maxvcpus", 0), f"{where} maxvcpus") or vcpus
    for what, n in (("vcpus", vcpus), ("maxvcpus", maxvcpus)):
        if not 1 <= n <= cpus:
            raise XenkitError(f"{where}: {what} = {n}, but the board has {cpus} CPUs")
    if maxvcpus < vcpus:
        raise XenkitError(f"{where}: maxvcpus = {maxvcpus} is below vcpus = {vcpus}")
    bridge = str(t.get("bridge", BRIDGE))
    ip = str(t.get("ip", ""))
    if bridge and not ip:
        if bridge_net:
            net = ipaddress.ip_network(bridge_net, strict=False)
            ip = f"{net.network_address + FIRST_HOST + index}/{net.prefixlen}"
        else:
            ip = "dhcp"
    if ip and ip != "dhcp":
        _check_ip(ip, where, bridge_net if bridge == BRIDGE else "")
    # Written into xl.cfg's double-quoted strings, where a quote or a line break would end
    # the string (or the line) early.
    for key in ("cmdline", "kernel", "ramdisk", "bridge", "ping"):
        if UNQUOTABLE.search(str(t.get(key, ""))):
            raise XenkitError(
                f"{where}: {key} = {str(t[key])!r} has a quote, backslash or control "
                "character, which xl.cfg's strings cannot hold: drop it"
            )
    ping = str(t.get("ping", (dom0_addr or "gateway") if bridge else ""))
    _check_ping(ping, where)
    _check_bridge(bridge, where)
    return Guest(
        name=name,
        type=kind,
        kernel=str(t.get("kernel", DEFAULT_KERNEL)),
        ramdisk=str(t.get("ramdisk", DEFAULT_RAMDISK)),
        memory=memory,
        maxmem=maxmem,
        vcpus=vcpus,
        maxvcpus=maxvcpus,
        bridge=bridge,
        ip=ip,
        ping=ping,
        cmdline=str(t.get("cmdline", "")),
        pv_drivers=pv_drivers,
        disk=disk,
    )


def _check_ip(ip: str, where: str, bridge_net: str) -> None:
    """A guest's static address: IPv4 (the guest's `ip addr add` and udhcpc set up IPv4
    only), a host on its network, and on xenkit's host-only bridge (`bridge_net`) one of
    that network's hosts other than Dom0's, since nothing there routes anywhere else."""
    try:
        iface = ipaddress.ip_interface(ip)
    except ValueError:
        raise XenkitError(f"{where}: ip = {ip!r} is not ADDRESS/PREFIX or dhcp") from None
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise XenkitError(
            f"{where}: ip = {ip!r}: a guest's network is set up over IPv4 only: give an IPv4 "
            "ADDRESS/PREFIX or dhcp"
        )
    net = iface.network
    # /31 and /32 have no network or broadcast address (RFC 3021).
    if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        kind = "network" if iface.ip == net.network_address else "broadcast"
        raise XenkitError(
            f"{where}: ip = {ip!r} is the {kind} address of {net}, no host's: give another"
        )
    if not bridge_net:
        return
    bridge = ipaddress.IPv4Interface(bridge_net)
    if iface.ip == bridge.ip:
        raise XenkitError(
            f"{where}: ip = {ip!r} is Dom0's own address on {BRIDGE}: give another host of "
            f"{bridge.network}, or leave ip out for the next free one"
        )
    if net != bridge.network:
        raise XenkitError(
            f"{where}: ip = {ip!r} is not on {BRIDGE}'s network {bridge.network}, where "
            "Dom0 is the guests' only peer and nothing routes elsewhere: give an address of "
            f"it with /{bridge.network.prefixlen}, or leave ip out for the next free one"
        )


def _check_ping(ping: str, where: str) -> None:
    """Each target goes on the kernel command line (split at spaces) and to busybox ping:
    an IPv4 address, or "gateway" (the guest's default route's)."""
    for target in ping.split(",") if ping else ():
        if target == "gateway":
            continue
        try:
            ipaddress.IPv4Address(target)
        except ValueError:
            raise XenkitError(
                f"{where}: ping = {ping!r}: {target!r} is not an IPv4 address or gateway: "
                "give those, comma-separated"
            ) from None


def _check_bridge(bridge: str, where: str) -> None:
    """Empty is no vif; anything else must be a name Linux can give a bridge."""
    if bridge and (
        not IFNAME.fullmatch(bridge) or bridge in (".", "..") or len(bridge.encode()) > 15
    ):
        raise XenkitError(
            f"{where}: bridge = {bridge!r} is no Linux interface name: give at most 15 "
            "bytes without spaces, '/', ':', ',' or '=' (or '' for no network)"
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
