from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from xenkit.config import settings
from xenkit.errors import XenkitError


def test_command_line_beats_file_beats_default(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('board = "qemu-virt"\ndom0-mem = "768M"\ndom0_vcpus = 2\n')
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    cli = vars(parser.parse_args(["--dom0-mem", "1G"]))
    values = settings.resolve(settings.load_file(cfg), cli)
    assert values["board"] == "qemu-virt"
    assert values["dom0_mem"] == 1 << 30
    assert values["dom0_vcpus"] == 2
    assert values["root_size"] == 0  # the default: sized to fit


def test_every_setting_is_a_flag() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {s.flag for s in settings.SETTINGS if s.type is not list} <= flags


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dom0_memory = 1\n", "unknown setting 'dom0_memory'"),
        ('dom0_vcpus = "two"\n', "dom0_vcpus must be an integer"),
        ("board = \n", "config"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text(text)
    with pytest.raises(XenkitError, match=message) as err:
        settings.load_file(cfg)
    assert "\n" not in str(err.value)


def test_every_path_in_a_config_file_is_relative_to_it(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    cfg = conf / "x.toml"
    cfg.write_text(
        'board = "myboard.toml"\ndom0_autorun = "autorun.sh"\nxen_image = "xen"\n'
        'kernel_image = "/abs/Image"\n[[domain]]\nkernel = "k"\n'
    )
    values = settings.load_file(cfg)
    assert values["board"] == str(conf / "myboard.toml")
    assert values["dom0_autorun"] == str(conf / "autorun.sh")
    assert values["xen_image"] == str(conf / "xen")
    assert values["kernel_image"] == "/abs/Image"
    assert values["domain"][0]["kernel"] == str(conf / "k")
    # A board by name is no file.
    cfg.write_text('board = "rpi4"\n')
    assert settings.load_file(cfg)["board"] == "rpi4"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("dom0_mem", "lots", "dom0_mem"),
        ("root_size", "12Q", "root_size"),
        ("dom0_mem", "0", "give a size above 0"),
        ("xen_image", "/no/such/xen", "xen_image: /no/such/xen is not a readable file"),
        ("dom0_root", "nfs", "dom0_root='nfs': choose one of sd, initramfs"),
        ("netboot_server", "tftp.example", "is not an IPv4 address"),
        ("netboot_server", "fe80::1", "is not an IPv4 address: U-Boot netboots over IPv4"),
        ("netboot_address", "fe80::2/64", "over IPv4"),
        ("tftp_blocksize", 70000, "tftp_blocksize=70000: give 0 to 65464"),
        ("dom0_vcpus", -1, "dom0_vcpus=-1"),
        ("guest", ["g1"], "give \\[\\[guest\\]\\] tables"),
    ],
)
def test_each_setting_refuses_what_it_cannot_mean(name: str, value: object, message: str) -> None:
    with pytest.raises(XenkitError, match=message) as err:
        settings.resolve({name: value}, {})
    assert "\n" not in str(err.value)


def test_parsed_values_are_typed(tmp_path: Path) -> None:
    script = tmp_path / "autorun.sh"
    script.write_text("true\n")
    values = settings.resolve(
        {"dom0_mem": "768", "dom0_autorun": str(script), "netboot_address": "10.0.0.2"}, {}
    )
    assert values["dom0_mem"] == 768 << 20  # a bare number is MiB
    assert values["dom0_autorun"] == script.resolve()
    assert values["netboot_address"] == "10.0.0.2/24"


def test_tables_declare_their_keys() -> None:
    domain = settings.BY_NAME["domain"].keys
    guest = settings.BY_NAME["guest"].keys
    assert {"name", "kernel", "memory", "vcpus", "enhanced"} <= set(domain)
    assert {"name", "memory", "maxmem", "maxvcpus", "ip", "ping"} <= set(guest)


def test_check_and_map_name_settings_as_build_does() -> None:
    from xenkit import cli

    top = cli.parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    flags = {
        name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()
    }
    shared = {"--board", "--xen-cmdline", "--dom0-cmdline"}
    assert shared <= flags["build"] and shared <= flags["check"] and shared <= flags["map"]


@pytest.mark.parametrize(
    "value",
    [
        "ftp://x/",
        "http://",
        "10.0.0.1:8080",
        "http://a/ b",
        "http://a/,https://b/",
        "http://h:99999/",
    ],
)
def test_mirrors_are_plain_http_urls_or_one_line(value: str) -> None:
    with pytest.raises(XenkitError, match="is not a plain http:// URL"):
        settings.resolve({}, {"mirrors": value})


def test_mirrors_are_split_on_commas() -> None:
    got = settings.resolve({}, {"mirrors": "http://10.0.0.1:8080/, http://b/store/"})["mirrors"]
    assert got == ("http://10.0.0.1:8080/", "http://b/store/")


def test_net_root_on_a_board_without_one_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import make_spec
    from xenkit.pipeline import build

    with pytest.raises(XenkitError, match="rpi4 boots through rpi, which has no network root"):
        build.build(make_spec(board="rpi4", net_root=True), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_net_root_without_the_toolstack_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import make_spec
    from xenkit.pipeline import build

    with pytest.raises(XenkitError, match=r"net_root is Dom0's toolstack root .*: add --toolstack"):
        build.build(make_spec(board="qemu-virt", net_root=True), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
