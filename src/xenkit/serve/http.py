"""Static files over HTTP/1.1: GET and HEAD, one byte range, keep-alive, a thread per
connection. What a lazily fetched root asks of a server is many small files (chunks) from a
few clients; any static server does the same job (the README shows one), this one logs each
transfer and sums them up like the TFTP server.

Measured on loopback (benchmarks/chunk_serve.py): Python's file copy through the socket
with Nagle on gave 1.4 MiB/s for 128K chunks on one connection; TCP_NODELAY and sendfile
bring it to the order of lighttpd's figure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from xenkit.core import log
from xenkit.core.sizes import human
from xenkit.errors import XenkitError

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# A netboot tree served at / behind the routes: (URL path, client address) -> the file,
# found as TFTP finds it (per-board directories by the client's MAC), or None.
Lookup = Callable[[str, str], "Path | None"]


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    files: int = 0  # whole or partial answers with a body
    chunk_paths: set[str] = field(default_factory=set)  # the chunk store files among them
    repeats: int = 0  # chunks sent again (to another client, or one without a cache)
    cache_hits: int = 0  # 304 Not Modified: the client's (or a proxy's) copy was current
    missing: int = 0
    clients: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, client: str, path: str, sent: int, found: bool, fresh: bool = False) -> None:
        with self.lock:
            self.requests += 1
            self.clients.add(client)
            self.bytes += sent
            if not found:
                self.missing += 1
            elif fresh:
                self.cache_hits += 1
            elif sent:
                self.files += 1
                if path.endswith(".cacnk"):
                    if path in self.chunk_paths:
                        self.repeats += 1
                    self.chunk_paths.add(path)

    @property
    def chunks(self) -> int:
        """Chunks sent, each counted once."""
        return len(self.chunk_paths)

    def summary(self) -> str:
        return (
            f"serve: HTTP {self.requests} requests from {len(self.clients)} clients: "
            f"{self.files} files ({self.chunks} chunks, {self.repeats} sent again), "
            f"{human(self.bytes)} sent, {self.cache_hits} cache hits (304), "
            f"{self.missing} not found"
        )


def resolve(routes: Mapping[str, Path], url_path: str) -> Path | None:
    """The file a URL path names under the longest matching route, never outside it."""
    path = unquote(urlsplit(url_path).path)
    for prefix in sorted(routes, key=len, reverse=True):
        if path.startswith(prefix):
            base = routes[prefix].resolve()
            try:
                target = (base / path[len(prefix) :].lstrip("/")).resolve()
            except (RuntimeError, OSError):  # a symlink loop: as TFTP, not there
                return None
            if target != base and base not in target.parents:
                return None
            return target if target.is_file() else None
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per transfer, from _send

    def do_HEAD(self) -> None:
        self._send(body=False)

    def do_GET(self) -> None:
        self._send(body=True)

    def _fresh(self, etag: str, mtime: float) -> bool:
        """Whether the client's copy is current (RFC 9110 13.1: If-None-Match decides when
        given, else If-Modified-Since)."""
        if match := self.headers.get("If-None-Match"):
            return match.strip() == "*" or etag in (t.strip() for t in match.split(","))
        if since := self.headers.get("If-Modified-Since"):
            try:
                return int(mtime) <= parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _send(self, body: bool) -> None:
        client = self.client_address[0]
        target = resolve(self.server.routes, self.path)
        if target is None and self.server.tree is not None:
            target = self.server.tree(unquote(urlsplit(self.path).path), client)
        if target is None:
            self.server.stats.add(client, self.path, 0, False)
            self.send_error(HTTPStatus.NOT_FOUND)
            log.log(self.server.level, "serve: http %s %s 404", client, self.path)
            return
        st = target.stat()
        size = st.st_size
        # Validators as static servers give them, so a client or a caching proxy in front
        # (a lab's squid or nginx) asks again cheaply: a chunk never changes under its name.
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        if self._fresh(etag, st.st_mtime):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            self.server.stats.add(client, self.path, 0, True, fresh=True)
            log.log(self.server.level, "serve: http %s %s 304", client, self.path)
            return
        start, end = 0, size
        status = HTTPStatus.OK
        if m := RANGE.match(self.headers.get("Range", "")):
            first, last = m.groups()
            if first:
                start, end = int(first), min(size, int(last) + 1 if last else size)
            elif last:
                start = max(0, size - int(last))
            if start >= size or start >= end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.server.stats.add(client, self.path, 0, True)
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = 0
        if body:
            self.wfile.flush()
            with target.open("rb") as f:
                while sent < end - start:
                    n = os.sendfile(
                        self.connection.fileno(), f.fileno(), start + sent, end - start - sent
                    )
                    if n == 0:
                        break
                    sent += n
        self.server.stats.add(client, self.path, sent, True)
        log.log(self.server.level, "serve: http %s %s %d %d bytes", client, self.path, status, sent)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, addr: tuple[str, int], routes: Mapping[str, Path], level: int, tree: Lookup | None
    ) -> None:
        self.routes = dict(routes)
        self.tree = tree
        self.level = level
        self.stats = Stats()
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        # As the TFTP server: an IPv6 --bind (`::` takes IPv4 too) needs an IPv6 socket.
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that went away mid-transfer (or a stop that cut it off): a line, not
        # the socketserver's traceback.
        log.debug("serve: http connection from %s ended early", client_address)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.open_lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)


class HttpServer:
    """A running server: `stop()` ends it and cuts its open connections, as a server that
    goes away would."""

    def __init__(
        self,
        routes: Mapping[str, Path],
        bind: str = "0.0.0.0",
        port: int = 0,
        level: int = log.INFO,  # of the line each transfer logs
        tree: Lookup | None = None,  # a netboot tree, for what no route has
    ) -> None:
        try:
            self._server = _Server((bind, port), routes, level, tree)
        except OSError as exc:
            fix = "pick another --http-port" if exc.errno == errno.EADDRINUSE else "fix --bind"
            raise XenkitError(
                f"HTTP cannot listen on {bind} port {port} ({exc.strerror}): {fix}"
            ) from None
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def stats(self) -> Stats:
        return self._server.stats

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._server.open_lock:
            for s in list(self._server.open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
