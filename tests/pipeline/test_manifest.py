from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.manifests import sample, write_build
from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.pipeline import manifest


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    m = sample()
    write_build(tmp_path, m)
    assert manifest.read(tmp_path) == m
    assert manifest.board(tmp_path) == boards.load("rpi4").for_release("bookworm")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_build_from_another_version_is_refused_in_one_line(tmp_path: Path) -> None:
    data = json.loads(manifest.to_json(sample()))
    for schema in (None, manifest.SCHEMA + 1):
        data["schema"] = schema
        (tmp_path / manifest.NAME).write_text(json.dumps(data))
        with pytest.raises(XenkitError, match=f"manifest schema {schema}.*rebuild"):
            manifest.read(tmp_path)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("ram_banks",), "4G"),
        (("boot_files", "xen"), 7),
        (("layout", 0, "address"), "0x200000"),
        (("toolstack",), 1),
        (("files", "sd.img", "size"), None),
        (("build_seconds",), True),
        (("ram_banks", 0), [1]),
        # Well-typed but no RAM: the memory model found nothing to allocate (exit 3).
        (("ram_banks",), []),
        (("ram_banks", 0), [-1, 4096]),
        (("emulated_ram_banks", 0), [0, 0]),
    ],
)
def test_a_damaged_field_is_named(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    data = json.loads(manifest.to_json(sample()))
    where = data
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    (tmp_path / manifest.NAME).write_text(json.dumps(data))
    with pytest.raises(XenkitError, match=rf"damaged near manifest\.{path[0]}"):
        manifest.read(tmp_path)


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    data = json.loads(manifest.to_json(sample()))
    del data["xen_cmdline"]
    (tmp_path / manifest.NAME).write_text(json.dumps(data))
    with pytest.raises(XenkitError, match=r"damaged near manifest\.xen_cmdline"):
        manifest.read(tmp_path)


def test_a_manifest_nested_beyond_python_is_one_line(tmp_path: Path) -> None:
    text = manifest.to_json(sample()).replace('"xen_cmdline": ', '"xen_cmdline": ' + "[" * 10**5, 1)
    (tmp_path / manifest.NAME).write_text(text)
    with pytest.raises(XenkitError, match=r"cannot read.*recursion"):
        manifest.read(tmp_path)


def test_a_build_without_its_board_file_is_one_line(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    (tmp_path / manifest.BOARD_FILE).unlink()
    with pytest.raises(XenkitError, match=r"has no board.toml .the board file it was built for"):
        manifest.board(tmp_path)


def test_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(XenkitError, match="is not a xenkit build"):
        manifest.read(tmp_path)
    (tmp_path / manifest.NAME).write_bytes(b"\xff\xfe")
    with pytest.raises(XenkitError, match="cannot read"):
        manifest.read(tmp_path)


def test_updates_replace_the_file_whole(tmp_path: Path) -> None:
    m = sample()
    write_build(tmp_path, m)
    manifest.write(tmp_path, replace(m, toolstack=False))
    assert manifest.read(tmp_path).toolstack is False
