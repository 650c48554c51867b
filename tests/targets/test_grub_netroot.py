"""The PC with its Dom0 root over the network: built into a chunk store, netbooted (PXE)
and served by `xenkit serve`, fetched lazily by the emulated PC through its front, cached on
a local disk."""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import scenarios, wire
from tests.conftest import make_spec
from xenkit.bootscripts import grubcfg
from xenkit.config import boards
from xenkit.formats import caibx
from xenkit.images import chunkstore, netdir
from xenkit.pipeline import build, manifest
from xenkit.run import emulate, qemu
from xenkit.system import netroot
from xenkit.targets import grub

# The namespace's wire: xenkit serve and the LAN's DHCP server (busybox udhcpd) on SERVER.
SERVER = "10.77.0.1"
GOOD, BAD = 8080, 8081  # the mirrors' HTTP ports, in the order Dom0 tries them
UDHCPD = """start 10.77.0.10
end 10.77.0.20
interface tap0
lease_file {leases}
option subnet 255.255.255.0
option router 10.77.0.1
"""


class Server:
    """`xenkit serve DIR` in the namespace as a user runs it, stopped and started at will."""

    def __init__(self, inside: list[str], build_dir: Path, log: Path, *options: str) -> None:
        self.inside, self.build_dir, self.log, self.options = inside, build_dir, log, options
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.runs += 1
        log = self.log.with_suffix(f".{self.runs}.log")
        argv = [*self.inside, sys.executable, "-m", "xenkit", "serve", str(self.build_dir)]
        self.proc = subprocess.Popen(
            [*argv, "--bind", SERVER, *self.options],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "serve: HTTP on" not in log.read_text():
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "xenkit serve did not start"
            time.sleep(0.1)
        if "--proxy-dhcp" in self.options:
            while "proxyDHCP answering" not in log.read_text():
                assert self.proc.poll() is None, log.read_text()  # port 67 refused, say
                assert time.monotonic() < deadline, "xenkit serve's proxyDHCP did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)

    def text(self) -> str:
        return "".join(
            self.log.with_suffix(f".{i}.log").read_text() for i in range(1, self.runs + 1)
        )

    # The root's chunks only: GRUB fetches Xen, the kernel and the initramfs from the same
    # HTTP server.
    CHUNK = r"\.cacnk 20[06] (\d+) bytes$"

    def sent(self) -> int:
        return sum(int(n) for n in re.findall(self.CHUNK, self.text(), re.M))

    def transfers(self) -> int:
        return len(re.findall(self.CHUNK, self.text(), re.M))


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[list[str]]:
    """A network namespace with a tap device at SERVER and the LAN's DHCP server on it;
    yields the prefix that runs a command inside."""
    with wire.namespace(f"{SERVER}/24") as inside:
        # Where a broadcast answer goes out: the proxy answers to 255.255.255.255.
        subprocess.run([*inside, "ip", "route", "add", "default", "dev", "tap0"], check=True)
        conf = tmp_path / "udhcpd.conf"
        (tmp_path / "leases").touch()
        conf.write_text(UDHCPD.format(leases=tmp_path / "leases"))
        dhcp = subprocess.Popen(
            [*inside, "busybox", "udhcpd", "-f", str(conf)],
            stdout=(tmp_path / "udhcpd.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            yield inside
        finally:
            dhcp.kill()
            dhcp.wait()


@pytest.fixture(scope="module")
def netbuild(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pc-net")
    (work / "autorun.sh").write_text(scenarios.NETROOT_AUTORUN)
    out = work / "out"
    spec = make_spec(
        board="pc",
        net_root=True,
        netboot=True,
        mirrors=f"http://{SERVER}:{BAD}/,http://{SERVER}:{GOOD}/",
        dom0_autorun=str(work / "autorun.sh"),
        guest=[{"name": "n1", "memory": "128M"}],
    )
    m = build.build(spec, out)
    assert m.media == ("net.iso", "netroot", "tftp")
    return out


@pytest.mark.debian
def test_the_boot_medium_pins_the_indexes_and_is_small(netbuild: Path) -> None:
    iso = netbuild / "net.iso"
    published = chunkstore.Published.read(netbuild / "netroot")
    # The medium holds Xen, Dom0's kernel and first stage; the root is only in the store.
    assert iso.stat().st_size < published.size / 1.5
    work = netbuild.parent / "pins"
    grub.extract(iso, ["boot/initrd.cpio.gz", "boot/grub/grub.cfg"], work)
    data = (work / "boot/initrd.cpio.gz").read_bytes()
    # The indexes and the chunk order, uncompressed after the gzip'd first stage.
    assert data[:2] == b"\x1f\x8b" and b"netroot/chunks" in data
    for name in ("base", "build"):
        index = caibx.parse((netbuild / "netroot" / f"{name}.caibx").read_bytes())
        assert index.digest == "sha256" and index.chunks
        assert (netbuild / "netroot" / f"{name}.caibx").read_bytes() in data
    cfg = work / "boot/grub/grub.cfg"
    # The PXE tree boots the same menu and files as the medium, and GRUB's network images.
    tree = netbuild / "tftp" / "default"
    path = "boot/initrd.cpio.gz"
    assert (tree / path).read_bytes() == (work / path).read_bytes()
    # The menu, behind the header that fetches the big files over HTTP where it can.
    header, http_cfg = grubcfg.pxe_http("", 8080)
    menu = cfg.read_text()
    at = menu.index("menuentry ")
    assert (tree / netdir.SUBDIR / "grub.cfg").read_text() == menu[:at] + header + menu[at:]
    assert (tree / grubcfg.HTTP_CFG).read_text() == http_cfg
    assert netdir.boot_files(tree) == dict(netdir.BY_ARCH)
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


@pytest.mark.long
@pytest.mark.qemu
def test_the_pc_netboots_its_lazy_root_through_a_bad_mirror_and_an_outage(
    netbuild: Path, lan: list[str]
) -> None:
    """PXE: the LAN's DHCP gives the address, xenkit serve's proxyDHCP the boot file and its
    TFTP GRUB, Xen and Dom0. The first mirror then serves a corrupt chunk the first stage
    reads, the second is stopped and started again mid-boot; Dom0 comes up on its cache
    disk, runs xl and starts a guest from the lazy root. (A filled cache booting with no
    server at all is the net_root benchmark's case (c), which CI runs too.)"""
    work = netbuild.parent
    bad = work / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir()
    # Its chunk store and manifest only: a second server over HTTP, no TFTP.
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

    corrupt = Server(lan, bad, work / "serve-bad", "--http-port", str(BAD))
    good = Server(
        lan, netbuild, work / "serve-good", "--http-port", str(GOOD), "--proxy-dhcp", SERVER
    )
    cache = work / "cache.img"
    cache.unlink(missing_ok=True)
    board = boards.load("pc")
    choices = qemu.Choices(media="net", cache_disk=str(cache))
    plan = wire.plan(lan, board, board.default_ram, netbuild, work / "run", choices)
    console = plan.console_log
    # Dom0's banner and its autorun's exit: the cache fill that follows is not waited for.
    banners = emulate.banners(manifest.read(netbuild))
    results: list[emulate.CheckResult] = []
    booting = threading.Thread(
        target=lambda: results.append(emulate.check(plan, 1200, want=banners))
    )
    booting.start()
    try:
        outage = False
        at_done = None
        while booting.is_alive():
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
        booting.join()
        # The boot ends as the autorun does, before the cache fill that follows it.
        if at_done is None:
            at_done = good.sent() + corrupt.sent()
    finally:
        good.stop()
        corrupt.stop()
    text = console.read_text(errors="replace")
    served = good.text()
    assert results and results[0].ok, results[0].reason + scenarios.tail(text) + served[-3000:]
    assert outage, "the boot ended before the outage could be staged"
    # PXE: the proxy's offer, GRUB's image over HTTP (QEMU's ROM is iPXE), its modules and
    # menu over TFTP, and Xen, Dom0's kernel and initramfs over HTTP from the same server
    # (the menu's http.cfg said so).
    core = f"http://{SERVER}:{GOOD}/{netdir.BIOS}"
    assert f"TFTP server is {SERVER}, boot file {core}" in served
    size = (netbuild / "tftp" / "default" / netdir.BIOS).stat().st_size
    assert re.search(rf"http 10\.77\.0\.\d+ /{netdir.BIOS} 200 {size} bytes", served)
    for name in ("/boot/grub/grub.cfg", "/boot/grub/i386-pc/http.mod"):
        assert re.search(rf"tftp: 10\.77\.0\.\d+ {re.escape(name)} \d+ bytes", served), name
    over_tftp = re.findall(r"tftp: 10\.77\.0\.\d+ (\S+) (\d+) bytes", served)
    assert all(n.lstrip("/").startswith(netdir.SUBDIR) for n, _ in over_tftp), over_tftp
    tree = netbuild / "tftp" / "default"
    big = 0
    for name in ("/boot/xen.gz", "/boot/vmlinuz", "/boot/initrd.cpio.gz"):
        size = (tree / name.lstrip("/")).stat().st_size
        # GRUB reads Xen's first 32 KiB (a range, 206) before the whole of it.
        assert re.search(rf"http 10\.77\.0\.\d+ {name} 20[06] {size} bytes", served), name
        big += size
    assert f"{grubcfg.HTTP_SAID} (http,{SERVER}:{GOOD})" in text
    print(f"over TFTP {sum(int(b) for _, b in over_tftp)} bytes, over HTTP {big} bytes")
    mirrors = f"http://{SERVER}:{BAD}/,http://{SERVER}:{GOOD}/"
    assert f"{netroot.ATTACHED} from {mirrors}, address 10.77.0." in text
    assert "cache on /dev/vda" in text
    assert f"chunk {victim} from http://{SERVER}:{BAD}/ {netroot.CORRUPT}" in text
    assert netroot.RETRYING in text
    assert re.search(rf"chunk [0-9a-f]+ fetched from http://{SERVER}:\d+/ after \d+", text)
    _, r = scenarios.results(text)
    assert r["root"] == ["overlay"]
    assert r["xl-list"] == ["0", "Domain-0"]
    assert r["create"][0] == "0", r["create"]
    assert r["banner"] == ["1"], "the guest from the lazy root never printed its banner"
    assert r["filled-before"] == ["no"]
    # Bytes the servers sent until Dom0 had run xl and its guest: well under the root's.
    published = chunkstore.Published.read(netbuild / "netroot")
    assert at_done < published.stored * 0.7, (at_done, published)
    print(published.fetched(at_done, 0))


@pytest.mark.qemu
def test_a_uefi_pc_netboots_core_efi_over_http_to_xen(
    netbuild: Path, lan: list[str], tmp_path: Path
) -> None:
    """UEFI PXE (OVMF; the boot is the NIC ROM's iPXE): the proxy offers core.efi as an
    http:// URL, GRUB's EFI image reads its menu and modules over TFTP from the same server,
    then Xen, Dom0's kernel and initramfs over HTTP, and Xen starts. Stopped at Xen's first
    line: the whole lazy-root boot is the BIOS test's."""
    good = Server(lan, netbuild, tmp_path / "serve", "--http-port", str(GOOD),
                  "--proxy-dhcp", SERVER)  # fmt: skip
    board = boards.load("pc")
    choices = qemu.Choices(firmware="uefi", media="net")
    plan = wire.plan(lan, board, board.default_ram, netbuild, tmp_path / "run", choices)
    try:
        result = emulate.check(plan, 600, want=["(XEN) Xen version"])
    finally:
        good.stop()
    text = plan.console_log.read_text(errors="replace")
    served = good.text()
    assert result.ok, result.reason + scenarios.tail(text) + served[-3000:]
    tree = netbuild / "tftp" / "default"
    core = f"http://{SERVER}:{GOOD}/{netdir.UEFI}"
    assert re.search(rf"\(PXEClient:Arch:00007\S*\): TFTP server is {SERVER}, boot file {core}",
                     served), served[-3000:]  # fmt: skip
    size = (tree / netdir.UEFI).stat().st_size
    assert re.search(rf"http 10\.77\.0\.\d+ /{netdir.UEFI} 200 {size} bytes", served)
    assert re.search(r"tftp: 10\.77\.0\.\d+ /?boot/grub/grub\.cfg \d+ bytes", served), served
    over_tftp = re.findall(r"tftp: 10\.77\.0\.\d+ (\S+) (\d+) bytes", served)
    assert all(n.lstrip("/").startswith(netdir.SUBDIR) for n, _ in over_tftp), over_tftp
    for name in ("/boot/xen.gz", "/boot/vmlinuz", "/boot/initrd.cpio.gz"):
        size = (tree / name.lstrip("/")).stat().st_size
        assert re.search(rf"http 10\.77\.0\.\d+ {name} 20[06] {size} bytes", served), name
    print(f"UEFI PXE: Xen's first line at {result.ready_at:.1f} s")
