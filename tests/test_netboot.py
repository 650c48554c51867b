"""xenkit serve: board directories, the Pi's proxyDHCP, errors, and U-Boot netbooting Xen
from xenkit's own TFTP server (not QEMU's)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xenkit import netboot, proxydhcp, tftp
from xenkit.errors import XenkitError


def _tree(tmp: Path) -> Path:
    root = tmp / "tftp"
    for d in ("default/emulate", "abcd1234", "dc-a6-32-01-02-03"):
        (root / d).mkdir(parents=True)
    for name in ("start4.elf", "config.txt", "boot2.scr", "xen"):
        (root / "default" / name).write_text(f"default {name}")
    (root / "default/emulate/boot2.scr").write_text("emulated boot2")
    (root / "abcd1234/config.txt").write_text("board config")
    (root / "dc-a6-32-01-02-03/xen").write_text("board xen")
    return root


def test_board_directories_fall_back_to_default(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    tree = netboot.Tree(root, mac_of=lambda ip: "dc-a6-32-01-02-03" if ip == "10.0.0.7" else None)

    def got(name: str, ip: str = "10.0.0.9") -> str:
        return tree.lookup(name, (ip, 1000)).read_text()

    assert got("abcd1234/config.txt") == "board config"  # the EEPROM's serial prefix
    assert got("abcd1234/start4.elf") == "default start4.elf"  # not there: the default's
    assert got("12345678/config.txt") == "default config.txt"  # an unknown board
    assert got("xen") == "default xen"
    assert got("xen", "10.0.0.7") == "board xen"  # U-Boot, known by its MAC
    assert got("boot2.scr") == "default boot2.scr"
    emulated = netboot.Tree(root, emulated=True, mac_of=lambda ip: None)
    assert emulated.lookup("boot2.scr", ("1.2.3.4", 1)).read_text() == "emulated boot2"
    with pytest.raises(tftp.Refused):
        tree.lookup("abcd1234/../../etc/passwd", ("1.2.3.4", 1))


def test_arp_table_gives_the_mac(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.168.1.20     0x1         0x2         DC:A6:32:01:02:03     *        eth0\n"
    )
    assert netboot.arp_mac("192.168.1.20", table) == "dc-a6-32-01-02-03"
    assert netboot.arp_mac("192.168.1.21", table) is None


def _discover(vendor: bytes = b"PXEClient:Arch:00000:UNDI:002001", arch: bool = True) -> bytes:
    header = bytes([1, 1, 6, 0]) + b"\x12\x34\x56\x78" + b"\0\0\0\0" + b"\0" * 16
    header += bytes.fromhex("dca632010203") + b"\0" * 10 + b"\0" * 192
    opts = bytes([53, 1, 1]) + bytes([60, len(vendor)]) + vendor
    if arch:
        opts += bytes([93, 2, 0, 0])
    opts += bytes([97, 17]) + b"\0RPi4" + b"\x11" * 12 + b"\xff"
    return header + proxydhcp.MAGIC + opts


def test_proxy_offer_matches_what_the_pi_follows() -> None:
    d = proxydhcp.parse(_discover())
    assert d.mac == "dc-a6-32-01-02-03"
    reply = proxydhcp.offer(d, "192.168.1.10")
    assert len(reply) >= 300 and reply[0] == 2 and reply[4:8] == b"\x12\x34\x56\x78"
    assert reply[16:24] == b"\0" * 8 and reply[20:24] == b"\0" * 4  # no yiaddr, no siaddr
    assert reply[10:12] == b"\x80\x00"  # broadcast
    opts = reply[240:]
    assert opts.startswith(bytes([53, 1, 2, 54, 4, 192, 168, 1, 10, 60, 9]) + b"PXEClient")
    assert bytes([43, 32]) + proxydhcp.OPTION_43 in opts
    assert proxydhcp.OPTION_43.hex() == (
        "0601030a0400505845091400001152617370626572727920506920426f6f74ff"
    )
    assert b"\x61\x11\x00RPi4" in opts  # option 97 echoed


@pytest.mark.parametrize(
    "packet",
    [
        _discover(vendor=b"MSFT 5.0"),
        _discover(arch=False),
        b"",
        b"\x01" * 239,
        _discover()[:250],
        _discover().replace(bytes([53, 1, 1]), bytes([53, 1, 3])),
    ],
)
def test_proxy_stays_out_of_everything_else(packet: bytes) -> None:
    with pytest.raises(proxydhcp.NotPxe):
        proxydhcp.parse(packet)


def test_proxy_responder_answers_on_the_wire() -> None:
    async def main() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            responder = await proxydhcp.start("192.168.1.10", "127.0.0.1", 0, client.getsockname())
            assert responder.transport is not None
            port = responder.transport.get_extra_info("sockname")[1]
            client.sendto(_discover(), ("127.0.0.1", port))
            loop = asyncio.get_running_loop()
            data = await asyncio.wait_for(loop.sock_recv(client, 2000), 5)
            responder.transport.close()
            return data

    reply = asyncio.run(main())
    assert reply[0] == 2 and proxydhcp.OPTION_43 in reply


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(XenkitError, match="has no netboot tree: run xenkit build --netboot"):
        asyncio.run(netboot.serve(tmp_path, "127.0.0.1", 0))
    _tree(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(XenkitError, match=f"port {port} on 127.0.0.1 is in use"):
            asyncio.run(netboot.serve(tmp_path, "127.0.0.1", port))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind any port")
def test_low_port_without_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    with pytest.raises(XenkitError, match="needs root"):
        asyncio.run(netboot.serve(tmp_path, "127.0.0.1", 69))


def test_cli_serve_without_a_build() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xenkit", "serve", "/no/such/build"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "is not a xenkit build" in proc.stderr
