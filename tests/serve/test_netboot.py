"""xenkit serve: board directories, the Pi's proxyDHCP, errors, and U-Boot netbooting Xen
from xenkit's own TFTP server (not QEMU's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import wire
from tests.conftest import make_spec, run_xenkit
from tests.tftpclient import fetch, rrq
from xenkit.bootscripts import card
from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.images import netdir
from xenkit.pipeline import build
from xenkit.run import emulate
from xenkit.serve import netboot, proxydhcp, tftp


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


def _discover(
    vendor: bytes = b"PXEClient:Arch:00000:UNDI:002001",
    arch: bool = True,
    kind: int = 0,
    user_class: bytes = b"",
    ipxe_features: bytes = b"",
) -> bytes:
    header = bytes([1, 1, 6, 0]) + b"\x12\x34\x56\x78" + b"\0\0\0\0" + b"\0" * 16
    header += bytes.fromhex("dca632010203") + b"\0" * 10 + b"\0" * 192
    opts = bytes([53, 1, 1]) + bytes([60, len(vendor)]) + vendor
    if arch:
        opts += bytes([93, 2, 0, kind])
    if user_class:
        opts += bytes([77, len(user_class)]) + user_class
    if ipxe_features:
        opts += bytes([175, len(ipxe_features)]) + ipxe_features
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


@pytest.mark.parametrize(("kind", "boot_file"), [(0, netdir.BIOS), (7, netdir.UEFI)])
def test_a_pc_is_offered_the_core_image_for_its_firmware(kind: int, boot_file: str) -> None:
    d = proxydhcp.parse(_discover(b"PXEClient:Arch:%05d:UNDI:003016" % kind, kind=kind))
    assert d.arch == kind
    reply = proxydhcp.offer(d, "192.168.1.10", netdir.BY_ARCH[kind])
    assert reply[16:20] == b"\0" * 4 and reply[20:24] == bytes([192, 168, 1, 10])  # siaddr
    assert reply[108:236].rstrip(b"\0") == boot_file.encode()  # the header's file field
    opts = reply[240:]
    assert bytes([43, 4]) + proxydhcp.OPTION_43_FILE in opts
    assert bytes([67, len(boot_file)]) + boot_file.encode() in opts
    assert proxydhcp.OPTION_43 not in opts


def test_a_pc_responder_ignores_a_client_it_has_no_core_image_for() -> None:
    async def main() -> list[bytes]:
        replies = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            responder = await proxydhcp.start(
                "192.168.1.10", "127.0.0.1", 0, client.getsockname(), {0: netdir.BIOS}
            )
            assert responder.transport is not None
            port = responder.transport.get_extra_info("sockname")[1]
            loop = asyncio.get_running_loop()
            for kind in (6, 0):  # 32-bit UEFI: none here; BIOS
                client.sendto(_discover(kind=kind), ("127.0.0.1", port))
            replies.append(await asyncio.wait_for(loop.sock_recv(client, 2000), 5))
            with contextlib.suppress(TimeoutError):
                replies.append(await asyncio.wait_for(loop.sock_recv(client, 2000), 0.5))
            responder.transport.close()
            return replies

    replies = asyncio.run(main())
    assert len(replies) == 1 and netdir.BIOS.encode() in replies[0]


def test_ipxe_is_offered_its_core_image_over_http_and_other_roms_over_tftp() -> None:
    """iPXE (QEMU's ROMs) names itself in option 77 and lists HTTP (19) among its features
    in option 175: it fetches http:// boot files. An iPXE without HTTP, or a firmware's own
    PXE client, gets the name on the TFTP server."""

    async def main() -> list[bytes]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            responder = await proxydhcp.start(
                "192.168.1.10", "127.0.0.1", 0, client.getsockname(), {0: netdir.BIOS}, 8080
            )
            assert responder.transport is not None
            port = responder.transport.get_extra_info("sockname")[1]
            loop = asyncio.get_running_loop()
            replies = []
            # iPXE's option 175 as QEMU's ROMs send it in part: PXEEXT (16), HTTP (19),
            # bzImage (24); then one with no HTTP; a plain ROM; a user class not iPXE's.
            with_http = bytes([16, 1, 2, 19, 1, 1, 24, 1, 1])
            for user_class, features in (
                (b"iPXE", with_http),
                (b"iPXE", bytes([16, 1, 2, 24, 1, 1])),
                (b"", b""),
                (b"iPXE-but-not", with_http),
            ):
                packet = _discover(user_class=user_class, ipxe_features=features)
                client.sendto(packet, ("127.0.0.1", port))
                replies.append(await asyncio.wait_for(loop.sock_recv(client, 2000), 5))
            responder.transport.close()
            return replies

    ipxe, no_http, rom, other = asyncio.run(main())
    url = f"http://192.168.1.10:8080/{netdir.BIOS}".encode()
    assert ipxe[108:236].rstrip(b"\0") == url
    assert bytes([67, len(url)]) + url in ipxe[240:]
    assert ipxe[20:24] == bytes([192, 168, 1, 10])  # next-server still: GRUB's TFTP
    for reply in (no_http, rom, other):
        assert reply[108:236].rstrip(b"\0") == netdir.BIOS.encode()


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
    with pytest.raises(
        XenkitError, match="has no netboot tree and no network root: build it with --netboot"
    ):
        asyncio.run(netboot.serve(tmp_path, "127.0.0.1", 0))
    _tree(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(XenkitError, match=f"port {port} on 127.0.0.1 is in use"):
            asyncio.run(netboot.serve(tmp_path, "127.0.0.1", port))
    for kwargs, message in (
        ({"port": 70000}, "--port 70000: give a port from 0 to 65535"),
        ({"http_port": -1}, "--http-port -1: give a port from 0 to 65535"),
        ({"proxy_dhcp": "nonsense"}, "--proxy-dhcp nonsense: give this server's IPv4"),
        ({"proxy_dhcp": "::1"}, "--proxy-dhcp ::1: give this server's IPv4"),
        ({"workers": -1}, f"--workers -1: give 0 to {tftp.MAX_WORKERS} "),
        ({"workers": 100000}, f"--workers 100000: give 0 to {tftp.MAX_WORKERS} "),
    ):
        with pytest.raises(XenkitError, match=message):
            asyncio.run(netboot.serve(tmp_path, "127.0.0.1", **kwargs))


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("0.0.0.0", "is no host's address"),
        ("255.255.255.255", "is a broadcast or reserved address"),
        ("240.0.0.1", "is a broadcast or reserved address"),
        ("224.0.0.1", "is a multicast address"),
        ("127.0.0.1", "is a loopback address"),
    ],
)
def test_a_next_server_no_pxe_client_can_reach_is_refused_before_listening(
    tmp_path: Path, address: str, why: str
) -> None:
    """It was advertised to every PXE client as where to fetch the boot files from."""
    _tree(tmp_path)
    stop = asyncio.Event()
    stop.set()  # were it let through, serve would return at once, not wait for Ctrl-C
    with pytest.raises(XenkitError, match=f"--proxy-dhcp {address} {why}, which a PXE") as exc:
        asyncio.run(netboot.serve(tmp_path, "127.0.0.1", 0, proxy_dhcp=address, stop=stop))
    assert "\n" not in str(exc.value)


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


# -- the first stage ----------------------------------------------------------------------------
def test_first_stage_with_a_static_address_needs_no_dhcp() -> None:
    spec = make_spec(
        board="qemu-virt", netboot=True, netboot_server="10.77.0.1", netboot_address="10.77.0.2/28"
    )
    lines = card.first_stage(spec).splitlines()
    assert "setenv ipaddr 10.77.0.2" in lines and "setenv netmask 255.255.255.240" in lines
    assert "setenv serverip 10.77.0.1" in lines
    assert not any(line.startswith("dhcp") for line in lines)
    assert lines.index("setenv serverip 10.77.0.1") < lines.index(
        "tftpb ${scriptaddr} boot2.scr || exit"
    )
    dhcp = card.first_stage(make_spec(board="qemu-virt", netboot=True)).splitlines()
    assert "dhcp || exit" in dhcp and not any("ipaddr" in line for line in dhcp)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"netboot_address": "10.0.0.2"}, "netboot_address needs netboot_server"),
        ({"netboot_address": "10.0.0.300", "netboot_server": "10.0.0.1"}, "is not an address"),
        ({"netboot_address": "fd00::2/64", "netboot_server": "10.0.0.1"}, "over IPv4"),
    ],
)
def test_bad_static_addresses_are_one_line_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(XenkitError, match=message) as err:
        make_spec(board="qemu-virt", netboot=True, **values)
    assert "\n" not in str(err.value)


# -- U-Boot on QEMU netboots from `xenkit serve` ------------------------------------------------
SERVER, CLIENT = "10.77.0.1", "10.77.0.2"
TRANSFER = re.compile(
    r"tftp: (?P<client>\S+) (?P<file>\S+) (?P<bytes>\d+) bytes in [\d.]+ s "
    r"\([\d.]+ MiB/s\)(?P<options>(?: \w+=\d+)*)$"
)


def transfers(log_text: str) -> list[tuple[str, str, int, dict[str, int]]]:
    """serve's per-transfer log lines: client, file, bytes, negotiated options."""
    out = []
    for line in log_text.splitlines():
        m = TRANSFER.search(line)
        if m:
            opts = dict(w.split("=") for w in m["options"].split())
            out.append(
                (m["client"], m["file"], int(m["bytes"]), {k: int(v) for k, v in opts.items()})
            )
    return out


def test_transfer_lines_parse() -> None:
    line = "xenkit: tftp: 10.0.0.2 xen 983048 bytes in 0.03 s (29.7 MiB/s) timeout=5 blksize=1468"
    assert transfers(line) == [("10.0.0.2", "xen", 983048, {"timeout": 5, "blksize": 1468})]
    assert transfers("xenkit: tftp: 10.0.0.2 x 5 bytes in 0.00 s (0.0 MiB/s)")[0][3] == {}


@pytest.fixture
def netns() -> Iterator[list[str]]:
    """A network namespace holding a tap device at SERVER/24, as the command prefix that runs
    a program inside it: QEMU's card is the other end, so xenkit's server is on a wire of
    its own (QEMU's user network answers TFTP itself and rewrites reply ports, which breaks
    TFTP's transfer IDs)."""
    with wire.namespace(f"{SERVER}/24") as inside:
        yield inside


@contextlib.contextmanager
def serving(
    inside: list[str], build_dir: Path, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`xenkit serve --emulated` on SERVER inside the namespace, until the block ends."""
    argv = [*inside, sys.executable, "-m", "xenkit", "serve"]
    argv += [str(build_dir), "--bind", SERVER, "--emulated"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "serve: TFTP on" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "xenkit serve did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("options", "expect"),
    [
        # Debian's U-Boot asks for 1468-byte blocks by default, one block per ACK: so the
        # first stage fetches boot2.scr (in both cases). It has no IP reassembly
        # (CONFIG_IP_DEFRAG) and caps tftpblocksize at 1468 itself, so the window is what
        # can grow: boot2.scr's preamble sets it for the files after it.
        ({"tftp_windowsize": 8}, {"blksize": 1468, "windowsize": 8}),
        # From trixie: its U-Boot 2025.01 has wget, so the second stage's files come over
        # HTTP from the same server, and Xen 4.20 boots.
        ({"debian": "trixie"}, {"blksize": 1468}),
    ],
    ids=["window8", "wget-trixie"],
)
def test_uboot_netboots_dom0_from_xenkit_serve(
    tmp_path: Path, netns: list[str], options: dict[str, object], expect: dict[str, int]
) -> None:
    out = tmp_path / "virt"
    spec = make_spec(
        board="qemu-virt",
        netboot=True,
        netboot_server=SERVER,
        netboot_address=f"{CLIENT}/24",
        **options,
    )
    build.build(spec, out)
    board = boards.load("qemu-virt")
    plan = wire.plan(netns, board, spec.ram, out, tmp_path / "run")
    serve_log = tmp_path / "serve.log"
    with serving(netns, out, serve_log):
        result = emulate.check(plan, 300)
    console = plan.console_log.read_text(errors="replace")
    served = serve_log.read_text()
    assert result.ok, result.reason + "\n" + console[-3000:] + "\n" + served
    assert f"TFTP from server {SERVER}; our IP address is {CLIENT}" in console
    assert "DHCP" not in console  # the first stage's static address, not a lease

    tree = out / "tftp" / "default"
    got = transfers(served)
    second = ["xen", "Image.gz", "initrd.cpio.gz", "emulate/qemu-virt.dtb"]
    if card.wget(spec):
        # Only the script over TFTP; the rest by wget, whole, from the tree's HTTP side.
        assert [name for _, name, _, _ in got] == ["boot2.scr"], served
        for name in second:
            size = (tree / name).stat().st_size
            assert f"serve: http {CLIENT} /{name} 200 {size} bytes" in served, name
        assert "Transfer Successful" in console
        second = []
    else:
        assert [name for _, name, _, _ in got] == ["boot2.scr", *second], served
    for client, name, size, negotiated in got:
        assert client == CLIENT
        emulated = tree / "emulate" / name if name == "boot2.scr" else tree / name
        assert size == emulated.stat().st_size, name
        # The first stage fetches boot2.scr with U-Boot's defaults: boot2.scr's own preamble
        # sets the options for the files after it.
        want = expect if name in second else {"blksize": 1468}
        assert {k: v for k, v in negotiated.items() if k != "timeout"} == want, name
    assert "0 failed, 0 refused" in served


# -- `xenkit serve -c`: rebuilds while serving --------------------------------------------------
def _xen_bootargs(script: bytes) -> str:
    line = next(ln for ln in script.decode().splitlines() if "xen,xen-bootargs" in ln)
    return line.split('"')[1]


@pytest.mark.debian
def test_serve_rebuilds_on_a_config_change_and_swaps_files_whole(tmp_path: Path) -> None:
    config = tmp_path / "virt.toml"
    config.write_text('board = "qemu-virt"\nnetboot = true\nxen_extra = "loglvl=warning"\n')
    out = tmp_path / "virt"
    made = run_xenkit("build", "-c", str(config), "-o", str(out))
    assert made.returncode == 0, made.stderr
    served_file = out / "tftp" / "default" / "boot2.source"
    old = served_file.read_bytes()
    assert _xen_bootargs(old).endswith("loglvl=warning")
    held = served_file.open("rb")  # what a transfer that started before the change reads

    log_path = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "xenkit", "serve", str(out), "--bind", "127.0.0.1"]
    argv += ["--port", "0", "-c", str(config)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"TFTP on 127\.0\.0\.1 port (\d+)", log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        addr = ("127.0.0.1", int(m[1]))
        assert fetch(addr, "boot2.source") == old

        # A transfer in flight across the rebuild: 8-byte blocks, paused after the first.
        slow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        slow.settimeout(10)
        slow.sendto(rrq("boot2.source", blksize=8, timeout=255), addr)
        oack, tid = slow.recvfrom(100)
        assert oack[:2] == b"\0\6"
        slow.sendto(struct.pack("!HH", tftp.ACK, 0), tid)
        first = slow.recv(100)

        # Fetches all through the rebuild: each must be the old file or the new one, whole.
        seen: list[bytes | Exception] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    # The server rebuilds in its own process: it may be slow to answer.
                    seen.append(fetch(addr, "boot2.source", timeout=1, tries=60))
                except Exception as exc:
                    seen.append(exc)
                time.sleep(0.02)

        thread = threading.Thread(target=hammer)
        thread.start()
        time.sleep(0.5)
        config.write_text('board = "qemu-virt"\nnetboot = true\nxen_extra = "loglvl=all"\n')
        deadline = time.monotonic() + 300
        while "serve: rebuilt" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            assert "rebuild failed" not in log_path.read_text(), log_path.read_text()
            time.sleep(0.2)
        new = served_file.read_bytes()
        # The hammer runs on until it has fetched the new file (a fetch begun before the
        # swap may still be under way on a loaded host).
        deadline = time.monotonic() + 60
        while new not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(90)

        assert _xen_bootargs(new).endswith("loglvl=all")
        assert fetch(addr, "boot2.source") == new  # the next boot gets the new script
        errors = [s for s in seen if isinstance(s, Exception)]
        assert not errors, errors[:3]
        assert {s for s in seen if isinstance(s, bytes)} <= {old, new}
        assert old in seen and new in seen  # the hammer really ran across the swap

        # The paused transfer resumes and still gets the old file, whole.
        got = [first]
        while len(got[-1]) == 4 + 8:
            slow.sendto(struct.pack("!HH", tftp.ACK, len(got)), tid)
            got.append(slow.recv(100))
            assert got[-1][:4] == struct.pack("!HH", tftp.DATA, len(got))
        slow.sendto(struct.pack("!HH", tftp.ACK, len(got)), tid)
        slow.close()
        assert b"".join(p[4:] for p in got) == old
        # Replaced by rename: the old inode is intact, nothing was rewritten in place.
        assert held.read() == old
        assert os.fstat(held.fileno()).st_ino != served_file.stat().st_ino
        # The server logs a transfer once its thread has seen the final ACK, which can be
        # after the client is done: wait for every one before stopping the server.
        fetched = 3 + sum(isinstance(s, bytes) for s in seen)  # and the first, new, slow
        done = re.compile(r"tftp: 127\.0\.0\.1 boot2\.source \d+ bytes in")
        deadline = time.monotonic() + 10
        while len(done.findall(log_path.read_text())) < fetched:
            assert time.monotonic() < deadline, log_path.read_text()[-500:]
            time.sleep(0.05)
    finally:
        held.close()
        proc.terminate()
        proc.wait(10)
    summary = re.search(
        r"tftp: (\d+) of (\d+) transfers completed.*; 0 failed", log_path.read_text()
    )
    assert summary and summary[1] == summary[2], log_path.read_text()[-500:]


def _edit(path: Path, text: str) -> None:
    """An edit the watch cannot miss: a new mtime even within the filesystem's tick."""
    mtime = path.stat().st_mtime + 1
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_the_watch_follows_the_files_each_rebuild_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """relist() runs first in each rebuild: a file it names from then on is watched, a
    bad config (XenkitError) or a bug in it is logged and keeps the last list."""
    config, kernel = tmp_path / "c.toml", tmp_path / "Image"
    config.write_text("a")
    kernel.write_text("k1")
    listed: list[list[Path]] = [[config], [config, kernel]]
    built: list[int] = []
    failures: list[BaseException] = [XenkitError("config: bad line"), KeyError("boom")]

    def relist() -> list[Path]:
        if config.read_text() == "bad" and failures:
            raise failures.pop(0)
        return listed[1] if config.read_text() != "a" else listed[0]

    async def scenario() -> None:
        watch = netboot.Watch([config], lambda: built.append(len(built)), 0.02, relist=relist)
        task = asyncio.create_task(watch.run())

        async def until(done: Callable[[], bool], what: str) -> None:
            # Wall-clock waits only bound a starved host's delay (two emulators beside).
            deadline = time.monotonic() + 30
            while not done():
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.02)

        await asyncio.sleep(0.05)
        _edit(config, "b")  # now names the kernel
        await until(lambda: len(built) == 1, "the first rebuild")
        assert watch.paths == [config, kernel]
        _edit(kernel, "k2")  # watched now: rebuilt
        await until(lambda: len(built) == 2, "the kernel's rebuild")
        # A bad config, then a bug: each logged, nothing built.
        for logged in ("config: bad line", "KeyError: 'boom'"):
            _edit(config, "bad")
            await until(lambda: logged in caplog.text, logged)  # noqa: B023 (awaited at once)
        assert watch.paths == [config, kernel] and len(built) == 2
        task.cancel()

    with caplog.at_level(logging.INFO, logger="xenkit"):
        asyncio.run(scenario())
    assert built == [0, 1]
    assert "rebuild failed (keeping the last build): config: bad line" in caplog.text
    assert "KeyError: 'boom' (a xenkit bug: please report it)" in caplog.text


def test_a_config_watch_builds_what_its_rebuild_read(tmp_path: Path) -> None:
    """watch_config reads the config once a rebuild and hands that reading to the build, so
    the build never reads the file a second time (nor warns twice) and builds what was
    listed."""
    config, kernel = tmp_path / "c.toml", tmp_path / "Image"
    config.write_text("one")
    kernel.write_text("k")
    reads: list[str] = []
    built: list[str] = []

    def load() -> str:
        reads.append(config.read_text())
        return reads[-1]

    def named(text: str) -> list[Path]:
        return [config, kernel] if text == "two" else [config]

    async def scenario() -> None:
        watch = netboot.watch_config(load(), load, named, built.append, 0.02)
        assert watch.paths == [config]
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)
        _edit(config, "two")
        for _ in range(200):
            await asyncio.sleep(0.02)
            if built:
                break
        task.cancel()
        assert watch.paths == [config, kernel]

    asyncio.run(scenario())
    assert reads == ["one", "two"] and built == ["two"]


def test_a_rebuild_that_hits_a_bug_logs_it_and_the_watch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception other than XenkitError once ended the watch task unnoticed: the server
    went on serving, and no later edit was ever rebuilt."""
    watched = tmp_path / "c.toml"
    watched.write_text("a")
    calls: list[int] = []

    def rebuild() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyError("boom")

    async def edit_twice() -> None:
        task = asyncio.create_task(netboot.Watch([watched], rebuild, interval=0.05).run())
        await asyncio.sleep(0.1)  # the watch takes its first stamp
        for text in ("b", "c"):
            _edit(watched, text)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if len(calls) == ord(text) - ord("a"):
                    break
        task.cancel()

    with caplog.at_level(logging.INFO, logger="xenkit"):
        asyncio.run(edit_twice())
    assert calls == [0, 1]
    assert "rebuild failed (keeping the last build): KeyError: 'boom'" in caplog.text
    assert "serve: rebuilt" in caplog.text
