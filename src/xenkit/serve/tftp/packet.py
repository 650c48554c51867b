"""TFTP packets: opcodes and error codes, requests and the options a server accepts
(RFC 1350, RFC 2347 to 2349, RFC 7440), and the packets a server answers with."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
# Error codes (RFC 1350, 2347)
NOT_DEFINED, NOT_FOUND, ACCESS, DISK_FULL, ILLEGAL, UNKNOWN_TID, EXISTS, NO_USER, BAD_OPTIONS = (
    range(9)
)
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464
WINDOW_MAX = 65535


class PacketError(ValueError):
    """A malformed packet: the value is the TFTP error code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    opcode: int
    filename: str
    mode: str
    options: dict[str, str]


def parse_request(packet: bytes) -> Request:
    """An RRQ or WRQ: opcode, then NUL-terminated filename, mode and option/value pairs."""
    if len(packet) < 2:
        raise PacketError(0, "runt packet")  # not even an opcode: nothing to answer
    if len(packet) < 4:
        raise PacketError(ILLEGAL, "truncated request")
    (opcode,) = struct.unpack("!H", packet[:2])
    if opcode in (DATA, ACK, ERROR, OACK):
        # Strays from transfers that ended (the Pi bootloader sends ERRORs to port 69):
        # answering them would only start an exchange of errors.
        raise PacketError(0, f"stray packet (opcode {opcode})")
    if opcode not in (RRQ, WRQ):
        raise PacketError(ILLEGAL, f"unexpected opcode {opcode}")
    if not packet.endswith(b"\0"):
        raise PacketError(ILLEGAL, "request fields must end in NUL")
    fields = packet[2:-1].split(b"\0")
    if len(fields) < 2 or len(fields) % 2:
        raise PacketError(ILLEGAL, "request needs a filename, a mode and option pairs")
    try:
        words = [f.decode("ascii") for f in fields]
    except UnicodeDecodeError:
        raise PacketError(ILLEGAL, "request fields must be ASCII") from None
    filename, mode = words[0], words[1].lower()
    if not filename:
        raise PacketError(ILLEGAL, "empty filename")
    if mode not in ("octet", "netascii"):
        raise PacketError(ILLEGAL, f"unsupported mode {mode!r}")
    options: dict[str, str] = {}
    for name, value in zip(words[2::2], words[3::2], strict=True):
        options.setdefault(name.lower(), value)
    return Request(opcode, filename, mode, options)


def negotiate(options: dict[str, str], size: int | None) -> dict[str, int]:
    """The options this server accepts and their values. Unknown options and values out of
    range are dropped (RFC 2347: the server just leaves them out of the OACK), except a
    blksize below 8, which is an error."""
    out: dict[str, int] = {}
    for name, value in options.items():
        # isdigit() alone admits "²" and other digits int() refuses
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            continue
        n = int(value)
        if name == "blksize":
            if n < BLKSIZE_MIN:
                raise PacketError(BAD_OPTIONS, f"blksize {n} is below {BLKSIZE_MIN}")
            out[name] = min(n, BLKSIZE_MAX)
        elif name == "timeout" and 1 <= n <= 255:
            out[name] = n
        elif name == "tsize" and size:
            # An empty file needs no size; curl 7.88 stalls on "tsize 0" in an OACK.
            out[name] = size
        elif name == "windowsize" and 1 <= n <= WINDOW_MAX:
            out[name] = n
    return out


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace")[:200] + b"\0"


def oack_packet(options: dict[str, int]) -> bytes:
    body = b"".join(f"{k}\0{v}\0".encode() for k, v in options.items())
    return struct.pack("!H", OACK) + body
