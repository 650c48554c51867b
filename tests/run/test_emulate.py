from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit.config import releases
from xenkit.pipeline import build
from xenkit.run import emulate
from xenkit.system.initramfs import READY

RECORDED = [
    (0.5, "U-Boot 2023.01+dfsg-2+deb12u3"),
    (13.7, "xenkit: starting Xen"),
    (14.0, "(XEN) Xen version 4.17.7"),
    (19.8, "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]"),
    (25.2, "[    5.444523] Run /init as init process"),
    (25.9, f"{READY}: Xen 4.17.7, memory 475 MiB, 4 vCPUs, kernel 6.1.0-56-arm64"),
    (26.0, "never read"),
]


def test_watch_times_each_phase_from_power_on() -> None:
    result = emulate.watch(RECORDED)
    assert result.ok and result.ready_at == 25.9
    assert result.marks == {"U-Boot": 0.0, "Xen": 13.7, "Dom0 kernel": 19.8, "Dom0 userspace": 25.2}
    table = result.table().splitlines()
    assert table[1].split() == ["U-Boot", "0.0", "s", "13.7", "s"]
    assert table[2].split() == ["Xen", "13.7", "s", "6.1", "s"]
    assert table[-1].split()[:2] == ["Dom0", "ready"]


def test_watch_stops_at_a_panic() -> None:
    lines = [*RECORDED[:3], (15.0, "(XEN) Panic on CPU 0:"), *RECORDED[3:]]
    result = emulate.watch(lines)
    assert not result.ok and "Panic on CPU 0" in result.reason
    assert "Dom0 kernel" not in result.marks


def test_watch_reports_a_silent_end() -> None:
    result = emulate.watch(RECORDED[:2])
    assert not result.ok and "stopped before xenkit: Dom0 ready appeared" in result.reason


def _boot(board: str, tmp: Path, **settings: object) -> tuple[int, str, str]:
    out = tmp / board
    build.build(make_spec(board=board, **settings), out)
    proc = subprocess.run(
        [sys.executable, "-m", "xenkit", "run", "--check", "--quiet", "--timeout", "300", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    return proc.returncode, proc.stdout, (out / "run/console.log").read_text(errors="replace")


def _banks(console: str) -> list[tuple[int, int]]:
    return [
        (int(a, 16), int(b, 16))
        for a, b in re.findall(r"BANK\[\d+\] 0x([0-9a-f]+)-0x([0-9a-f]+)", console)
    ]


@pytest.mark.qemu
@pytest.mark.parametrize("debian", releases.NAMES)
def test_rpi4_boots_from_its_sd_image_to_dom0(tmp_path: Path, debian: str) -> None:
    code, out, console = _boot("rpi4", tmp_path, debian=debian)
    assert code == 0, out + console[-3000:]
    assert "Dom0 is up" in out
    release = releases.get(debian)
    banner = re.search(
        rf"Dom0 ready: Xen ({re.escape(release.xen)}[.\d]*)\S*, memory (\d+) MiB, (\d+) vCPUs, "
        rf"kernel {re.escape(release.linux)}\.\S* \(Debian {debian}\)",
        out,
    )
    assert banner, out
    assert 400 < int(banner.group(2)) <= 512 and banner.group(3) == "4"
    for phase in ("U-Boot", "Xen", "Dom0 kernel", "Dom0 userspace"):
        assert re.search(rf"^{phase}\s+\d+\.\d s\s+\d+\.\d s$", out, re.M), out
    # U-Boot found the script on the card, and Dom0 memory sits below the 1 GiB DMA limit.
    # (U-Boot 2023.01's distro boot says the first; 2025.01's standard boot the second.)
    assert re.search(
        r"Found U-Boot script /boot\.scr|Booting bootflow '.*part_1' with script", console
    )
    # The emulator's copy of U-Boot boots at once and leaves QEMU's empty USB bus alone
    # (bootdelay 0, preboot without usb start); the card keeps Debian's (test_ubootenv).
    assert re.search(r"Hit any key to stop autoboot:\s+0\s*$", console, re.M), console[:3000]
    assert "starting USB" not in console
    banks = _banks(console)
    assert banks and all(end <= 1 << 30 for _, end in banks)
    assert sum(end - start for start, end in banks) == 512 << 20


@pytest.mark.qemu
def test_qemu_virt_boots_the_same_way(tmp_path: Path) -> None:
    code, out, console = _boot("qemu-virt", tmp_path, dom0_mem="384M", dom0_vcpus=2)
    assert code == 0, out + console[-3000:]
    banner = re.search(r"Dom0 ready: Xen 4\.17[.\d]*, memory (\d+) MiB, (\d+) vCPUs", out)
    assert banner, out
    assert 300 < int(banner.group(1)) <= 384 and banner.group(2) == "2"
    assert "Scanning virtio 0:1" in console and "Found U-Boot script /boot.scr" in console
    assert re.search(r"Hit any key to stop autoboot:\s+0\s*$", console, re.M), console[:3000]
    assert sum(end - start for start, end in _banks(console)) == 384 << 20


@pytest.mark.qemu
def test_a_broken_boot_fails_the_check(tmp_path: Path) -> None:
    # An init that is not there: Linux panics ("Requested init ... failed") before userspace.
    extra = "rdinit=/no/such/init init=/no/such/init"
    code, out, _ = _boot("qemu-virt", tmp_path, dom0_extra=extra)
    assert code == 1
    assert "Dom0 is up" not in out and "Kernel panic" in out


def test_a_dom0_line_cut_by_xen_is_whole_again() -> None:
    # As seen in a run: Xen's line landed in the middle of one of Dom0's.
    console = [
        (1.0, "XK 41.2 mem-set 0 98304(XEN) d1v0: vGICD: unhandled word write"),
        (1.1, "(XEN) another Xen line"),
        (1.2, ""),
        (2.0, f"{READY[:9]}(XEN) DOM1: xenkit: tick rtos 3"),
        (2.1, f"{READY[9:]}: Xen 4.17.7"),
    ]
    lines = [line for _, line in emulate.untangle(console)]
    assert lines == [
        "(XEN) d1v0: vGICD: unhandled word write",
        "(XEN) another Xen line",
        "XK 41.2 mem-set 0 98304",
        "(XEN) DOM1: xenkit: tick rtos 3",
        f"{READY}: Xen 4.17.7",
    ]
    result = emulate.watch(console)
    assert result.ok and result.ready_at == 2.1
    text = emulate.untangled("\n".join(line for _, line in console))
    assert "XK 41.2 mem-set 0 98304\n" in text
