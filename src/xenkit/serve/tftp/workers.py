"""Where a transfer runs: on a thread of the server's own process, or on a thread of one of
its worker processes, so that transfers use every core instead of sharing one interpreter
lock.

The server's process keeps everything but the data path: port 69, the lookup, opening the
file, the option reply's values, the transfer's two sockets (its guard stays, answering
strangers), the polling budget, the logs and the stats. A worker is handed the open file and
the data socket (SCM_RIGHTS over a socketpair) and runs the transfer as the server would; it
says when the transfer gives its polling slot back and how it ended. One port, one process
reading it: a retransmitted request is a request like any other, and a lookup that maps a
client to its board's directory runs where it always did. Each request goes to the worker
with the fewest transfers, so a crowd is split evenly whatever the clients' addresses.

Workers are started with fork and exec (subprocess), not multiprocessing's fork: the server
may already have threads (an HTTP server, the test harness's event loop), and a forked copy
of a threaded process may hold a lock no thread will release.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xenkit
from xenkit.core import log
from xenkit.serve.tftp.channel import Slots
from xenkit.serve.tftp.transfer import Accepted, Transfer

# How long the server waits for its workers to start (an interpreter and xenkit's TFTP
# modules each: about 60 ms measured, on two CPUs).
START_TIMEOUT = 10.0
# Beyond this many a typo, not a plan: each worker is an interpreter of its own (~15 MiB).
MAX_WORKERS = 256


def default_workers() -> int:
    """One worker a CPU this process may run on; none on one CPU, where a worker would add
    a process and a hop but no core."""
    cpus = len(os.sched_getaffinity(0))
    return cpus if cpus > 1 else 0


class Failed(Exception):
    """A transfer that ended in an error after `sent` bytes."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass
class Job:
    """A transfer under way: `done` is the bytes sent, None if the client declined after
    the option reply, or Failed; `abort` stops it."""

    done: asyncio.Future[int | None]
    abort: Callable[[], None]


def in_thread(transfer: Transfer) -> Job:
    """Run a transfer on a thread of its own in this process. Not the default executor: its
    few workers would queue the 50th concurrent client."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int | None] = loop.create_future()

    def settle(result: int | None, error: Failed | None) -> None:
        if done.done():  # cancelled: the server is closing
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = transfer.run()
        except BaseException as exc:  # one transfer's failure must never take the server down
            error = Failed(str(exc), transfer.sent_bytes)
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"tftp {transfer.client[0]}", daemon=True).start()
    return Job(done, transfer.abort)


@dataclass
class _Pending:
    done: asyncio.Future[int | None]
    polling: bool  # holds a slot of the server's polling budget


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    control: socket.socket
    ready: asyncio.Future[None]
    jobs: dict[int, _Pending] = field(default_factory=dict)
    alive: bool = True


class Workers:
    """`count` worker processes and the transfers handed to them; `polling` is the server's
    budget of transfers that may poll, one budget for all of them."""

    def __init__(self, count: int, polling: Slots) -> None:
        self.count = count
        self.polling = polling
        self.workers: list[_Worker] = []
        self.serial = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the workers and wait until each can take transfers. One that cannot is
        left out, said in a warning; with none, transfers run in this process."""
        self.loop = loop = asyncio.get_running_loop()
        # The worker must run this very xenkit, wherever the server found it.
        env = dict(os.environ)
        src = str(Path(xenkit.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        for _ in range(self.count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            with theirs:
                argv = [sys.executable, "-m", "xenkit.serve.tftp.worker", str(theirs.fileno())]
                proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), env=env)
            worker = _Worker(proc, ours, loop.create_future())
            loop.add_reader(ours, self._read, worker)
            self.workers.append(worker)
        await asyncio.wait([w.ready for w in self.workers], timeout=START_TIMEOUT)
        for w in self.workers:
            if not w.ready.done():
                self._lost(w)
            if not w.alive:
                log.warning("tftp: worker process %d did not start", w.proc.pid)

    def submit(self, accepted: Accepted) -> Job | None:
        """Hand a transfer (its open file and data socket) to the least busy worker, whose
        copies they then are; None if no worker is left to take it."""
        req, fds = accepted.req, [accepted.file.fileno(), accepted.sock.fileno()]
        while live := [w for w in self.workers if w.alive]:
            worker = min(live, key=lambda w: len(w.jobs))
            self.serial += 1
            serial = self.serial
            polling = self.polling.take()
            message = ["run", serial, req.filename, req.mode, req.options, accepted.options]
            message += [accepted.client, polling]
            try:
                socket.send_fds(worker.control, [json.dumps(message).encode()], fds)
            except OSError:
                if polling:
                    self.polling.give()
                self._lost(worker)
                continue
            accepted.close()
            done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            worker.jobs[serial] = _Pending(done, polling)
            return Job(done, functools.partial(self._send, worker, ["abort", serial]))
        return None

    def close(self) -> None:
        """Stop every worker: a closed socket ends its transfers and then it."""
        for w in self.workers:
            self._lost(w)
        for w in self.workers:
            try:
                w.proc.wait(5)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()

    def _send(self, worker: _Worker, message: list[object]) -> None:
        with contextlib.suppress(OSError):
            worker.control.send(json.dumps(message).encode())

    def _unpoll(self, job: _Pending) -> None:
        if job.polling:
            job.polling = False
            self.polling.give()

    def _read(self, worker: _Worker) -> None:
        """What a worker says: ready; a transfer gave its polling slot back; one ended."""
        while True:
            try:
                data = worker.control.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the worker is gone
                self._lost(worker)
                return
            kind, *rest = json.loads(data)
            if kind == "ready":
                if not worker.ready.done():
                    worker.ready.set_result(None)
                continue
            job = worker.jobs.get(rest[0])
            if job is None:
                continue
            self._unpoll(job)
            if kind == "unpolled":
                continue
            del worker.jobs[rest[0]]
            if job.done.done():  # cancelled: the server is closing
                continue
            if kind == "done":
                job.done.set_result(rest[1])
            else:
                job.done.set_exception(Failed(rest[1], rest[2]))

    def _lost(self, worker: _Worker) -> None:
        """A worker that exited, or is being stopped: its transfers fail, their slots come
        back."""
        if not worker.alive:
            return
        worker.alive = False
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(worker.control)
        worker.control.close()
        if not worker.ready.done():
            worker.ready.set_result(None)
        for job in worker.jobs.values():
            self._unpoll(job)
            if not job.done.done():
                job.done.set_exception(Failed(f"worker process {worker.proc.pid} exited", 0))
        worker.jobs.clear()
