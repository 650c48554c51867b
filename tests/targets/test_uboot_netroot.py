"""QEMU's virt machine with its Dom0 root over the network: U-Boot boots Xen, Dom0's kernel
and first stage from the card, and the root comes lazily over virtio-net from the store
`xenkit run` serves (the same HTTP server as `xenkit serve`'s)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import scenarios
from tests.conftest import make_spec
from xenkit.images import chunkstore, media
from xenkit.pipeline import build
from xenkit.system import netroot


@pytest.mark.long
@pytest.mark.qemu
def test_virt_boots_its_lazy_root_and_starts_a_guest_from_it(tmp_path: Path) -> None:
    """Dom0 comes up on the lazy root, runs xl and starts a guest whose kernel and
    initramfs are read from it; what went over the wire is well under the store."""
    (tmp_path / "autorun.sh").write_text(scenarios.NETROOT_AUTORUN)
    out = tmp_path / "out"
    spec = make_spec(
        board="qemu-virt",
        toolstack=True,
        net_root=True,
        dom0_autorun=str(tmp_path / "autorun.sh"),
        guest=[{"name": "n1", "memory": "128M"}],
    )
    m = build.build(spec, out)
    assert m.media == ("sd.img", "netroot")
    # The card is its boot partition alone: the root is only in the store.
    assert len(media.read_partitions(out / "sd.img")) == 1
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "xenkit",
            "run",
            "--check",
            "--quiet",
            "--timeout",
            "1500",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    console = (out / "run" / "console.log").read_text(errors="replace")
    assert run.returncode == 0, run.stdout[-3000:] + scenarios.tail(console)
    assert f"{netroot.ATTACHED} from http://10.0.2.2:" in console
    _, r = scenarios.results(console)
    assert r["root"] == ["overlay"]
    assert r["xl-list"] == ["0", "Domain-0"]
    assert r["create"][0] == "0", r["create"]
    assert r["banner"] == ["1"], "the guest from the lazy root never printed its banner"
    # `xenkit run` says what its server sent: under the store. Arm's root is small (42 MiB)
    # and the guest's kernel and initramfs are a quarter of it: measured 48% of the store
    # at Dom0's banner, 71% once the guest had started.
    fetched = re.search(
        r"net root: \d+ of \d+ chunks fetched, ([\d.]+) MiB on the wire", run.stdout
    )
    assert fetched, run.stdout[-2000:]
    published = chunkstore.Published.read(out / "netroot")
    assert float(fetched[1]) * 2**20 < published.stored * 0.8, (fetched[1], published)
