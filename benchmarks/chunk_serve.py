"""Serving a network root's chunks: xenkit's HTTP server next to lighttpd and Python's
http.server, each in a process of its own, all serving the same casync store on loopback in
the same run.

Three ways of asking, as clients of a store do: a new connection per chunk (what Dom0's
front does with busybox wget), one keep-alive connection fetching every chunk in the index's
order (casync's own HTTP helper), and 8 such clients at once (a lab booting together).
Each row is MiB/s of chunk bytes, the median of the runs.

    python benchmarks/chunk_serve.py [--size MIB] [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import quick

from xenkit.images import chunkstore

CLIENTS = 8
LIBDIR = "usr/lib/lighttpd"
# The peer and the libraries Debian 12's lighttpd links that a minimal host may lack.
LIGHTTPD = ("lighttpd", "libxxhash0", "libnettle8", "libpcre2-8-0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_store(work: Path, size: int) -> tuple[Path, list[str]]:
    """A store of `size` bytes of half-compressible data (as a squashfs of binaries is)."""
    blob = work / "blob"
    with blob.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 19) + bytes(1 << 19))
    added = chunkstore.add(blob, work / "store", work / "blob.caibx")
    paths = [f"/{c.id[:4]}/{c.id}.cacnk" for c in added.index.chunks]
    return work / "store", paths


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status != 200:
        raise SystemExit(f"GET {path}: {answer.status}")
    return len(data)


def per_chunk(port: int, paths: list[str]) -> int:
    total = 0
    for p in paths:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        total += _get(conn, p)
        conn.close()
    return total


def keep_alive(port: int, paths: list[str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    total = sum(_get(conn, p) for p in paths)
    conn.close()
    return total


def many(port: int, paths: list[str]) -> int:
    totals = [0] * CLIENTS

    def one(i: int) -> None:
        totals[i] = keep_alive(port, paths)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(totals)


WAYS: dict[str, Callable[[int, list[str]], int]] = {
    "a connection per chunk": per_chunk,
    "one keep-alive client": keep_alive,
    f"{CLIENTS} keep-alive clients": many,
}


def rate(
    port: int, paths: list[str], way: Callable[[int, list[str]], int], runs: int, whole: int
) -> float:
    """MiB/s of `way`, having checked every run received the whole store (`whole` bytes per
    client): a server that answers short is not faster."""
    figures = []
    for _ in range(runs):
        start = time.perf_counter()
        sent = way(port, paths)
        elapsed = time.perf_counter() - start
        if sent % whole:
            raise SystemExit(f"port {port}: {sent} bytes received, not a multiple of {whole}")
        figures.append(sent / elapsed / 2**20)
    return statistics.median(figures)


def serve_lighttpd(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = work / "lighttpd.conf"
    conf.write_text(
        f'server.document-root = "{root}"\nserver.port = {port}\n'
        f'server.bind = "127.0.0.1"\nserver.errorlog = "{work}/lighttpd.log"\n'
    )
    peer = peers.unpacked("lighttpd", LIGHTTPD, ("usr/sbin/lighttpd",))
    argv = [str(peer / "usr/sbin/lighttpd"), "-D", "-f", str(conf), "-m", str(peer / LIBDIR)]
    proc = subprocess.Popen(argv, env=peers.env(peer))
    _wait(port)
    return proc, port


def serve_xenkit(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """xenkit's server in a process of its own, as `xenkit serve` runs it: in this one, it
    would share the interpreter lock with the clients, which the peers do not."""
    port = _free_port()
    code = (
        "import sys, threading; from pathlib import Path; "
        "from xenkit.serve.http import HttpServer; "
        "HttpServer({'/': Path(sys.argv[1])}, '127.0.0.1', int(sys.argv[2])); "
        "threading.Event().wait()"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(port)], env=env)
    _wait(port)
    return proc, port


def serve_python(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(port)
    return proc, port


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="MiB of chunks in the store")
    parser.add_argument("--runs", type=int, default=3)
    args = quick.parse_args(parser, argv, {"size": 8, "runs": 1}, "8 MiB, one run")
    with tempfile.TemporaryDirectory(prefix="xenkit-chunks-") as tmp:
        work = Path(tmp)
        store, paths = make_store(work, args.size << 20)
        whole = sum((store / p.lstrip("/")).stat().st_size for p in paths)
        print(
            f"xenkit chunk_serve: {len(paths)} chunks, {args.size} MiB, "
            f"{args.runs} run(s), loopback, MiB/s"
        )
        results: dict[str, dict[str, float]] = {}
        servers: dict[str, Callable[[], tuple[subprocess.Popen[bytes], int]]] = {
            "xenkit": lambda: serve_xenkit(store),
            "lighttpd": lambda: serve_lighttpd(store, work),
            "http.server": lambda: serve_python(store),
        }
        for name, start in servers.items():
            proc, port = start()
            try:
                results[name] = {w: rate(port, paths, f, args.runs, whole) for w, f in WAYS.items()}
            finally:
                proc.terminate()
                proc.wait()
        names = list(results)
        print(f"{'':<24}" + "".join(f"{n:>12}" for n in names) + f"{'x/lighttpd':>12}")
        for way in WAYS:
            cells = "".join(f"{results[n][way]:>12.1f}" for n in names)
            ratio = results["xenkit"][way] / results["lighttpd"][way]
            print(f"{way:<24}{cells}{ratio:>12.2f}")
        worst = min(results["xenkit"][w] / results["lighttpd"][w] for w in WAYS)
        print(f"xenkit's worst row is {worst:.2f}x lighttpd's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
