"""The network root's front, run here as Dom0 runs it: static busybox's httpd and CGI,
chrooted, fetching chunks from xenkit's HTTP server, with casync reading through it."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit.images import chunkstore
from xenkit.serve.http import HttpServer
from xenkit.system import artifacts, initramfs, netroot

APPLETS = (
    "sh",
    "wget",
    "timeout",
    "sha256sum",
    "gunzip",
    "awk",
    "cat",
    "mv",
    "rm",
    "mkdir",
    "rmdir",
    "sleep",
    "sync",
    "cut",
    "tr",
    "httpd",
    "wc",
    "ls",
    "renice",
)


@pytest.fixture(scope="module")
def amd64_busybox() -> Path:
    """Dom0's busybox on the PC: Debian's busybox-static for amd64, the one the front runs."""
    return artifacts.gather(make_spec(board="pc")).files["busybox"]


@dataclass
class Front:
    root: Path
    port: int
    store: Path
    index: Path
    mirrors: list[HttpServer]
    httpd: subprocess.Popen[bytes]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/c"

    def console(self) -> str:
        return (self.root / "dev/console").read_text()

    def set_mirrors(self, *servers: HttpServer | str) -> None:
        urls = [s if isinstance(s, str) else f"http://127.0.0.1:{s.port}/" for s in servers]
        (self.root / "etc/mirrors").write_text("".join(f"{u}\n" for u in urls))

    def chunk(self, n: int) -> str:
        return (self.root / "chunks").read_text().split()[n]

    def cached(self) -> set[str]:
        """The chunks in the front's cache, a casync store (PREFIX/ID.cacnk)."""
        return {p.stem for p in (self.root / "cache").glob("????/*.cacnk")}

    def get(self, chunk_id: str, timeout: float = 120) -> bytes:
        url = f"{self.url()}/{chunk_id[:4]}/{chunk_id}.cacnk"
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data: bytes = answer.read()
            return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def front(amd64_busybox: Path, tmp_path: Path) -> Iterator[Front]:
    if os.geteuid() != 0:
        pytest.fail("the front runs chrooted, as in Dom0: run the tests as root")
    blob = tmp_path / "root.img"
    blob.write_bytes(os.urandom(1 << 20) + bytes(1 << 20))
    store, index = tmp_path / "store", tmp_path / "root.caibx"
    added = chunkstore.add(blob, store, index)
    root = tmp_path / "front"
    for d in ("bin", "www/cgi-bin", "cache", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True)
    shutil.copy(amd64_busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    for a in APPLETS:
        (root / "bin" / a).symlink_to("busybox")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    (root / "dev/console").write_text("")  # a file here: the test reads what Dom0 would see
    for rel, data in netroot.front_files(initramfs.UDHCPC_SCRIPT).items():
        (root / "bin" / Path(rel).name).write_bytes(data)
    (root / "bin/front.cgi").rename(root / "www/cgi-bin/c")
    (root / "www/cgi-bin/c").chmod(0o755)
    (root / "chunks").write_bytes(netroot.chunk_lists({"root": [c.id for c in added.index.chunks]}))
    good = HttpServer({"/": store}, "127.0.0.1")
    port = _free_port()
    # -vv: each request is logged (to requests.log) with the URL it asked for.
    with (tmp_path / "requests.log").open("wb") as requests:
        httpd = subprocess.Popen(
            [
                "chroot",
                str(root),
                "/bin/httpd",
                "-f",
                "-vv",
                "-p",
                f"127.0.0.1:{port}",
                "-h",
                "/www",
            ],
            stderr=requests,
        )
    f = Front(root, port, store, index, [good], httpd)
    f.set_mirrors(good)
    for _ in range(300):  # 30 s at most, on a starved host
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the front's httpd did not listen within 30 s")
    yield f
    httpd.kill()
    httpd.wait()
    # CGIs still retrying a gone mirror (for ten minutes in Dom0) go with the test.
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "root").resolve() == root.resolve():
                os.kill(int(proc.name), 9)
        except OSError:
            continue
    for m in f.mirrors:
        m.stop()


def _corrupt_copy(store: Path, dest: Path, chunk_id: str) -> None:
    shutil.copytree(store, dest)
    bad = chunkstore.chunk_path(dest, chunk_id)
    data = bytearray(gzip.decompress(bad.read_bytes()))
    data[100] ^= 0xFF
    bad.write_bytes(gzip.compress(bytes(data)))


@pytest.mark.debian
def test_casync_reads_the_whole_root_through_the_front_and_it_is_cached(front: Front) -> None:
    out = front.root.parent / "out.img"
    env = {**os.environ, "TMPDIR": str(front.root.parent)}
    subprocess.run(
        ["casync", "extract", f"--store={front.url()}", str(front.index), str(out)],
        check=True,
        env=env,
        timeout=300,
    )
    assert out.read_bytes() == (front.root.parent / "root.img").read_bytes()
    assert set((front.root / "chunks").read_text().split()) <= front.cached()
    # Served from the cache with every mirror gone.
    front.mirrors[0].stop()
    assert gzip.decompress(front.get(front.chunk(0)))


@pytest.mark.debian
def test_casync_reads_what_the_cache_holds_without_asking_the_front(front: Front) -> None:
    """As Dom0 runs it: the cache is casync's extra store, read before the front is asked.
    With the even chunks cached, casync asks the front for the odd ones only; once all are
    cached it reads the root with the front stopped."""
    ids = (front.root / "chunks").read_text().split()
    for chunk_id in ids[::2]:  # as an earlier boot's fill left them
        kept = chunkstore.chunk_path(front.root / "cache", chunk_id)
        kept.parent.mkdir(exist_ok=True)
        shutil.copy(chunkstore.chunk_path(front.store, chunk_id), kept)
    assert front.cached() == set(ids[::2])
    log = front.root.parent / "requests.log"
    before = log.read_text()
    out = front.root.parent / "out.img"
    env = {**os.environ, "TMPDIR": str(front.root.parent)}
    argv = ["casync", "extract", f"--store={front.url()}", f"--extra-store={front.root}/cache"]
    subprocess.run([*argv, str(front.index), str(out)], env=env, check=True, timeout=120)
    assert out.read_bytes() == (front.root.parent / "root.img").read_bytes()
    asked = set(re.findall(r"url:/cgi-bin/c/\w{4}/(\w{64})\.cacnk", log.read_text()[len(before) :]))
    # Only chunks not cached were asked for (some of them fetched ahead, so not all).
    assert asked and asked <= set(ids[1::2]), (asked, ids)
    # Every chunk is cached now: the root reads with no front at all.
    assert front.cached() == set(ids)
    front.httpd.kill()
    front.httpd.wait()
    out.unlink()
    subprocess.run([*argv, str(front.index), str(out)], env=env, check=True, timeout=60)
    assert out.read_bytes() == (front.root.parent / "root.img").read_bytes()


@pytest.mark.debian
def test_a_corrupt_chunk_is_reported_not_used_and_the_next_mirror_serves_it(
    front: Front,
) -> None:
    victim = front.chunk(1)
    _corrupt_copy(front.store, front.root.parent / "bad", victim)
    bad = HttpServer({"/": front.root.parent / "bad"}, "127.0.0.1")
    front.mirrors.append(bad)
    front.set_mirrors(bad, front.mirrors[0])
    data = gzip.decompress(front.get(victim))
    assert hashlib.sha256(data).hexdigest() == victim
    console = front.console()
    assert f"chunk {victim} from http://127.0.0.1:{bad.port}/ {netroot.CORRUPT}" in console
    assert "not used, trying the next mirror" in console


@pytest.mark.debian
def test_a_chunk_only_a_corrupt_mirror_has_is_never_served(front: Front) -> None:
    victim = front.chunk(2)
    _corrupt_copy(front.store, front.root.parent / "bad", victim)
    front.mirrors[0].stop()
    bad = HttpServer({"/": front.root.parent / "bad"}, "127.0.0.1")
    front.mirrors.append(bad)
    front.set_mirrors(bad)
    # The front keeps retrying (for ten minutes in Dom0); the client sees nothing meanwhile.
    with pytest.raises(TimeoutError):
        front.get(victim, timeout=12)
    assert victim not in front.cached()
    assert front.console().count(netroot.CORRUPT) >= 2
    assert netroot.RETRYING in front.console()


@pytest.mark.debian
def test_a_mirror_that_comes_back_is_retried_until_the_chunk_arrives(front: Front) -> None:
    victim = front.chunk(3)
    front.mirrors[0].stop()
    port = front.mirrors[0].port
    got: list[bytes] = []
    import threading

    t = threading.Thread(target=lambda: got.append(front.get(victim)))
    t.start()
    time.sleep(7)
    assert netroot.RETRYING in front.console()
    front.mirrors.append(HttpServer({"/": front.store}, "127.0.0.1", port))
    t.join(timeout=60)
    assert got and gzip.decompress(got[0])
    assert f"chunk {victim} fetched from http://127.0.0.1:{port}/ after" in front.console()


@pytest.mark.debian
def test_fill_puts_every_chunk_in_the_cache_and_marks_it(front: Front) -> None:
    subprocess.run(
        ["chroot", str(front.root), "/bin/sh", "-c", ". /bin/front.sh && fill"],
        check=True,
        timeout=300,
    )
    ids = (front.root / "chunks").read_text().split()
    assert front.cached() >= set(ids)
    assert (front.root / "cache/filled").read_text().strip() == str(len(ids))
    assert netroot.FILLED in front.console()


def test_the_first_stage_gives_casync_the_cache_as_a_store_laid_out_for_it() -> None:
    stage = netroot.stage_script(netroot.Net(layers=("base",)), ("/a.sqfs",))
    assert f"f={netroot.FRONT}\n" in stage
    (mkdev,) = [ln for ln in stage.replace("\\\n", " ").splitlines() if "casync mkdev " in ln]
    # casync reading the lazy layers outlives the handover: it runs in the front's chroot,
    # which moves with /run, where its cache is /cache.
    assert "chroot $f /usr/bin/casync mkdev " in mkdev and "--extra-store=/cache " in mkdev
    # Every prefix directory is made before casync or the front look there.
    layout = stage.index("mkdir -p $(cut -c 1-4")
    assert layout < stage.index("/bin/httpd") < stage.index("casync mkdev ")
