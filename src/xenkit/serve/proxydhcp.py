"""A proxyDHCP responder for network boots: it answers a PXE DHCPDISCOVER with where the
TFTP server is, and never hands out addresses (the LAN's own DHCP server does that).

A PC's PXE firmware is given the boot file for its architecture (DHCP option 93) in the
offer itself, with next-server set and PXE discovery control 8 ("boot the file in the
offer"): iPXE, QEMU's PXE firmware, then skips the ProxyDHCPREQUEST to port 4011 (its
dhcp_has_pxeopts: next-server and a boot file name are enough). A client that says it is
iPXE built with HTTP (user class 77, feature 19 in option 175) can fetch its boot file
over HTTP: given the port of the HTTP server beside the TFTP one, it gets a URL there
instead of a name, and only what the boot file itself asks for then comes over TFTP.

For the Raspberry Pi 4's EEPROM bootloader (which calls itself an x86 BIOS client, arch 0,
so a build's tree decides which kind of offer it gets), the reply is the one dnsmasq sends
with `dhcp-range=...,proxy` and `pxe-service=0,"Raspberry Pi Boot"`, which the bootloader
is known to follow: no addresses in the header, options 53 (offer), 54 (this server), 60
("PXEClient"), the client's 97 echoed, and 43 with PXE discovery control, a menu prompt and
the "Raspberry Pi Boot" item.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from xenkit.core import log

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER = 1, 2
PI_BOOT = b"Raspberry Pi Boot"
# Option 43: discovery control 3, menu prompt (timeout 0, "PXE"), boot item type 0 with text.
OPTION_43 = (
    b"\x06\x01\x03"
    + b"\x0a\x04\x00PXE"
    + b"\x09"
    + bytes([3 + len(PI_BOOT)])  # item type (2) + text length (1) + text
    + b"\x00\x00"
    + bytes([len(PI_BOOT)])
    + PI_BOOT
    + b"\xff"
)
# Option 43 for a PC: discovery control 8, use the boot file in this offer.
OPTION_43_FILE = b"\x06\x01\x08\xff"


class NotPxe(ValueError):
    pass


@dataclass(frozen=True)
class Discover:
    xid: bytes
    chaddr: bytes  # 16 bytes as in the header
    flags: bytes
    giaddr: bytes
    vendor_class: str
    client_arch: bytes | None
    uuid: bytes | None
    user_class: bytes = b""
    ipxe_features: bytes = b""  # option 175, iPXE's own encapsulated options

    @property
    def ipxe_http(self) -> bool:
        """iPXE built with HTTP: it names itself in option 77 (QEMU's network boot ROMs
        are iPXE) and lists its features in option 175, HTTP as sub-option 19. An iPXE
        built without HTTP would be handed a URL it cannot fetch."""
        if self.user_class != b"iPXE":
            return False
        try:
            return 19 in _options(self.ipxe_features)
        except NotPxe:  # a malformed feature list promises nothing
            return False

    @property
    def mac(self) -> str:
        return "-".join(f"{b:02x}" for b in self.chaddr[:6])

    @property
    def arch(self) -> int | None:
        """The client's architecture (option 93's first type), None if it gave none."""
        return int.from_bytes(self.client_arch[:2], "big") if self.client_arch else None


def parse(packet: bytes) -> Discover:
    """A PXE DHCPDISCOVER, or NotPxe for anything this responder must stay out of."""
    if len(packet) < 240 or packet[0] != 1 or packet[236:240] != MAGIC:
        raise NotPxe("not a DHCP request")
    options = _options(packet[240:])
    if options.get(53) != bytes([DISCOVER]):
        raise NotPxe("not a DISCOVER")
    vendor = options.get(60, b"").decode("ascii", "replace")
    if not vendor.startswith("PXEClient") or 93 not in options:
        raise NotPxe("not a PXE client")
    return Discover(
        packet[4:8],
        packet[28:44],
        packet[10:12],
        packet[24:28],
        vendor,
        options.get(93),
        options.get(97),
        options.get(77, b""),
        options.get(175, b""),
    )


def _options(data: bytes) -> dict[int, bytes]:
    """DHCP options (code, length, value; pad and end as RFC 2132 has them) by code, the
    first of each: a packet's, or those encapsulated in one option (iPXE's 175)."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            raise NotPxe("truncated option")
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise NotPxe("truncated option")
        options.setdefault(code, value)
        i += 2 + length
    return options


def offer(d: Discover, server: str, boot_file: str = "") -> bytes:
    """The proxy offer: yiaddr and ciaddr zero, broadcast flag set; with `boot_file` (a
    PC), siaddr and the file set, else (the Pi) siaddr zero and the boot menu."""
    ip = ipaddress.IPv4Address(server).packed
    name = boot_file.encode()
    if len(name) > 127:
        raise ValueError(f"boot file name {boot_file!r} is longer than DHCP's 127 bytes")
    header = struct.pack("!BBBB", 2, 1, 6, 0) + d.xid + b"\0\0" + b"\x80\x00"
    header += b"\0" * 8 + (ip if name else b"\0" * 4) + d.giaddr + d.chaddr
    header += b"\0" * 64 + name.ljust(128, b"\0")
    opts = bytes([53, 1, OFFER]) + bytes([54, 4]) + ip + bytes([60, 9]) + b"PXEClient"
    if d.uuid is not None:
        opts += bytes([97, len(d.uuid)]) + d.uuid
    if name:
        opts += bytes([43, len(OPTION_43_FILE)]) + OPTION_43_FILE
        opts += bytes([67, len(name)]) + name + b"\xff"
    else:
        opts += bytes([43, len(OPTION_43)]) + OPTION_43 + b"\xff"
    packet = header + MAGIC + opts
    return packet + b"\0" * max(0, 300 - len(packet))


class Responder(asyncio.DatagramProtocol):
    """Answers every PXE client with the Pi's offer, or, given `boot_files` (a PC tree:
    architecture -> file), those clients it has a file for."""

    def __init__(
        self,
        server_ip: str,
        reply_to: tuple[str, int] = ("255.255.255.255", 68),
        boot_files: Mapping[int, str] | None = None,
        http_port: int = 0,
    ):
        self.server_ip = server_ip
        self.boot_files = boot_files
        self.http_port = http_port
        self.reply_to = reply_to
        self.answered = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            d = parse(data)
        except NotPxe:
            return
        boot_file = ""
        if self.boot_files is not None:
            boot_file = self.boot_files.get(d.arch if d.arch is not None else -1, "")
            if not boot_file:
                log.info(
                    "proxydhcp: %s (%s): no boot file for client architecture %s here",
                    d.mac,
                    d.vendor_class,
                    d.arch,
                )
                return
            if d.ipxe_http and self.http_port:
                boot_file = f"http://{self.server_ip}:{self.http_port}/{boot_file}"
        log.info(
            "proxydhcp: %s (%s): TFTP server is %s%s",
            d.mac,
            d.vendor_class,
            self.server_ip,
            f", boot file {boot_file}" if boot_file else "",
        )
        assert self.transport is not None
        with contextlib.suppress(OSError):
            self.transport.sendto(offer(d, self.server_ip, boot_file), self.reply_to)
            self.answered += 1


async def start(
    server_ip: str,
    bind: str = "0.0.0.0",
    port: int = 67,
    reply_to: tuple[str, int] = ("255.255.255.255", 68),
    boot_files: Mapping[int, str] | None = None,
    http_port: int = 0,
) -> Responder:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((bind, port))
    responder = Responder(server_ip, reply_to, boot_files, http_port)
    await loop.create_datagram_endpoint(lambda: responder, sock=sock)
    return responder
