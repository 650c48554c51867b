"""Past one machine: one fleet of Pi 4s split between two xenkit servers by the LAN's DHCP
server. Each server is a namespace of its own holding a copy of the same netboot build;
dnsmasq (Debian's, unpacked), run with the README's dnsmasq.conf word for word, hands each
rack a different next-server. Every client does what the card's first stage does: DHCP
(busybox's udhcpc), then boot2.scr from the next-server it was given, then every file that
script loads. Each must come whole from its own rack's server, a board directory (by MAC)
must win on either server, and each server's log must count its own rack's transfers only."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks import peers

from tests.conftest import make_spec
from xenkit.bootscripts import uimage
from xenkit.core import netns
from xenkit.core.proc import need, run
from xenkit.errors import XenkitError
from xenkit.pipeline import build

pytestmark = [pytest.mark.slow, pytest.mark.debian]

README = Path(__file__).parents[2] / "README.md"
FIRST = "# dnsmasq.conf: the LAN's DHCP server, one rack of Pi 4s per xenkit server"
DHCP = "10.19.0.1"
SERVERS = {"rack-a": "10.19.0.2", "rack-b": "10.19.0.3"}
PER_RACK = 12
# What boot_one reports beside each file's digest.
META = {"server", "leased", "seconds"}
# Raspberry Pi MACs (dc:a6:32), one prefix per rack as the README's dhcp-mac lines match.
RACK_PREFIX = {"rack-a": "dc:a6:32:01:00", "rack-b": "dc:a6:32:02:00"}
# What the card's first stage fetches (bootscripts/card.py first_stage), whatever the
# lease's boot file; the README's dhcp-boot lines name it too.
FIRST_STAGE_FETCH = "boot2.scr"
# The card's first stage and U-Boot's second stage load with `tftpb ADDRESS FILE`.
TFTPB = re.compile(r"^tftpb \S+ (\S+)", re.M)


def readme_config() -> str:
    text = README.read_text()
    m = re.search(rf"^{re.escape(FIRST)}\n(.*?)^```$", text, re.M | re.S)
    assert m, f"the README has no block starting {FIRST!r}"
    return FIRST + "\n" + m.group(1)


def clients() -> list[tuple[str, str]]:
    """(rack, MAC) of every board of the fleet."""
    return [(r, f"{p}:{i:02x}") for r, p in RACK_PREFIX.items() for i in range(PER_RACK)]


def test_the_readme_block_gives_each_rack_its_server() -> None:
    conf = readme_config()
    for rack, server in SERVERS.items():
        assert f"dhcp-mac=set:{rack},{RACK_PREFIX[rack]}:*" in conf
        assert f"dhcp-boot=tag:{rack},boot2.scr,,{server}" in conf


@contextlib.contextmanager
def fleet(count: int) -> Iterator[tuple[list[str], dict[str, list[str]], list[list[str]]]]:
    """A switch (a namespace holding bridge br0, DHCP's address on it), one namespace per
    server and `count` client namespaces, each wired to the bridge by a veth pair. Clients
    have only their MAC: their address comes by DHCP. Yields the command prefixes."""
    with contextlib.ExitStack() as stack:
        switch = stack.enter_context(netns.namespace())
        servers = {r: stack.enter_context(netns.namespace()) for r in SERVERS}
        hosts = [stack.enter_context(netns.namespace()) for _ in range(count)]
        batch = ["link add br0 type bridge", f"addr add {DHCP}/16 dev br0"]
        batch += ["link set br0 up", "link set lo up"]
        ends = [(f"s{n}", pid) for n, pid in enumerate(servers.values())]
        ends += [(f"c{n}", pid) for n, pid in enumerate(hosts)]
        for name, pid in ends:
            batch += [
                f"link add h{name} type veth peer name {name}",
                f"link set h{name} master br0",
                f"link set h{name} up",
                f"link set {name} netns {pid}",
            ]
        run([*netns.inside(switch), "ip", "-batch", "-"], stdin="\n".join(batch).encode())
        for n, (rack, pid) in enumerate(servers.items()):
            mine = f"addr add {SERVERS[rack]}/16 dev s{n}\nlink set s{n} up\nlink set lo up\n"
            run([*netns.inside(pid), "ip", "-batch", "-"], stdin=mine.encode())
        for n, (pid, (_, mac)) in enumerate(zip(hosts, clients(), strict=True)):
            mine = f"link set c{n} address {mac}\nlink set c{n} up\nlink set lo up\n"
            run([*netns.inside(pid), "ip", "-batch", "-"], stdin=mine.encode())
        yield (
            netns.inside(switch),
            {r: netns.inside(pid) for r, pid in servers.items()},
            [netns.inside(pid) for pid in hosts],
        )


# udhcpc's event script: on a lease, take the address and note the next-server (siaddr)
# and boot file it came with, as U-Boot's `dhcp` sets serverip and bootfile.
SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    echo "$siaddr $boot_file" > "$LEASES/$interface"
    ;;
esac
"""


def boot_one(prefix: list[str], n: int, leases: Path, script: Path, out: Path) -> dict[str, str]:
    """One board's netboot, as far as the files: DHCP, boot2.scr from the next-server, then
    every file it loads. Returns what it got: the server, and each file's sha256 by name."""
    started = time.monotonic()
    env = {**os.environ, "LEASES": str(leases)}
    run([*prefix, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "10", "-T", "1",
         "-i", f"c{n}", "-s", str(script)], env=env)  # fmt: skip
    leased = time.monotonic() - started
    server, bootfile = (leases / f"c{n}").read_text().split()
    # The card's first stage takes serverip from the lease and asks for boot2.scr by name.
    assert bootfile == FIRST_STAGE_FETCH, bootfile
    mine = out / f"c{n}"
    mine.mkdir()
    got: dict[str, str] = {"server": server, "leased": f"{leased:.3f}"}

    # U-Boot's defaults (lockstep, 1468-byte blocks) until the second stage sets its own.
    options = {"blksize": "1468"}

    def fetch(name: str) -> bytes:
        local = mine / name.replace("/", "_")
        asked = [w for k, v in options.items() for w in ("--option", f"{k} {v}")]
        run([*prefix, need("atftp"), *asked, "-g", "-r", name, "-l", str(local),
             server, "69"])  # fmt: skip
        data = local.read_bytes()
        got[name] = hashlib.sha256(data).hexdigest()
        return data

    script_text = uimage.script_text(fetch(FIRST_STAGE_FETCH))
    for var, option in (("tftpblocksize", "blksize"), ("tftpwindowsize", "windowsize")):
        if m := re.search(rf"^setenv {var} (\d+)$", script_text, re.M):
            options[option] = m[1]
    # The build's --tftp-windowsize 8, as U-Boot would ask for the files after boot2.scr.
    assert options == {"blksize": "1468", "windowsize": "8"}, options
    for name in TFTPB.findall(script_text):
        fetch(name)
    got["seconds"] = f"{time.monotonic() - started:.3f}"
    return got


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_servers_share_one_fleet_by_dhcp(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces and veth devices need root")
    need("busybox")
    need("atftp")
    peer = peers.tftp_peers()
    made = tmp_path / "rpi4-net"
    # No --netboot-server: the card's first stage takes its server from DHCP.
    build.build(make_spec(board="rpi4", netboot=True, tftp_windowsize=8), made)
    default = made / "tftp" / "default"
    # One board per rack with a DTB of its own (a Pi with a different HAT, say); every
    # server holds the whole tree, so the override works wherever DHCP sends the board.
    special = {rack: macs[0] for rack, macs in _by_rack().items()}
    dtb = next(p.name for p in default.glob("*.dtb"))
    # A board directory that held the same bytes would prove nothing.
    assert sha(default / "emulate" / dtb) != sha(default / dtb)
    for mac in special.values():
        board = made / "tftp" / mac.replace(":", "-")
        board.mkdir()
        shutil.copy(default / "emulate" / dtb, board / dtb)
    trees = {}
    for rack in SERVERS:
        # Each server holds a copy of the build, as the README says (copied, or shared).
        trees[rack] = tmp_path / f"srv-{rack}"
        shutil.copytree(made, trees[rack], symlinks=True)
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(readme_config())
    script = tmp_path / "udhcpc.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    leases, out = tmp_path / "leases", tmp_path / "got"
    leases.mkdir()
    out.mkdir()
    logs = {rack: tmp_path / f"serve-{rack}.log" for rack in SERVERS}
    results: list[dict[str, str]] = [{} for _ in clients()]
    with fleet(len(results)) as (switch, servers, hosts), contextlib.ExitStack() as stack:
        dnsmasq = [
            str(peer / "usr/sbin/dnsmasq"), "--no-daemon", f"--conf-file={conf}",
            "--port=0", "--interface=br0", "--bind-interfaces",
            f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}", "--pid-file", "--user=root",
        ]  # fmt: skip
        dhcp_log = tmp_path / "dnsmasq.log"
        with dhcp_log.open("wb") as log_file:
            proc = subprocess.Popen(
                [*switch, *dnsmasq], env=peers.env(peer), stdout=log_file,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        stack.callback(proc.wait, 10)
        stack.callback(proc.terminate)
        procs = {}
        for rack, prefix in servers.items():
            argv = [*prefix, sys.executable, "-m", "xenkit", "serve", str(trees[rack])]
            argv += ["--bind", SERVERS[rack], "--port", "69"]
            with logs[rack].open("wb") as log_file:
                procs[rack] = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
            stack.callback(procs[rack].wait, 10)
            stack.callback(procs[rack].send_signal, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for rack, p in procs.items():
            while "serve: TFTP on" not in logs[rack].read_text():
                assert p.poll() is None and time.monotonic() < deadline, logs[rack].read_text()
                assert proc.poll() is None, dhcp_log.read_text()
                time.sleep(0.05)
        started = time.monotonic()

        def client(n: int) -> None:
            try:
                results[n] = boot_one(hosts[n], n, leases, script, out)
            except (AssertionError, OSError, ValueError, XenkitError) as exc:
                results[n] = {"error": f"{type(exc).__name__}: {exc}"[-600:]}

        threads = [threading.Thread(target=client, args=(n,)) for n in range(len(results))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 180
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        took = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), "boards still fetching after 180 s"
        assert proc.poll() is None, dhcp_log.read_text()
        # A board has its last block before the server has its last ACK: give each server
        # the moment to log every transfer done before it is stopped (a CI run once stopped
        # one with a transfer's final ACK still in flight: 59 of 60 completed).
        fetched = max((len(r.keys() - META) for r in results if r and "error" not in r), default=0)
        deadline = time.monotonic() + 10
        for rack in SERVERS:
            while time.monotonic() < deadline and (
                len(re.findall(r"tftp: \S+ \S+ \d+ bytes in", logs[rack].read_text()))
                < PER_RACK * fetched
            ):
                time.sleep(0.05)

    wanted_files = None
    for (rack, mac), got in zip(clients(), results, strict=True):
        assert got and "error" not in got, f"{mac}: {got} {dhcp_log.read_text()[-1500:]}"
        assert got["server"] == SERVERS[rack], (mac, got["server"])
        files = {k: v for k, v in got.items() if k not in META}
        wanted_files = wanted_files or set(files)
        assert set(files) == wanted_files and len(files) >= 4, files
        board = made / "tftp" / mac.replace(":", "-")
        for name, digest in files.items():
            own = board / name
            assert digest == sha(own if own.exists() else default / name), (mac, name)
    assert wanted_files is not None and dtb in wanted_files
    total = sum((default / name).stat().st_size for name in wanted_files) * len(results)
    for rack in SERVERS:
        served = logs[rack].read_text()
        m = re.search(r"tftp: (\d+) of (\d+) transfers completed, (\d+) bytes; 0 failed", served)
        assert m, served[-2000:]
        assert int(m[1]) == int(m[2]) == PER_RACK * len(wanted_files), served[-2000:]
    leased = sorted(float(g["leased"]) for g in results)
    seconds = sorted(float(g["seconds"]) for g in results)
    print(
        f"fleet: {len(results)} Pi 4 netboots, {len(SERVERS)} xenkit servers by DHCP "
        f"next-server, {total / 2**20:.0f} MiB in {took:.1f} s "
        f"({total / took / 2**20:.0f} MiB/s); per board: DHCP median "
        f"{statistics.median(leased):.2f} s, whole fetch median {statistics.median(seconds):.1f} s,"
        f" slowest {seconds[-1]:.1f} s"
    )


def _by_rack() -> dict[str, list[str]]:
    racks: dict[str, list[str]] = {}
    for rack, mac in clients():
        racks.setdefault(rack, []).append(mac)
    return racks
