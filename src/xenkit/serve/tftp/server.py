"""The server: requests on port 69 answered on the event loop, each transfer then run on a
thread of its own, in this process or in a worker process (see workers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from xenkit.core import log
from xenkit.serve.tftp.channel import Slots, answer_stranger, polling_slots, transfer_sockets
from xenkit.serve.tftp.packet import (
    ACCESS,
    WRQ,
    PacketError,
    Request,
    error_packet,
    negotiate,
    parse_request,
)
from xenkit.serve.tftp.source import Refused, resolve
from xenkit.serve.tftp.transfer import Accepted, Transfer
from xenkit.serve.tftp.workers import Failed, Job, Workers, in_thread


@dataclass
class Stats:
    transfers: int = 0
    completed: int = 0
    failed: int = 0
    bytes: int = 0
    refused: int = 0
    malformed: int = 0


Lookup = Callable[[str, tuple[str, int]], Path]


@dataclass
class Server:
    """Serve files below `root` (or whatever `lookup` maps a request to)."""

    root: Path
    lookup: Lookup | None = None
    stats: Stats = field(default_factory=Stats)
    on_transfer: Callable[[dict[str, object]], None] | None = None
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Transfers that may poll (SPIN) at once: one budget for all of this server's, whatever
    # process they run in.
    polling: Slots = field(default_factory=polling_slots)
    # Worker processes to run the transfers on, started by the first listen(); 0 runs them
    # on threads of this process.
    workers: int = 0
    pool: Workers | None = None

    def find(self, filename: str, client: tuple[str, int]) -> Path:
        if self.lookup is not None:
            return self.lookup(filename, client)
        return resolve(self.root, filename)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(host, port), family=family
        )
        self.transports.append(transport)
        if self.workers and self.pool is None:
            self.pool = Workers(self.workers, self.polling)
            await self.pool.start()
        sockname = transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    def close(self) -> None:
        for t in self.transports:
            t.close()
        for task in self.tasks:
            task.cancel()
        if self.pool is not None:
            self.pool.close()

    def request(self, data: bytes, client: tuple[str, int], local: str) -> None:
        try:
            req = parse_request(data)
        except PacketError as exc:
            self.stats.malformed += 1
            log.debug("tftp: bad packet from %s: %s", client[0], exc)
            if exc.code:
                self._send_error(client, local, exc.code, str(exc))
            return
        if req.opcode == WRQ:
            self.stats.refused += 1
            self._send_error(client, local, ACCESS, "read-only server")
            return
        task = asyncio.get_running_loop().create_task(self._serve(req, client, local))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send_error(self, client: tuple[str, int], local: str, code: int, message: str) -> None:
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((local, 0))
            s.sendto(error_packet(code, message), client)

    async def _serve(self, req: Request, client: tuple[str, int], local: str) -> None:
        self.stats.transfers += 1
        started = time.monotonic()
        try:
            path = self.find(req.filename, client)
            f = path.open("rb")
        except Refused as exc:
            self.stats.refused += 1
            log.info("tftp: %s %s refused: %s", client[0], req.filename, exc)
            self._send_error(client, local, exc.code, str(exc))
            return
        except OSError as exc:
            self.stats.refused += 1
            self._send_error(client, local, ACCESS, exc.strerror or "cannot open")
            return
        try:
            size = os.fstat(f.fileno()).st_size if req.mode == "octet" else None
            options = negotiate(req.options, size)
            sock, guard = transfer_sockets(client, local)
        except PacketError as exc:
            f.close()
            self.stats.refused += 1
            self._send_error(client, local, exc.code, str(exc))
            return
        except OSError as exc:
            f.close()
            self.stats.failed += 1
            log.info("tftp: %s %s failed: %s", client[0], req.filename, exc)
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(guard, answer_stranger, guard, client)
        try:
            job = self._start(Accepted(req, f, options, client, sock))
            try:
                sent = await job.done
            except asyncio.CancelledError:
                job.abort()
                raise
        except Failed as exc:
            self.stats.failed += 1
            log.info(
                "tftp: %s %s failed after %d bytes: %s", client[0], req.filename, exc.sent, exc
            )
            return
        finally:
            loop.remove_reader(guard)
            guard.close()
        seconds = max(time.monotonic() - started, 1e-6)
        if sent is None:
            log.info("tftp: %s %s: client stopped after the option reply", client[0], req.filename)
            return
        self.stats.completed += 1
        self.stats.bytes += sent
        record = {
            "client": client[0],
            "file": req.filename,
            "bytes": sent,
            "seconds": round(seconds, 3),
            "options": options,
        }
        log.info(
            "tftp: %s %s %d bytes in %.2f s (%.1f MiB/s)%s",
            client[0],
            req.filename,
            sent,
            seconds,
            sent / seconds / 2**20,
            "".join(f" {k}={v}" for k, v in options.items()),
        )
        if self.on_transfer:
            self.on_transfer(record)

    def _start(self, accepted: Accepted) -> Job:
        """The transfer started on a worker, or on a thread here when there are none."""
        job = self.pool.submit(accepted) if self.pool else None
        if job is not None:
            return job
        try:
            transfer = Transfer(accepted, self.polling)
        except OSError as exc:
            accepted.close()
            raise Failed(str(exc), 0) from None
        return in_thread(transfer)

    def summary(self) -> str:
        s = self.stats
        return (
            f"tftp: {s.completed} of {s.transfers} transfers completed, {s.bytes} bytes; "
            f"{s.failed} failed, {s.refused} refused, {s.malformed} malformed packets"
        )


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.local = "0.0.0.0"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.local = transport.get_extra_info("sockname")[0]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.request(data, (addr[0], addr[1]), self.local)

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp: listener: %s", exc)
