"""Every build setting declared once: name, type, default, help.

The same declarations drive the config file (TOML, keys as named here) and the command line
(--name-with-dashes), the way mkosi does it. Command-line values win over the file.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkit.config import builtin
from xenkit.errors import XenkitError


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    # A file's path: in a config file, relative to that file.
    path: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("board", str, "rpi4", "board to build for (a name, or a board .toml file)", path=True),
    Setting("ram", str, "", "RAM model of the board, e.g. 1G/2G/4G/8G (default: the board's)"),
    Setting("dom0_mem", str, "", "memory for Dom0, e.g. 512M (default: the board's)"),
    Setting("dom0_vcpus", int, 0, "vCPUs for Dom0 (0: all of them)"),
    Setting("xen_cmdline", str, "", "Xen command line, replacing the generated one"),
    Setting("xen_extra", str, "", "words appended to the Xen command line"),
    Setting("dom0_cmdline", str, "", "Dom0 Linux command line, replacing the generated one"),
    Setting("dom0_extra", str, "", "words appended to the Dom0 command line"),
    Setting("xen_image", str, "", "use this Xen binary instead of the packaged one", path=True),
    Setting(
        "kernel_image",
        str,
        "",
        "use this Dom0 kernel Image instead of the packaged one",
        path=True,
    ),
    Setting("root_size", str, "", "size of the ext4 root partition (default: fits its content)"),
    Setting("refresh", bool, False, "refresh the package indexes even if they are recent"),
    Setting(
        "netboot",
        bool,
        False,
        "also lay the system out for netboot (tftp/) with a small first-stage SD image",
    ),
    Setting("netboot_server", str, "", "netboot: the TFTP server's address (default: from DHCP)"),
    Setting(
        "netboot_address",
        str,
        "",
        "netboot: the board's own address, e.g. 10.0.0.2/24 (a bare address is a /24), "
        "instead of asking DHCP; needs netboot_server",
    ),
    Setting("tftp_blocksize", int, 0, "netboot: U-Boot's tftpblocksize (0: its default)"),
    Setting("tftp_windowsize", int, 0, "netboot: U-Boot's tftpwindowsize, RFC 7440 (0: 1)"),
    Setting(
        "toolstack",
        bool,
        False,
        "give Dom0 Debian's Xen toolstack (xl, xenstored, xenconsoled) and a bridge, xenbr0",
    ),
    Setting(
        "dom0_root",
        str,
        "sd",
        "with --toolstack: Dom0's root on the card's ext4 partition (sd) or in its initramfs",
    ),
    Setting(
        "dom0_autorun",
        str,
        "",
        "with --toolstack: a shell script Dom0 runs once it is up",
        path=True,
    ),
    # Config file only: [[domain]] tables (name, kernel, ramdisk, cmdline, memory, vcpus,
    # vpl011, passthrough_dtb, static_mem, direct_map, enhanced, cpupool). kernel may be
    # "builtin:tick", the bare-metal guest xenkit builds from its own source.
    Setting("domain", list, [], "dom0less guests, as [[domain]] tables in the config file"),
    # Config file only: [[guest]] tables (name, kernel, ramdisk, memory, maxmem, vcpus,
    # maxvcpus, bridge, ip, ping, cmdline): xl configs Dom0 can `xl create`.
    Setting("guest", list, [], "run-time guests, as [[guest]] tables in the config file"),
)

BY_NAME = {s.name: s for s in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        if s.type is list:
            continue
        if s.type is bool:
            parser.add_argument(s.flag, dest=s.name, action="store_true", default=None, help=s.help)
        else:
            parser.add_argument(s.flag, dest=s.name, type=s.type, default=None, help=s.help)


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    if setting.type is int and isinstance(value, bool):
        value = "bad"
    if isinstance(value, setting.type):
        return value
    if setting.type is str and isinstance(value, int):
        return str(value)
    want = {int: "an integer", str: "a string", bool: "true or false", list: "a list"}[setting.type]
    raise XenkitError(f"{source}: {setting.name} must be {want}, not {value!r}")


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise XenkitError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise XenkitError(f"config {path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in BY_NAME:
            known = ", ".join(BY_NAME)
            raise XenkitError(f"config {path}: unknown setting {key!r}; known: {known}")
        values[name] = _coerce(BY_NAME[name], value, f"config {path}")
        if BY_NAME[name].path and values[name] and _is_file_path(name, values[name]):
            values[name] = str((path.parent / Path(values[name]).expanduser()).resolve())
    for table in [*values.get("domain", []), *values.get("guest", [])]:
        # Guest files are named relative to the config file; builtin:NAME is no file.
        for key in ("kernel", "ramdisk", "passthrough_dtb"):
            value = table.get(key) if isinstance(table, dict) else None
            if value and not builtin.is_builtin(str(value)):
                table[key] = str((path.parent / value).resolve())
    return values


def _is_file_path(name: str, value: str) -> bool:
    # A board is a name unless it names a .toml file.
    return name != "board" or value.endswith(".toml")


def resolve(file_values: dict[str, Any], cli_values: dict[str, Any]) -> dict[str, Any]:
    """Defaults, overlaid by the config file, overlaid by the command line."""
    out = {s.name: s.default for s in SETTINGS}
    out.update(file_values)
    out.update({k: v for k, v in cli_values.items() if k in BY_NAME and v is not None})
    return out
