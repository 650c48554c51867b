"""A worker process of the TFTP server (see workers): it runs the transfers the server hands
it, each on a thread of its own as the server would, and says how each ended.

    python -m xenkit.serve.tftp.worker FD

FD is its end of a SOCK_SEQPACKET socketpair with the server. The server closing it (or
exiting) stops the worker and its transfers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Callable

from xenkit.serve.tftp.channel import Slots
from xenkit.serve.tftp.packet import RRQ, Request
from xenkit.serve.tftp.transfer import Accepted, Transfer


class Lease(Slots):
    """The server's polling budget as one transfer here sees it: the slot the server took
    for it, if it took one, to be taken once; giving it back tells the server."""

    def __init__(self, granted: bool, on_give: Callable[[], None]) -> None:
        super().__init__(1 if granted else 0)
        self.on_give = on_give

    def give(self) -> None:
        super().give()
        self.on_give()


class Worker:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.lock = threading.Lock()  # transfers' threads report on the one socket
        self.running: dict[int, Transfer] = {}
        self.threads: list[threading.Thread] = []

    def report(self, *message: object) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.control.send(json.dumps(message).encode())

    def serve(self) -> None:
        """Take transfers until the server closes its end; then stop them."""
        self.report("ready")
        while True:
            data, fds, _, _ = socket.recv_fds(self.control, 65536, 2)
            if not data:
                break
            kind, serial, *rest = json.loads(data)
            if kind == "abort":
                with self.lock:
                    transfer = self.running.get(serial)
                if transfer is not None:
                    transfer.abort()
            elif kind == "run":
                self.start(fds, serial, *rest)
        with self.lock:
            for transfer in self.running.values():
                transfer.abort()
        for t in self.threads:
            t.join(5)

    def start(
        self,
        fds: list[int],
        serial: int,
        filename: str,
        mode: str,
        asked: dict[str, str],
        options: dict[str, int],
        client: list[str | int],
        polling: bool,
    ) -> None:
        """Run a transfer the server handed over: its open file and data socket are `fds`."""
        peer = (str(client[0]), int(client[1]))
        accepted = Accepted(
            Request(RRQ, filename, mode, asked),
            open(fds[0], "rb"),  # noqa: SIM115 - the transfer closes it
            options,
            peer,
            socket.socket(fileno=fds[1]),
        )
        lease = Lease(polling, lambda: self.report("unpolled", serial))
        try:
            transfer = Transfer(accepted, lease)
        except Exception as exc:
            accepted.close()
            self.report("failed", serial, str(exc), 0)
            return
        with self.lock:
            self.running[serial] = transfer

        def work() -> None:
            try:
                result = transfer.run()
            except BaseException as exc:  # reported, as the server's own threads would
                message: tuple[object, ...] = ("failed", serial, str(exc), transfer.sent_bytes)
            else:
                message = ("done", serial, result)
            with self.lock:
                del self.running[serial]
            self.report(*message)

        self.threads = [t for t in self.threads if t.is_alive()]
        thread = threading.Thread(target=work, name=f"tftp {peer[0]}", daemon=True)
        self.threads.append(thread)
        thread.start()


def main() -> None:
    # Ctrl-C reaches the whole process group: stopping is the server's to decide, and it
    # stops the worker by closing the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Worker(socket.socket(fileno=int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
