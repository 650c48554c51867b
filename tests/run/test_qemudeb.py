"""A Debian release's QEMU unpacked into the cache: bookworm's, the pc board's emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xenkit.config import arch
from xenkit.core.proc import run
from xenkit.debian import deb
from xenkit.errors import XenkitError
from xenkit.run import qemudeb

X86 = arch.get("amd64")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The unpacked trees go to a fresh directory; apt's indexes and packages stay cached."""
    monkeypatch.setattr(qemudeb, "cache_home", lambda: tmp_path)
    qemudeb.binary.cache_clear()
    yield tmp_path / "emulators"
    qemudeb.binary.cache_clear()


def test_a_missing_firmware_directory_is_the_hosts_and_a_packaged_one_gains_its_files(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "bios.bin").write_bytes(b"host")
    (host / "keymaps").write_bytes(b"host")
    tree = tmp_path / "tree"
    qemudeb._link_host(tree / "usr/share/seabios", host)
    assert (tree / "usr/share/seabios").readlink() == host
    packaged = tree / "usr/share/qemu"
    packaged.mkdir(parents=True)
    (packaged / "keymaps").write_bytes(b"packaged")
    qemudeb._link_host(packaged, host)
    assert (packaged / "bios.bin").readlink() == host / "bios.bin"
    assert (packaged / "keymaps").read_bytes() == b"packaged"


@pytest.mark.debian
def test_bookworms_qemu_is_unpacked_once_and_boots_a_pc_with_the_hosts_firmware(
    cache: Path,
) -> None:
    exe = qemudeb.binary("bookworm", X86.qemu_packages, X86.qemu)
    assert exe.is_relative_to(cache) and exe.name == "qemu-system-x86_64"
    assert "version 7.2" in run([str(exe), "--version"], capture=True).stdout
    # Machine init loads SeaBIOS and the NIC's boot ROM from the firmware path, and TCG
    # comes from the packaged module: a missing one fails before the monitor answers.
    head = [str(exe), "-machine", "pc", "-accel", "tcg,thread=multi", "-nodefaults"]
    nic = ["-netdev", "user,id=n", "-device", "e1000,netdev=n"]
    proc = run([*head, "-display", "none", "-S", "-monitor", "stdio", *nic], stdin=b"quit\n")
    assert proc.returncode == 0
    stamp = exe.stat().st_mtime_ns
    qemudeb.binary.cache_clear()
    assert qemudeb.binary("bookworm", X86.qemu_packages, X86.qemu) == exe
    assert exe.stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [
        exe.parents[2].name
    ]


@pytest.mark.debian
def test_an_unpacking_that_fails_leaves_nothing_and_a_qemu_that_cannot_start_is_one_line(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = deb.unpack
    calls = []

    def second_fails(package: Path, dest: Path, **kw: object) -> int:
        calls.append(package)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(package, dest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(deb, "unpack", second_fails)
    with pytest.raises(OSError):
        qemudeb.binary("bookworm", X86.qemu_packages, X86.qemu)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []

    monkeypatch.setattr(deb, "unpack", real)
    exe = qemudeb.binary("bookworm", X86.qemu_packages, X86.qemu)
    # As on a host without one of its libraries.
    exe.write_text(
        "#!/bin/sh\necho 'error while loading shared libraries: libslirp.so.0' >&2\nexit 127\n"
    )
    qemudeb.binary.cache_clear()
    with pytest.raises(XenkitError) as exc:
        qemudeb.binary("bookworm", X86.qemu_packages, X86.qemu)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("bookworm's qemu-system-x86 1:7.2")
    assert "(error while loading shared libraries: libslirp.so.0)" in message
    assert message.endswith("install the QEMU packages' libraries (make deps)")
