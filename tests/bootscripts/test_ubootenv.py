from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import edited_board, make_spec
from xenkit.bootscripts import card, ubootenv
from xenkit.config import boards, releases
from xenkit.errors import XenkitError
from xenkit.system.artifacts import gather

# A binary as U-Boot lays one out: code, the default environment, more data after it.
ENV = b"\0bootcmd=run distro_bootcmd\0bootdelay=2\0preboot=pci enum; usb start;\0arch=arm\0\0"
FAKE = b"\x7fcode" + ENV + b"%s: null device\n\0"


def test_a_shorter_value_moves_the_rest_of_the_block_down() -> None:
    new = ubootenv.set_defaults(FAKE, {"preboot": "pci enum;", "bootdelay": "0"})
    assert len(new) == len(FAKE)
    assert ubootenv.entries(new) == [
        ("bootcmd", "run distro_bootcmd"),
        ("bootdelay", "0"),
        ("preboot", "pci enum;"),
        ("arch", "arm"),
    ]
    # What follows the block is where it was: the 11 bytes freed are NULs before the
    # block's own closing one.
    tail = b"%s: null device\n\0"
    assert new.endswith(b"arch=arm\0" + b"\0" * 11 + b"\0" + tail)
    assert new.startswith(b"\x7fcode\0bootcmd=run distro_bootcmd\0bootdelay=0\0")


def test_bootcmd_itself_can_be_set() -> None:
    new = ubootenv.set_defaults(FAKE, {"bootcmd": "boot"})
    assert ubootenv.entries(new)[0] == ("bootcmd", "boot")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bootargs": "x"}, "its default environment has no bootargs to set"),
        ({"bootdelay": "10"}, r"bootdelay='10' does not fit where bootdelay is \(1 bytes\)"),
        # A name that only ends like one in the block is not that variable.
        ({"cmd": "x"}, "has no cmd to set"),
    ],
)
def test_what_cannot_be_set_is_one_line(changes: dict[str, str], message: str) -> None:
    with pytest.raises(XenkitError, match=message):
        ubootenv.set_defaults(FAKE, changes)


def test_a_binary_without_one_default_environment_is_refused() -> None:
    with pytest.raises(XenkitError, match=r"found 0 default environments \(bootcmd=\), not one"):
        ubootenv.set_defaults(b"no environment here\0\0", {"bootdelay": "0"})
    with pytest.raises(XenkitError, match="found 2 default environments"):
        ubootenv.set_defaults(FAKE + FAKE, {"bootdelay": "0"})


@pytest.mark.parametrize("debian", releases.NAMES)
@pytest.mark.parametrize("board", ["rpi4", "qemu-virt"])
def test_debians_uboot_autoboots_at_once_in_the_emulator_only(board: str, debian: str) -> None:
    """The card's U-Boot as Debian ships it (2 s bootdelay; the Pi's preboot starts USB), and
    the copy QEMU runs: only the emulator's variables differ, and nothing else moved."""
    b = boards.load(board)
    debian_uboot = gather(make_spec(board=board, debian=debian)).files["uboot"].read_bytes()
    before = dict(ubootenv.entries(debian_uboot))
    assert before["bootdelay"] == "2"
    emulated = card.emulator_uboot(b, debian_uboot)
    assert len(emulated) == len(debian_uboot)
    after = dict(ubootenv.entries(emulated))
    wanted = {"bootdelay": "0", **dict(b.emulate.uboot_env)}
    assert {k: after[k] for k in wanted} == wanted
    assert {k: v for k, v in after.items() if k not in wanted} == {
        k: v for k, v in before.items() if k not in wanted
    }
    start, end = ubootenv.block(debian_uboot)
    assert emulated[:start] == debian_uboot[:start] and emulated[end:] == debian_uboot[end:]
    if board == "rpi4":
        assert "usb start" in before["preboot"] and "usb" not in after["preboot"]


def test_a_board_uboot_env_that_is_not_a_table_of_lines_is_refused(tmp_path: Path) -> None:
    bad = edited_board(tmp_path, "rpi4", 'uboot_env = { preboot = "pci enum;" }', "uboot_env = 0")
    with pytest.raises(XenkitError, match=r"emulate.uboot_env = 0 must be a table of U-Boot"):
        boards.load(str(bad))
