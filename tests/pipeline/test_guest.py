"""`xenkit guest add` on a real toolstack build: the xl.cfg lands on the card's root
partition, the manifest records the guest, bad requests change nothing."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.bootfiles import CPIO_HEAD
from tests.conftest import make_spec
from tests.manifests import entry_of, sample
from xenkit import cli
from xenkit.core.files import sha256
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError
from xenkit.images import media
from xenkit.pipeline import build, guest, manifest

pytestmark = pytest.mark.debian


@pytest.fixture(scope="module")
def toolstack_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guest") / "out"
    build.build(
        make_spec(board="qemu-virt", toolstack=True, domain=[{"name": "web", "memory": "128M"}]),
        out,
    )
    return out


def test_guest_add_writes_the_config_and_files(
    toolstack_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    initrd = tmp_path / "my-initrd.gz"
    initrd.write_bytes(gzip.compress(CPIO_HEAD + b"bytes to carry", mtime=0))
    argv = ["guest", "add", "db", "-d", str(toolstack_build), "--memory", "64M", "--vcpus", "2"]
    assert cli.main([*argv, "--initramfs", str(initrd)]) == 0
    assert "in Dom0, xenkit-start db" in capsys.readouterr().out
    card = toolstack_build / "sd.img"
    cfg = media.ext4_get(card, "/etc/xen/db.cfg")
    assert cfg is not None
    text = cfg.decode()
    assert 'name = "db"' in text and "memory = 64" in text and "vcpus = 2" in text
    assert 'ramdisk = "/var/lib/xenkit/guests/db/my-initrd.gz"' in text
    assert media.ext4_get(card, "/var/lib/xenkit/guests/db/my-initrd.gz") == initrd.read_bytes()
    m = manifest.read(toolstack_build)
    assert [g.name for g in m.runtime_guests] == ["db"]
    assert m.files["sd.img"] == entry_of(card.read_bytes())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web"], "the name is taken"),
        (["big", "--memory", "4G"], "does not fit"),
        (["many", "--vcpus", "9"], "vcpus = 9, but the board has 4"),
        (["k", "--kernel", "/nonexistent/Image"], "kernel /nonexistent/Image does not exist"),
    ],
)
def test_bad_guest_add_is_refused_and_changes_nothing(
    toolstack_build: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sha256(toolstack_build / "sd.img")
    assert cli.main(["guest", "add", *args, "--dir", str(toolstack_build)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sha256(toolstack_build / "sd.img") == before
    assert not list(toolstack_build.glob(".*partial*"))


def test_guest_add_needs_an_sd_root_with_the_toolstack(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    build.build(make_spec(board="qemu-virt"), plain)
    assert cli.main(["guest", "add", "g", "-d", str(plain)]) == 2


def test_a_guest_added_beyond_the_emulators_memory_is_named_in_the_warning() -> None:
    m = sample()  # the 4G Pi 4: its emulator has 960M, Dom0 512M
    assert guest.emulator_shortfall(m) == ""
    short = guest.emulator_shortfall(m, {"big": 512 * MiB})
    assert "the run-time guests want" in short and "big 512M" in short


def test_a_network_root_build_takes_guests_from_its_config_not_guest_add(
    tmp_path: Path,
) -> None:
    import dataclasses

    from tests.manifests import write_build

    m = dataclasses.replace(sample("qemu-virt"), toolstack=True, media=("sd.img", "netroot"))
    write_build(tmp_path, m)
    with pytest.raises(XenkitError, match="Dom0 root is in its chunk store"):
        guest.add(tmp_path, {"name": "g9"})
