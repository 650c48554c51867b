"""GRUB's menu for the PC, from the settings."""

from __future__ import annotations

import re

import pytest

from tests.conftest import make_spec
from xenkit.bootscripts import grubcfg
from xenkit.errors import XenkitError
from xenkit.targets import grub


def _entries(cfg: str) -> dict[str, list[str]]:
    found = re.findall(r'^menuentry "([^"]+)" \{\n(.*?)\n\}', cfg, re.M | re.S)
    return {title: [line.strip() for line in body.splitlines()] for title, body in found}


def test_the_menu_offers_xen_a_capped_dom0_plain_linux_and_safe_mode() -> None:
    spec = make_spec(board="pc", dom0_mem="768M", xen_extra="loglvl=all")
    cfg = grubcfg.menu(spec, 5, spec.dom0_cmdline)
    assert "serial --unit=0 --speed=115200" in cfg and "terminal_output serial console" in cfg
    assert "set timeout=5" in cfg and "set default=0" in cfg
    entries = _entries(cfg)
    assert list(entries) == [
        "Xen",
        "Xen, Dom0 memory capped at 768M",
        "Linux without Xen",
        "Xen safe mode",
    ]
    xen = entries["Xen"]
    assert xen == [
        "multiboot2 /boot/xen.gz $xenkit_emulator console=com1 com1=115200,8n1 dom0_mem=768M "
        "loglvl=all",
        "module2 /boot/vmlinuz console=hvc0 earlyprintk=xen",
        "module2 /boot/initrd.cpio.gz",
    ]
    capped = entries["Xen, Dom0 memory capped at 768M"][0].split()
    assert "dom0_mem=768M,max:768M" in capped and "dom0_mem=768M" not in capped
    assert entries["Linux without Xen"] == [
        "linux /boot/vmlinuz console=ttyS0,115200",
        "initrd /boot/initrd.cpio.gz",
    ]
    assert entries["Xen safe mode"][0].endswith(" ".join(grubcfg.SAFE))


def test_the_emulators_slot_is_blank_on_the_image_and_filled_in_place() -> None:
    """Every Xen entry reads the slot; it is blank on the image, and filling it keeps every
    other byte where it was, so it can be done inside a whole image."""
    spec = make_spec(board="pc")
    cfg = grubcfg.menu(spec, 3, spec.dom0_cmdline).encode()
    assert f'\nset xenkit_emulator="{" " * grubcfg.SLOT}"\n'.encode() in cfg
    xen_lines = [e[0] for t, e in _entries(cfg.decode()).items() if t.startswith("Xen")]
    assert len(xen_lines) == 3 and all(" $xenkit_emulator " in line for line in xen_lines)
    image = bytearray(b"\0" * 4096 + cfg + b"\0" * 4096)
    assert grubcfg.fill_slot(image, "bootscrub=off")
    assert len(image) == len(cfg) + 8192
    filled = image[4096:-4096].decode()
    assert f'set xenkit_emulator="bootscrub=off{" " * (grubcfg.SLOT - 13)}"' in filled
    assert filled.replace("bootscrub=off", " " * 13) == cfg.decode()
    # Again: the slot is found by its place, not its blankness.
    assert grubcfg.fill_slot(image, "")
    assert image[4096:-4096] == cfg
    assert not grubcfg.fill_slot(bytearray(b"set timeout=3\n"), "bootscrub=off")


@pytest.mark.parametrize("words", ["x" * (grubcfg.SLOT + 1), 'a="b"'])
def test_emulator_words_that_do_not_fit_the_slot_are_one_line(words: str) -> None:
    with pytest.raises(
        XenkitError, match=re.escape("do not fit grub.cfg's slot: at most 64 characters")
    ):
        grubcfg.slot_line(words)


def test_the_menu_has_as_many_entries_as_run_entry_offers() -> None:
    spec = make_spec(board="pc")
    assert len(_entries(grubcfg.menu(spec, 3, spec.dom0_cmdline))) == grub.TARGET.menu_entries


def test_the_pxe_header_asks_the_server_grub_booted_from_unless_one_is_given() -> None:
    header, http_cfg = grubcfg.pxe_http("", 8080)
    assert "set xenkit_http=(http,${net_default_server}:8080)" in header
    assert f"source $xenkit_http/{grubcfg.HTTP_CFG}" in header
    assert http_cfg.startswith("set root=$xenkit_http\n")
    given, _ = grubcfg.pxe_http("10.0.0.5", 80)
    assert "set xenkit_http=(http,10.0.0.5:80)" in given
    # QEMU's own TFTP copy drops it whole, wherever the tree put it.
    spec = make_spec(board="pc", net_root=True)
    menu = grubcfg.menu(spec, 3, spec.dom0_cmdline)
    at = menu.index("menuentry ")
    assert grubcfg.without_pxe_http(menu[:at] + header + menu[at:]) == menu


def test_a_netboot_build_without_http_has_no_header() -> None:
    spec = make_spec(board="pc", net_root=True, netboot=True, netboot_http_port=0)
    assert spec.netboot_http_port == 0
    with pytest.raises(XenkitError, match="netboot_http_port does nothing without netboot"):
        make_spec(board="pc", net_root=True, netboot_http_port=81)
