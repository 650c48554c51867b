from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from xenkit.core.sizes import MiB
from xenkit.images import media


@pytest.fixture
def image(tmp_path: Path) -> Path:
    boot = tmp_path / "files"
    boot.mkdir()
    (boot / "config.txt").write_text("enable_uart=1\n")
    (boot / "big.bin").write_bytes(bytes(range(256)) * 20000)
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello").write_text("root fs\n")
    out = tmp_path / "sd.img"
    media.sd_image(out, {p.name: p for p in boot.iterdir()}, root, 32 * MiB)
    return out


def test_partition_table_reads_back_with_sfdisk(image: Path) -> None:
    table = json.loads(
        subprocess.run(
            ["sfdisk", "-J", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    p1, p2 = table["partitions"]
    assert p1["type"] == "c" and p2["type"] == "83"
    assert p1["start"] * 512 == 4 * MiB and p1["size"] * 512 == 64 * MiB
    assert (p2["start"] * 512) % (4 * MiB) == 0 and p2["size"] * 512 == 32 * MiB
    assert image.stat().st_size == p2["start"] * 512 + 32 * MiB


def test_boot_partition_is_fat32_labelled_boot_with_the_files(image: Path, tmp_path: Path) -> None:
    assert media.fat_list(image) == ["big.bin", "config.txt"]
    media.fat_get(image, "big.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == bytes(range(256)) * 20000
    boot = media.read_partitions(image)[0]
    vfat = tmp_path / "p1"
    with image.open("rb") as f:
        f.seek(boot.start)
        vfat.write_bytes(f.read(boot.size))
    # The FAT32 extended boot record names its type at offset 82.
    assert vfat.read_bytes()[82:90] == b"FAT32   "
    subprocess.run(["fsck.fat", "-n", str(vfat)], check=True, capture_output=True)
    label = subprocess.run(["fatlabel", str(vfat)], capture_output=True, text=True).stdout
    assert label.strip().lower() == "boot"


def test_root_partition_is_a_clean_ext4_with_the_tree(image: Path, tmp_path: Path) -> None:
    root = media.read_partitions(image)[1]
    ext4 = tmp_path / "p2"
    with image.open("rb") as f:
        f.seek(root.start)
        ext4.write_bytes(f.read(root.size))
    subprocess.run(["e2fsck", "-fn", str(ext4)], check=True, capture_output=True)
    listing = subprocess.run(
        ["debugfs", "-R", "cat /hello", str(ext4)], capture_output=True, text=True, check=True
    ).stdout
    assert listing == "root fs\n"


def test_replacing_a_file_in_a_copy(image: Path, tmp_path: Path) -> None:
    new = tmp_path / "config.txt"
    new.write_text("changed\n")
    media.fat_put(image, {"config.txt": new})
    media.fat_get(image, "config.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "changed\n"


def test_mbr_layout() -> None:
    raw = media.mbr([media.Partition(0x0C, 4 * MiB, 64 * MiB)], 0x12345678)
    assert len(raw) == 512 and raw[510:] == b"\x55\xaa"
    assert raw[440:444] == (0x12345678).to_bytes(4, "little")
    assert raw[446 + 4] == 0x0C
    assert int.from_bytes(raw[446 + 8 : 446 + 12], "little") == 8192


def test_ext4_put_adds_and_replaces_files_in_the_root_partition(tmp_path: Path) -> None:
    boot = tmp_path / "config.txt"
    boot.write_text("x\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "old").write_text("old\n")
    image = tmp_path / "sd.img"
    media.sd_image(image, {"config.txt": boot}, root, 16 << 20)
    media.ext4_put(image, {"/etc/old": b"new\n", "/var/lib/x/deep/file": b"\x00\x01binary"})
    assert media.ext4_get(image, "/etc/old") == b"new\n"
    assert media.ext4_get(image, "/var/lib/x/deep/file") is not None
    assert media.ext4_get(image, "/etc/missing") is None


def test_an_unchanged_root_is_not_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ext4 image of a tree is kept by what the tree holds: the same tree again is the
    same image (linked, not made), any change to a file makes a new one."""
    monkeypatch.setenv("XENKIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("one\n")
    shared = tmp_path / "from-cache"
    shared.write_bytes(b"package file\n")
    (root / "lib").mkdir()
    (root / "lib" / "linked").hardlink_to(shared)  # as rootfs.link puts a package's file
    media.make_ext4(tmp_path / "a.ext4", 8 * MiB, "root", root)
    media.make_ext4(tmp_path / "b.ext4", 8 * MiB, "root", root)
    a, b = (tmp_path / "a.ext4").stat(), (tmp_path / "b.ext4").stat()
    assert a.st_ino == b.st_ino and a.st_nlink == 3  # a, b and the cache's entry
    # Rewritten with the same content: the same image still.
    (root / "etc" / "motd").write_text("one\n")
    media.make_ext4(tmp_path / "c.ext4", 8 * MiB, "root", root)
    assert (tmp_path / "c.ext4").stat().st_ino == a.st_ino
    (root / "etc" / "motd").write_text("two\n")
    media.make_ext4(tmp_path / "d.ext4", 8 * MiB, "root", root)
    assert (tmp_path / "d.ext4").stat().st_ino != a.st_ino
    dumped = subprocess.run(
        ["debugfs", "-R", "cat /etc/motd", str(tmp_path / "d.ext4")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dumped == "two\n"
    # Only the newest few images stay in the cache.
    for i in range(media.EXT4_KEPT + 2):
        (root / "etc" / "motd").write_text(f"{i}\n")
        media.make_ext4(tmp_path / f"e{i}.ext4", 8 * MiB, "root", root)
    kept = list((tmp_path / "cache" / "derived" / "memo").glob("ext4-*"))
    assert len(kept) == media.EXT4_KEPT
