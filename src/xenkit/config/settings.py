"""Every build setting declared once: name, parser, default, help.

The same declarations drive the config file (TOML, keys as named here) and the command line
(--name-with-dashes), the way mkosi does it, and every command that takes a setting names it
the same way. Command-line values win over the file. Each setting's parser turns what the user
wrote into its typed value, or refuses it with one line naming the setting and the fix; what
depends on the board (does dom0_mem fit, are there that many CPUs) is checked in spec.

Every command line is parsed with this table, so it imports little: what reading a config
file, an address or the tables' records needs is imported where that is done (`xenkit
--help` took 70 ms before any help was printed, 30 ms of it for bootconfig, xl and files).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from xenkit.config import DEFAULT_BOARD, builtin, releases
from xenkit.core.sizes import parse_size
from xenkit.errors import XenkitError

Dom0Root = Literal["sd", "initramfs"]
NetFetch = Literal["lazy", "whole"]

Parser = Callable[[Any, str], Any]  # (value, where) -> typed value


@dataclass(frozen=True)
class Setting:
    name: str
    type: type  # what TOML must hold (and argparse reads): str, int, bool or list
    default: Any
    help: str
    parse: Parser | None = None  # None: the value as TOML or argparse gave it
    # A file's path: in a config file, relative to that file.
    path: bool = False
    # A closed set of values, offered as choices on the command line.
    choices: tuple[str, ...] = ()
    # Tables ([[domain]], [[guest]]): the record they fill, as "module:Class"; its fields
    # are the keys they take.
    record: str = ""
    # The switch this setting only means something with: set without it, it is refused
    # (it used to be dropped silently, and the user's board booted without it).
    needs: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def keys(self) -> tuple[str, ...]:
        if not self.record:
            return ()
        module, _, name = self.record.partition(":")
        record = getattr(importlib.import_module(module), name)
        return tuple(f.name for f in dataclasses.fields(record))


# -- parsers ----------------------------------------------------------------------------------
def size_or_zero(value: str, where: str) -> int:
    """A size ("512M", "2G"; a bare number is MiB); empty means 0, the setting's "unset",
    so a size of 0 is refused rather than read as unset."""
    if not value:
        return 0
    size = parse_size(value, where)
    if size <= 0:
        raise XenkitError(f"{where}={value!r}: give a size above 0, or leave it out")
    return size


def one_line(value: str, where: str) -> str:
    """A command line: written into GRUB's menu and U-Boot's scripts, where a line break,
    a quote or a backslash would end or change what the line says."""
    if any(c in value for c in '"\\') or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise XenkitError(
            f"{where}={value!r}: a command line cannot hold a quote, backslash or control "
            "character: drop it"
        )
    return value


def existing_file(value: str, where: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise XenkitError(f"{where}: {value} is not a readable file; give the path of one")
    return path.resolve()


def ranged(low: int, high: int) -> Parser:
    def parse(value: int, where: str) -> int:
        if not low <= value <= high:
            raise XenkitError(f"{where}={value}: give {low} to {high}")
        return value

    return parse


def choice(choices: tuple[str, ...]) -> Parser:
    def parse(value: str, where: str) -> str:
        if value not in choices:
            raise XenkitError(f"{where}={value!r}: choose one of {', '.join(choices)}")
        return value

    return parse


def ipv4_address(value: str, where: str) -> str:
    import ipaddress

    if value:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            # U-Boot's tftpb speaks IPv4 only (tftpb -6 needs CONFIG_IPV6, off in Debian's).
            raise XenkitError(
                f"{where}={value!r} is not an IPv4 address: U-Boot netboots over IPv4"
            ) from None
    return value


def ipv4_interface(value: str, where: str) -> str:
    """A static address for U-Boot, as ADDR/PREFIX (a bare address is a /24)."""
    import ipaddress

    if not value:
        return ""
    try:
        iface = ipaddress.ip_interface(value if "/" in value else value + "/24")
    except ValueError:
        raise XenkitError(
            f"{where}={value!r} is not an address: give one like 10.0.0.2/24"
        ) from None
    if iface.version != 4:
        # U-Boot's tftpb speaks IPv4 only (tftpb -6 needs CONFIG_IPV6, off in Debian's).
        raise XenkitError(f"{where}={value!r}: U-Boot netboots over IPv4; give one")
    return str(iface)


def directory(value: str, where: str) -> Path | None:
    """A directory xenkit may create (a chunk store several builds share)."""
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise XenkitError(f"{where}: {value} exists and is not a directory; give a directory")
    return path


def http_urls(value: str, where: str) -> tuple[str, ...]:
    """Mirrors of a chunk store: http:// URLs, comma-separated (the first stage has no TLS)."""
    import urllib.parse

    urls = tuple(u.strip() for u in value.split(",") if u.strip())
    for u in urls:
        try:
            parts = urllib.parse.urlsplit(u)
            parts.port  # noqa: B018 - raises ValueError for a port beyond 65535
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme != "http"
            or not parts.hostname
            or any(c in u for c in " '\"$`")
        ):
            raise XenkitError(
                f"{where}: {u!r} is not a plain http:// URL; give e.g. http://10.0.0.1:8080/"
            )
    return urls


def tables(value: list[Any], where: str) -> list[dict[str, Any]]:
    if not all(isinstance(t, dict) for t in value):
        raise XenkitError(f"{where}: give [[{where}]] tables in the config file")
    return value


def unmet(values: dict[str, Any]) -> None:
    """Refuse a setting given without the switch it needs (values as resolved)."""
    for s in SETTINGS:
        value = values.get(s.name)
        if s.needs and value and value != s.default and not values.get(s.needs):
            raise XenkitError(
                f"{s.name} does nothing without {s.needs}: set {s.needs} = true "
                f"({'--' + s.needs.replace('_', '-')}) or drop {s.name}"
            )


DOM0_ROOTS: tuple[str, ...] = get_args(Dom0Root)
NET_FETCHES: tuple[str, ...] = get_args(NetFetch)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "board",
        str,
        DEFAULT_BOARD,
        "the board: a name, or a board .toml file",
        path=True,
    ),
    Setting("ram", str, "", "RAM model of the board, e.g. 1G/2G/4G/8G (default: the board's)"),
    Setting(
        "dom0_mem",
        str,
        "",
        "memory for Dom0, e.g. 512M (default: the board's)",
        parse=size_or_zero,
    ),
    Setting("dom0_vcpus", int, 0, "vCPUs for Dom0 (0: all of them)", parse=ranged(0, 4096)),
    Setting(
        "xen_cmdline", str, "", "Xen command line, replacing the generated one", parse=one_line
    ),
    Setting("xen_extra", str, "", "words appended to the Xen command line", parse=one_line),
    Setting(
        "dom0_cmdline",
        str,
        "",
        "Dom0 Linux command line, replacing the generated one",
        parse=one_line,
    ),
    Setting("dom0_extra", str, "", "words appended to the Dom0 command line", parse=one_line),
    Setting(
        "xen_image",
        str,
        "",
        "use this Xen binary instead of the packaged one",
        parse=existing_file,
        path=True,
    ),
    Setting(
        "kernel_image",
        str,
        "",
        "use this Dom0 kernel Image instead of the packaged one",
        parse=existing_file,
        path=True,
    ),
    Setting(
        "root_size",
        str,
        "",
        "size of the ext4 root partition (default: fits its content)",
        parse=size_or_zero,
    ),
    Setting(
        "persist",
        str,
        "",
        "live images: also write live-usb.img, the image with a writable partition of this "
        "size that keeps Dom0's changes (/etc/xen, guest disks) across boots",
        parse=size_or_zero,
    ),
    Setting(
        "debian",
        str,
        "",
        "the Debian release to build from: "
        + ", ".join(f"{r.name} (Xen {r.xen}, Linux {r.linux})" for r in releases.RELEASES.values())
        + " (default: the board's)",
        parse=lambda value, where: value and releases.get(value, where).name,
        choices=releases.NAMES,
    ),
    Setting("refresh", bool, False, "refresh the package indexes even if they are recent"),
    Setting(
        "netboot",
        bool,
        False,
        "also lay the system out for netboot (tftp/) with a small first-stage SD image",
    ),
    Setting(
        "netboot_server",
        str,
        "",
        "netboot: the TFTP server's address (default: from DHCP); on the PC, where GRUB "
        "fetches the big files over HTTP (default: the server it booted from)",
        parse=ipv4_address,
        needs="netboot",
    ),
    Setting(
        "netboot_address",
        str,
        "",
        "netboot: the board's own address, e.g. 10.0.0.2/24 (a bare address is a /24), "
        "instead of asking DHCP; needs netboot_server",
        parse=ipv4_interface,
        needs="netboot",
    ),
    Setting(
        "netboot_http_port",
        int,
        8080,
        "netboot: the HTTP port the boot loader fetches Xen, Dom0's kernel and initramfs "
        "from, on the netboot server, where it can (GRUB; U-Boot with wget); xenkit serve's "
        "--http-port (0: TFTP only)",
        parse=ranged(0, 65535),
        needs="netboot",
    ),
    Setting(
        "tftp_blocksize",
        int,
        0,
        "netboot: U-Boot's tftpblocksize (0: its default)",
        parse=ranged(0, 65464),
        needs="netboot",
    ),
    Setting(
        "tftp_windowsize",
        int,
        0,
        "netboot: U-Boot's tftpwindowsize, RFC 7440 (0: 1)",
        parse=ranged(0, 65535),
        needs="netboot",
    ),
    Setting(
        "net_root",
        bool,
        False,
        "PC: a small boot medium (net.iso) whose Dom0 root comes over HTTP, fetched lazily "
        "from the chunk store written beside it (netroot/)",
    ),
    Setting(
        "net_store",
        str,
        "",
        "net_root: put the chunks in this store, shared with other builds, instead of "
        "the build's netroot/store",
        parse=directory,
        path=True,
        needs="net_root",
    ),
    Setting(
        "mirrors",
        str,
        "",
        "net_root: the stores' URLs Dom0 fetches from, in turn, comma-separated (default: "
        "the DHCP boot file if it is an http:// URL, else the DHCP server's port 8080)",
        parse=http_urls,
        needs="net_root",
    ),
    Setting(
        "net_fetch",
        str,
        "lazy",
        "net_root: lazy (each chunk when first read, cached) or whole (every layer downloaded "
        "into RAM before Dom0 starts, as dracut's root=live:http:// does); Dom0's command line "
        "can override it with xenkit.fetch=",
        parse=choice(NET_FETCHES),
        choices=NET_FETCHES,
        needs="net_root",
    ),
    # None: the board's choice (the PC's live workbench has it, the Arm boards do not).
    Setting(
        "toolstack",
        bool,
        None,
        "give Dom0 Debian's Xen toolstack (xl, xenstored, xenconsoled) and a bridge, xenbr0 "
        "(default: the board's; on for pc)",
    ),
    Setting(
        "dom0_root",
        str,
        "sd",
        "with --toolstack: Dom0's root on the boot medium (sd: the card's ext4 partition, the "
        "PC image's compressed root) or in its initramfs",
        parse=choice(DOM0_ROOTS),
        choices=DOM0_ROOTS,
        needs="toolstack",
    ),
    Setting(
        "dom0_autorun",
        str,
        "",
        "with --toolstack: a shell script Dom0 runs once it is up",
        parse=existing_file,
        path=True,
        needs="toolstack",
    ),
    # kernel may be "builtin:tick", the bare-metal guest xenkit builds from its own source.
    Setting(
        "domain",
        list,
        [],
        "dom0less guests, as [[domain]] tables in the config file",
        parse=tables,
        record="xenkit.config.bootconfig:Domain",
    ),
    Setting(
        "guest",
        list,
        [],
        "run-time guests Dom0 can `xl create`, as [[guest]] tables in the config file",
        parse=tables,
        record="xenkit.xen.xl:Guest",
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
# Keys of [[domain]] and [[guest]] that name files, relative to the config file.
TABLE_PATHS = ("kernel", "ramdisk", "passthrough_dtb")


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] = ()) -> None:
    """Flags for `names` (default: every setting the command line can give)."""
    for s in SETTINGS:
        if s.type is list or (names and s.name not in names):
            continue
        if s.type is bool:
            parser.add_argument(
                s.flag,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=s.help,
            )
        else:
            parser.add_argument(
                s.flag,
                dest=s.name,
                type=s.type,
                default=None,
                choices=s.choices or None,
                help=s.help,
            )


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
    import tomllib

    from xenkit.core import files

    text = files.read_text(path, "config", "give a TOML file")
    try:
        data = tomllib.loads(text)
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
            values[name] = os.path.abspath(path.parent / Path(values[name]).expanduser())
    for table in [*values.get("domain", []), *values.get("guest", [])]:
        # Guest files are named relative to the config file; builtin:NAME is no file.
        for key in TABLE_PATHS:
            value = table.get(key) if isinstance(table, dict) else None
            if value and not isinstance(value, str):
                raise XenkitError(f"config {path}: {key} = {value!r} must be a path (a string)")
            if value and not builtin.is_builtin(value):
                # abspath, not resolve: a symlink loop is for the file's own check to
                # name (resolve raised RuntimeError, exit 3).
                table[key] = os.path.abspath(path.parent / value)
    return values


def _is_file_path(name: str, value: str) -> bool:
    # A board is a name unless it names a .toml file.
    return name != "board" or value.endswith(".toml")


def resolve(file_values: dict[str, Any], cli_values: dict[str, Any]) -> dict[str, Any]:
    """Defaults, overlaid by the config file, overlaid by the command line, each value
    through its setting's parser."""
    raw = {s.name: s.default for s in SETTINGS}
    raw.update(file_values)
    raw.update({k: v for k, v in cli_values.items() if k in BY_NAME and v is not None})
    out = {}
    for name, value in raw.items():
        parse = BY_NAME[name].parse
        out[name] = parse(value, name) if parse else value
    return out
