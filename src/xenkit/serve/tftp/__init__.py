"""A read-only TFTP server on asyncio, for netbooting boards.

RFC 1350 (reads, octet and netascii), RFC 2347 option negotiation, RFC 2348 blksize,
RFC 2349 timeout and tsize, RFC 7440 windowsize; IPv4 and IPv6; block numbers roll over to
0 for files past 65535 blocks. Each transfer runs on its own port (its TID) with its own
retransmission timer; an ACK that does not advance the window never causes a resend, which
is what keeps the Sorcerer's Apprentice away. A client that gives up right after the OACK
(the Pi 4 bootloader probes file sizes that way) is let go quietly. Files are opened once
when the request arrives, so a file replaced while in flight is sent whole, old or new.

packet: requests, options and the packets answered; source: the file a request names and its
blocks; channel: a transfer's sockets and how it waits for its client; transfer: the
exchange of blocks and ACKs; server: the listener; workers: the thread each transfer runs on,
in the server's process or in a worker process (worker: what such a process runs), so that
a crowd of transfers uses every core.
"""

from xenkit.serve.tftp.channel import (
    SPIN,
    SPIN_MISSES,
    Channel,
    Slots,
    answer_stranger,
    polling_slots,
    transfer_sockets,
)
from xenkit.serve.tftp.packet import (
    ACCESS,
    ACK,
    BAD_OPTIONS,
    BLKSIZE_MAX,
    BLKSIZE_MIN,
    DATA,
    DISK_FULL,
    ERROR,
    EXISTS,
    ILLEGAL,
    NO_USER,
    NOT_DEFINED,
    NOT_FOUND,
    OACK,
    RRQ,
    UNKNOWN_TID,
    WINDOW_MAX,
    WRQ,
    PacketError,
    Request,
    error_packet,
    negotiate,
    oack_packet,
    parse_request,
)
from xenkit.serve.tftp.server import (
    Lookup,
    Server,
    Stats,
)
from xenkit.serve.tftp.source import (
    Netascii,
    Refused,
    Source,
    TransferFailed,
    open_source,
    resolve,
)
from xenkit.serve.tftp.transfer import (
    DEFAULT_TIMEOUT,
    GSO_BYTES,
    GSO_SEGMENTS,
    LOCKSTEP_BLOCKS,
    LOCKSTEP_READ,
    PACE,
    RETRIES,
    UDP_SEGMENT,
    Accepted,
    Transfer,
)
from xenkit.serve.tftp.workers import (
    MAX_WORKERS,
    Failed,
    Workers,
    default_workers,
)

__all__ = [
    "ACCESS",
    "ACK",
    "BAD_OPTIONS",
    "BLKSIZE_MAX",
    "BLKSIZE_MIN",
    "DATA",
    "DEFAULT_TIMEOUT",
    "DISK_FULL",
    "ERROR",
    "EXISTS",
    "GSO_BYTES",
    "GSO_SEGMENTS",
    "ILLEGAL",
    "LOCKSTEP_BLOCKS",
    "LOCKSTEP_READ",
    "MAX_WORKERS",
    "NOT_DEFINED",
    "NOT_FOUND",
    "NO_USER",
    "OACK",
    "PACE",
    "RETRIES",
    "RRQ",
    "SPIN",
    "SPIN_MISSES",
    "UDP_SEGMENT",
    "UNKNOWN_TID",
    "WINDOW_MAX",
    "WRQ",
    "Accepted",
    "Channel",
    "Failed",
    "Lookup",
    "Netascii",
    "PacketError",
    "Refused",
    "Request",
    "Server",
    "Slots",
    "Source",
    "Stats",
    "Transfer",
    "TransferFailed",
    "Workers",
    "answer_stranger",
    "default_workers",
    "error_packet",
    "negotiate",
    "oack_packet",
    "open_source",
    "parse_request",
    "polling_slots",
    "resolve",
    "transfer_sockets",
]
