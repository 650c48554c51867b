"""Past one machine: a build's tree served by a plain static server, Debian's lighttpd
(unpacked, not installed), in a network namespace, with the configuration the README
shows, word for word. Every file a PC's PXE boot fetches over HTTP (what its grub.cfg names)
comes back byte-identical through busybox's wget, the client Dom0's first stage fetches
chunks with, and casync reads the whole root from it, checking every chunk against the
index on the boot medium."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

import pytest
from benchmarks import peers
from benchmarks.chunk_serve import LIBDIR, LIGHTTPD

from tests import wire
from tests.conftest import make_spec
from xenkit.bootscripts import grubcfg
from xenkit.images import netdir
from xenkit.pipeline import build

README = Path(__file__).parents[2] / "README.md"
# The README's block starts with this comment line; its paths name this build directory.
FIRST = "# lighttpd.conf: serves out/pc-pxe on 10.77.0.1:8080"
SRV = "/srv/out/pc-pxe"
SERVER, PORT = "10.77.0.1", 8080


def readme_config() -> str:
    """The README's lighttpd.conf, as a user copies it."""
    text = README.read_text()
    m = re.search(rf"^{re.escape(FIRST)}\n(.*?)^```$", text, re.M | re.S)
    assert m, f"the README has no block starting {FIRST!r}"
    return FIRST + "\n" + m.group(1)


def test_the_readme_block_serves_the_tree_and_the_store() -> None:
    conf = readme_config()
    assert f'server.document-root = "{SRV}/tftp/default"' in conf
    assert f'"/netroot/store/" => "{SRV}/netroot/store/"' in conf
    assert f'server.bind = "{SERVER}"' in conf and f"server.port = {PORT}" in conf


@pytest.mark.debian
def test_a_static_server_gives_a_pxe_boot_every_file_it_fetches(tmp_path: Path) -> None:
    out = tmp_path / "pc-pxe"
    mirror = f"http://{SERVER}:{PORT}/netroot/store/"
    spec = make_spec(board="pc", net_root=True, netboot=True, mirrors=mirror)
    build.build(spec, out)
    tree = out / "tftp" / "default"
    cfg = (tree / netdir.SUBDIR / "grub.cfg").read_text()
    # What GRUB fetches once http.cfg has set root to (http,SERVER:PORT).
    wanted = [f"/{grubcfg.HTTP_CFG}"]
    wanted += sorted(set(re.findall(r"^\s+(?:multiboot2|module2|linux|initrd)(?: --\S+)* (/\S+)",
                                    cfg, re.M)))  # fmt: skip
    assert {"/boot/xen.gz", "/boot/vmlinuz", "/boot/initrd.cpio.gz"} <= set(wanted), wanted
    conf = tmp_path / "lighttpd.conf"
    conf.write_text(readme_config().replace(SRV, str(out)))
    peer = peers.unpacked("lighttpd", LIGHTTPD, ("usr/sbin/lighttpd",))
    with wire.namespace(f"{SERVER}/24") as inside:
        argv = [str(peer / "usr/sbin/lighttpd"), "-D", "-f", str(conf), "-m", str(peer / LIBDIR)]
        log = tmp_path / "lighttpd.log"
        server = subprocess.Popen(
            [*inside, *argv], env=peers.env(peer), stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        try:
            base = f"http://{SERVER}:{PORT}"
            deadline = time.monotonic() + 20
            while subprocess.run(
                [*inside, "busybox", "wget", "-q", "-O", "/dev/null", f"{base}/{grubcfg.HTTP_CFG}"],
                check=False,
            ).returncode:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "lighttpd did not answer"
                time.sleep(0.2)
            started = time.monotonic()
            sent = 0
            for path in wanted:
                got = tmp_path / "got"
                subprocess.run(
                    [*inside, "busybox", "wget", "-q", "-O", str(got), base + path], check=True
                )
                want = (tree / path.lstrip("/")).read_bytes()
                assert got.read_bytes() == want, path
                sent += len(want)
            boot_files = time.monotonic() - started
            # The root, whole, as `xenkit.fetch=whole` reads it: casync checks each chunk.
            started = time.monotonic()
            for layer in ("base", "build"):
                blob = tmp_path / f"{layer}.img"
                index = out / "netroot" / f"{layer}.caibx"
                subprocess.run(
                    [*inside, "casync", "extract", f"--store={mirror}", str(index), str(blob)],
                    check=True,
                )
                local = tmp_path / f"{layer}.local"
                subprocess.run(
                    ["casync", "extract", f"--store={out / 'netroot' / 'store'}", str(index),
                     str(local)],
                    check=True,
                )  # fmt: skip
                digest = hashlib.sha256(blob.read_bytes()).hexdigest()
                assert digest == hashlib.sha256(local.read_bytes()).hexdigest(), layer
                sent += blob.stat().st_size
            root = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"lighttpd: {len(wanted)} boot files in {boot_files:.2f} s, both root layers in "
        f"{root:.2f} s, {sent / 2**20:.1f} MiB checked"
    )
