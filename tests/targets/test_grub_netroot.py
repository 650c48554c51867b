"""The PC with its Dom0 root over the network: built into a chunk store, served by
`xenkit serve`, fetched lazily by the emulated PC through its front, cached on a local disk."""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import scenarios
from tests.conftest import make_spec
from xenkit.formats import caibx
from xenkit.images import chunkstore
from xenkit.pipeline import build
from xenkit.system import netroot

# Dom0's autorun on the network root: what it runs comes from the lazy root, and so do the
# files of the guest it starts (Dom0's default guest kernel and initramfs).
AUTORUN = r"""#!/bin/sh
say() { echo "XK $(cut -d' ' -f1 /proc/uptime) $*"; }
say root "$(awk '$2 == "/" { print $3 }' /proc/mounts)"
xl list >/tmp/xl.out 2>&1
say xl-list $? "$(awk 'NR == 2 { print $1 }' /tmp/xl.out)"
xenkit-start n1 >/tmp/create.out 2>&1
say create $? "$(tr '\n' ' ' </tmp/create.out)"
i=0
until grep -q "guest n1 ready" /var/log/xen/console/guest-n1.log 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 120 ] && break
    sleep 1
done
say banner "$(grep -c 'guest n1 ready' /var/log/xen/console/guest-n1.log 2>/dev/null)"
xl destroy n1
say filled-before "$(cat /run/xenkit/front/cache/filled 2>/dev/null || echo no)"
say done
# The test reads the server's log now, before the cache fill starts.
sleep 8
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`xenkit serve DIR --http-port PORT` as a user runs it, stopped and started at will."""

    def __init__(self, build_dir: Path, port: int, log: Path) -> None:
        self.build_dir, self.port, self.log = build_dir, port, log
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.runs += 1
        out = self.log.with_suffix(f".{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xenkit",
                "serve",
                str(self.build_dir),
                "--bind",
                "127.0.0.1",
                "--http-port",
                str(self.port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError(f"xenkit serve did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)

    def text(self) -> str:
        return "".join(
            self.log.with_suffix(f".{i}.log").read_text() for i in range(1, self.runs + 1)
        )

    def sent(self) -> int:
        return sum(int(n) for n in re.findall(r" 20[06] (\d+) bytes$", self.text(), re.M))

    def transfers(self) -> int:
        return len(re.findall(r" 20[06] \d+ bytes$", self.text(), re.M))


@pytest.fixture(scope="module")
def netbuild(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pc-net")
    (work / "autorun.sh").write_text(AUTORUN)
    out = work / "out"
    spec = make_spec(
        board="pc",
        net_root=True,
        dom0_autorun=str(work / "autorun.sh"),
        guest=[{"name": "n1", "memory": "128M"}],
    )
    m = build.build(spec, out)
    assert m.media == ("net.iso", "netroot")
    return out


@pytest.mark.debian
def test_the_boot_medium_pins_the_indexes_and_is_small(netbuild: Path) -> None:
    iso = netbuild / "net.iso"
    published = chunkstore.Published.read(netbuild / "netroot")
    # The medium holds Xen, Dom0's kernel and first stage; the root is only in the store.
    assert iso.stat().st_size < published.size / 1.5
    work = netbuild.parent / "pins"
    subprocess.run(
        [
            "xorriso",
            "-osirrox",
            "on",
            "-indev",
            str(iso),
            "-extract",
            "/boot/initrd.cpio.gz",
            str(work / "initrd"),
        ],
        check=True,
        capture_output=True,
    )
    data = (work / "initrd").read_bytes()
    # The indexes and the chunk order, uncompressed after the gzip'd first stage.
    assert data[:2] == b"\x1f\x8b" and b"netroot/chunks" in data
    for name in ("base", "build"):
        index = caibx.parse((netbuild / "netroot" / f"{name}.caibx").read_bytes())
        assert index.digest == "sha256" and index.chunks
        assert (netbuild / "netroot" / f"{name}.caibx").read_bytes() in data
    cfg = work / "grub.cfg"
    subprocess.run(
        [
            "xorriso",
            "-osirrox",
            "on",
            "-indev",
            str(iso),
            "-extract",
            "/boot/grub/grub.cfg",
            str(cfg),
        ],
        check=True,
        capture_output=True,
    )
    assert "module2 --nounzip /boot/initrd.cpio.gz" in cfg.read_text()


@pytest.mark.debian
def test_a_variant_in_a_shared_store_adds_only_its_own_chunks(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "extra.toml").write_text('board = "pc"\n[[guest]]\nname = "extra"\n')
    for name, config in (("a", []), ("b", ["-c", str(tmp_path / "extra.toml")])):
        before = {p.name for p in store.glob("*/*.cacnk")}
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "xenkit",
                "build",
                "--board",
                "pc",
                *config,
                "--net-root",
                "--net-store",
                str(store),
                "-o",
                str(tmp_path / name),
            ],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr[-2000:]
    # The second build says how much the store had: all of the base layer, most of its own.
    shared = [float(x) for x in re.findall(r"(\d+\.\d)% already in the store", made.stderr)]
    assert len(shared) == 2 and shared[1] == 100.0 and shared[0] > 80, made.stderr
    new = {p.name for p in store.glob("*/*.cacnk")} - before
    published = chunkstore.Published.read(tmp_path / "b" / "netroot")
    assert 0 < len(new) < published.chunks * 0.05, (len(new), published.chunks)
    assert (tmp_path / "b" / "netroot" / "store").resolve() == store


@pytest.mark.qemu
def test_the_pc_boots_its_lazy_root_through_a_bad_mirror_an_outage_and_then_from_cache(
    netbuild: Path,
) -> None:
    """Boot 1: the first mirror serves a corrupt chunk the first stage reads, the second is
    stopped and started again mid-boot; Dom0 comes up, runs xl and starts a guest from the
    lazy root, then fills its cache disk. Boot 2: no server at all, Dom0 and the guest come
    up from the cache."""
    work = netbuild.parent
    bad = work / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir()
    for f in netbuild.iterdir():
        if f.is_file() and f.suffix != ".iso":
            shutil.copy(f, bad / f.name)
    shutil.copytree(netbuild / "netroot", bad / "netroot", symlinks=False)
    # The build layer's first chunk holds the squashfs superblock: read by every boot.
    victim = caibx.parse((netbuild / "netroot" / "build.caibx").read_bytes()).chunks[0].id
    chunk = chunkstore.chunk_path(bad / "netroot" / "store", victim)
    raw = bytearray(gzip.decompress(chunk.read_bytes()))
    raw[600] ^= 0xFF
    chunk.write_bytes(gzip.compress(bytes(raw)))

    p_bad, p_good = _free_port(), _free_port()
    corrupt = Server(bad, p_bad, work / "serve-bad")
    good = Server(netbuild, p_good, work / "serve-good")
    cache = work / "cache.img"
    cache.unlink(missing_ok=True)
    mirrors = ["--mirror", f"http://10.0.2.2:{p_bad}/", "--mirror", f"http://10.0.2.2:{p_good}/"]
    console = netbuild / "run" / "console.log"
    console.unlink(missing_ok=True)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xenkit",
            "run",
            "--check",
            "--quiet",
            "--timeout",
            "1200",
            "--cache-disk",
            str(cache),
            "--wait-for",
            netroot.FILLED,
            *mirrors,
            str(netbuild),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        outage = False
        at_done = None
        deadline = time.monotonic() + 1300
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            # Both mirrors away for 12 s once the boot is well under way: the front
            # must wait for them rather than fail the read.
            if not outage and good.transfers() + corrupt.transfers() >= 60:
                good.stop()
                corrupt.stop()
                time.sleep(12)
                corrupt.start()
                good.start()
                outage = True
            text = console.read_text(errors="replace") if console.exists() else ""
            if at_done is None and re.search(r"^XK \S+ done", text, re.M):
                at_done = good.sent() + corrupt.sent()
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
        good.stop()
        corrupt.stop()
    text = console.read_text(errors="replace")
    assert run.returncode == 0, out[-3000:] + scenarios.tail(text)
    assert outage, "the boot ended before the outage could be staged"
    assert f"{netroot.ATTACHED} from http://10.0.2.2:{p_bad}/,http://10.0.2.2:{p_good}/" in text
    assert "cache on /dev/vda" in text
    assert f"chunk {victim} from http://10.0.2.2:{p_bad}/ {netroot.CORRUPT}" in text
    assert netroot.RETRYING in text
    assert re.search(r"chunk [0-9a-f]+ fetched from http://10\.0\.2\.2:\d+/ after \d+", text)
    _, r = scenarios.results(text)
    assert r["root"] == ["overlay"]
    assert r["xl-list"] == ["0", "Domain-0"]
    assert r["create"][0] == "0", r["create"]
    assert r["banner"] == ["1"], "the guest from the lazy root never printed its banner"
    assert r["filled-before"] == ["no"]
    # Bytes the servers sent until Dom0 had run xl and its guest: well under the root's.
    published = chunkstore.Published.read(netbuild / "netroot")
    assert at_done is not None
    assert at_done < published.stored * 0.7, (at_done, published)
    print(published.fetched(at_done, 0))

    # Boot 2: every server gone; the cache disk has it all.
    console.unlink()
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "xenkit",
            "run",
            "--check",
            "--quiet",
            "--timeout",
            "900",
            "--cache-disk",
            str(cache),
            "--mirror",
            f"http://10.0.2.2:{p_good}/",
            str(netbuild),
        ],
        capture_output=True,
        text=True,
    )
    text = console.read_text(errors="replace")
    assert again.returncode == 0, again.stdout[-3000:] + scenarios.tail(text)
    assert "cache on /dev/vda" in text and netroot.RETRYING not in text
    _, r = scenarios.results(text)
    assert r["banner"] == ["1"] and r["filled-before"] != ["no"], r
