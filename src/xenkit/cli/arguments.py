"""The command line's shape: every command, its options and the module that runs it.

Parsing a command line imports only argparse, and builds only the options of the command it
names: `xenkit --help` took 100 ms, 31 of them the interpreter's own start, 55 importing the
settings table (dataclasses alone 18) and 18 building every command's options. A command's
options that take settings import the table; a command's module (and what it needs: apt,
QEMU, device trees) is imported once it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xenkit import __version__
from xenkit.config import DEFAULT_BOARD

# typing alone costs 5 ms of a 60 ms budget; mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    Command = Callable[[argparse.Namespace], int]

DESCRIPTION = "Build, check, boot and netboot Xen systems: Raspberry Pi 4, Arm boards, PCs."


def default_out(board: str) -> str:
    """Where a build of `board` (a name or a board file) goes when no -o is given."""
    name = os.path.basename(board)
    return os.path.join("out", name.removesuffix(".toml"))


# Where commands look for a build when none is named: the default board's build.
DEFAULT_OUT = default_out(DEFAULT_BOARD)


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, as all of xenkit's are (its own are two: the usage,
    then the error)."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse reads a value that starts with "-" (--ram -1G) as the next option.
            message += " (a value starting with -: write it as --option=VALUE)"
        self.exit(2, f"xenkit: error: {message} (see {self.prog} --help)\n")


def _columns() -> int:
    """The terminal's width, found as shutil.get_terminal_size finds it: shutil's import is
    7 ms, a tenth of `xenkit --help`."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        # argparse's own margin: two columns short of the terminal.
        super().__init__(prog, width=_columns() - 2)


def _command(target: str) -> Command:
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        func: Command = getattr(importlib.import_module(f"xenkit.cli.{module}"), name)
        return func(args)

    return run


def _seconds(value: str) -> float:
    """A timeout: a number of seconds above 0 (nan or inf would wait forever or never)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 10**6:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds from 0 to 10^6")
    return seconds


def _settings(p: argparse.ArgumentParser, names: tuple[str, ...] = ()) -> None:
    from xenkit.config import settings

    settings.add_arguments(p, names)


# -- each command's options -----------------------------------------------------------------
def _build(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="output directory (default: out/BOARD)")
    p.add_argument("-c", "--config", help="TOML file with settings (keys as the options below)")
    p.add_argument(
        "--watch",
        action="store_true",
        help="then rebuild whenever the config or a file it names changes, timing each",
    )
    _settings(p)


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="build directory")
    p.add_argument(
        "--check",
        action="store_true",
        help="wait for the Dom0 banner, print phase timings, exit 0 if it came",
    )
    p.add_argument("--timeout", type=_seconds, default=600, help="seconds --check waits")
    p.add_argument("-q", "--quiet", action="store_true", help="with --check: no console echo")
    p.add_argument("--firmware", help="the PC's firmware: bios (SeaBIOS, default) or uefi (OVMF)")
    p.add_argument("--media", help="the PC's image as a cd (default), usb stick, virtio disk, sata")
    p.add_argument("--nic", help="the PC's network card: e1000 (default) or virtio")
    p.add_argument(
        "--cpu",
        help="QEMU's -cpu in place of the board's (e.g. qemu64: a PC without VT-x/AMD-V)",
    )
    p.add_argument(
        "--entry",
        type=int,
        help="with --check: the boot menu entry to pick, from 0, typed on the serial line",
    )
    for flag, meta, text in (
        ("--wait-for", "TEXT", "with --check: also wait for a console line containing TEXT"),
        ("--mirror", "URL", "a network root's store, tried in turn (default: the build's own)"),
    ):
        p.add_argument(flag, action="append", metavar=meta, help=f"{text}; repeat it for more")
    p.add_argument("--cache-disk", metavar="FILE", help="a network root's cache disk image")


def _target(p: argparse.ArgumentParser) -> None:
    """What check and map look at: a build, or the board and the parts named one by one."""
    p.add_argument("dir", nargs="?", help="a build directory (else the parts below)")
    p.add_argument(
        "--emulated",
        action="store_true",
        help="the emulator's copy: its RAM, DTB and Dom0 command line",
    )
    p.add_argument(
        "--ram",
        default="",
        help="a RAM model of the board (e.g. 4G) or any size, as one bank (default: the board's)",
    )
    p.add_argument("--dtb", help="device tree blob (default: the board's, from Debian)")
    # The names build uses; --xen-cmd and --dom0-cmd are what check and map called them once.
    _settings(p, ("board", "xen_cmdline", "dom0_cmdline"))
    p.add_argument("--xen-cmd", dest="xen_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--dom0-cmd", dest="dom0_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--xen", help="Xen binary, for its version (default: Debian's)")
    p.add_argument("--kernel", help="Dom0 kernel Image, for its version (default: Debian's)")
    p.add_argument("--config-txt", help="the Pi firmware's config.txt")


def _check(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _map(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument("-o", "--output", help="also write OUTPUT.svg and OUTPUT.png")


def _uboot_script(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="ImageBuilder config, or a xenkit .toml")
    p.add_argument("-d", "--dir", default=".", help="directory holding the files (and outputs)")
    p.add_argument("-t", "--type", help="tftp, sd, scsi, usb, virtio, or a load command")
    p.add_argument(
        "-o", "--output", help="output name: NAME.source, NAME.scr (default: UBOOT_SOURCE, or boot)"
    )
    p.add_argument("--explain", action="store_true", help="print the plan and dry-run it")
    p.add_argument(
        "--first-stage",
        action="store_true",
        help="write the small SD script that fetches the real one over TFTP",
    )
    p.add_argument("--server", help="with --first-stage: the TFTP server's address")
    p.add_argument("--ip", help="with --first-stage: the board's address")
    p.add_argument("--next", default="boot2.scr", help="with --first-stage: script to fetch")


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="a --netboot or --net-root build")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (:: for IPv6)")
    p.add_argument("--port", type=int, default=69, help="UDP port (69 needs root)")
    p.add_argument(
        "--http-port",
        type=int,
        help="TCP port for a network root's store and the netboot tree's big files (8080)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes the TFTP transfers run on (default: one a usable CPU; 0: this one)",
    )
    p.add_argument(
        "--emulated",
        action="store_true",
        help="serve the emulator's script and DTB (for xenkit's own QEMU boards)",
    )
    p.add_argument(
        "--proxy-dhcp",
        metavar="SERVER_IP",
        help="answer PXE DHCP requests (Pi 4, PC) naming SERVER_IP as the TFTP server",
    )
    p.add_argument(
        "-c", "--config", help="the build's config: rebuild when it or the files it names change"
    )


def _guest(p: argparse.ArgumentParser) -> None:
    gsub = p.add_subparsers(dest="guest_command", required=True)
    g = gsub.add_parser(
        "add",
        help="write a guest's xl.cfg (and files) into a build's card",
        formatter_class=_Formatter,
    )
    g.add_argument("name", help="the guest's name (xl create /etc/xen/NAME.cfg in Dom0)")
    g.add_argument("-d", "--dir", default=DEFAULT_OUT, help="build directory (--toolstack)")
    g.add_argument("--kernel", help="guest kernel Image (default: Dom0's kernel)")
    g.add_argument("--initramfs", help="guest initramfs (default: xenkit's busybox guest)")
    g.add_argument("--memory", default="128M", help="memory at start (default: 128M)")
    g.add_argument("--maxmem", help="memory ceiling for xl mem-set (default: --memory)")
    g.add_argument("--vcpus", type=int, default=1, help="vCPUs at start (default: 1)")
    g.add_argument("--maxvcpus", type=int, help="vCPU ceiling for xl vcpu-set")
    g.add_argument("--bridge", default="xenbr0", help="Dom0 bridge for its vif ('' for none)")
    g.add_argument(
        "--ip",
        help="its address/prefix, or dhcp (default: the next free on xenkit's bridge; dhcp "
        "where Dom0 bridges the machine's network, as on the pc)",
    )
    g.add_argument(
        "--ping", help="addresses it pings once up, comma-separated (gateway: its router's)"
    )
    g.add_argument(
        "--type",
        help="pv (the default), pvh or hvm on the pc; on Arm guests are all one kind: leave out",
    )
    g.add_argument(
        "--no-pv-drivers",
        dest="pv_drivers",
        action="store_false",
        default=None,
        help="an HVM guest with the emulated NIC and disk instead of Xen's PV drivers",
    )
    g.add_argument("--disk", help="a disk image of this size for it (made in Dom0 at first start)")
    g.add_argument("--cmdline", help="words added to its kernel command line")
    g.set_defaults(func=_command("guest:cmd_guest_add"))


def _write(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="build directory")
    p.add_argument("device", help="the stick's block device (e.g. /dev/sdb), or an image file")


def _info(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="build directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")


# name: (its line in --help, its options, "module:function" in xenkit.cli that runs it; ""
# where its subcommands name their own)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "build": ("build a bootable Xen system and its boot image", _build, "build:cmd_build"),
    "run": ("boot a build on the emulated board", _run, "run:cmd_run"),
    "check": (
        "catch memory, DMA, console and layout pitfalls before boot",
        _check,
        "check:cmd_check",
    ),
    "map": ("the address spaces side by side (terminal, SVG, PNG)", _map, "check:cmd_map"),
    "uboot-script": (
        "boot scripts from an ImageBuilder or xenkit config",
        _uboot_script,
        "uboot:cmd_uboot_script",
    ),
    "serve": (
        "netboot a build over TFTP, or serve its network root",
        _serve,
        "serve:cmd_serve",
    ),
    "guest": ("run-time guests Dom0 starts with xl", _guest, ""),
    "write": ("write a build's image to a USB stick, card or disk", _write, "write:cmd_write"),
    "info": ("versions, layout and files of a build", _info, "info:cmd_info"),
}


def named_command(argv: Sequence[str]) -> str | None:
    """The command argv names: its first word that is not an option (the top level's options
    take no value). "" where it names none (`xenkit --help`); None where that word is no
    command, so argparse, given them all, says what the choices are."""
    word = next((a for a in argv if not a.startswith("-")), "")
    return word if word in COMMANDS or not word else None


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for argv: the one command argv names, with its options; every command,
    without options, where it names none or no command (for --help, and argparse's list of
    choices); without argv, every command with its options, for whoever inspects them all."""
    chosen = None if argv is None else named_command(argv)
    top = _Parser(prog="xenkit", description=DESCRIPTION, formatter_class=_Formatter)
    top.add_argument("--version", action="version", version=f"xenkit {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    top.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = top.add_subparsers(dest="command", required=True)
    for name, (text, options, run) in COMMANDS.items():
        if chosen and name != chosen:
            # Never parsed, never listed: 1.6 ms of `xenkit uboot-script`'s start-up.
            continue
        # A command listed for --help parses nothing, so it needs no -h either: a third of
        # the parser's cost.
        given = chosen is None or chosen == name
        p = sub.add_parser(name, help=text, add_help=given, formatter_class=_Formatter)
        if given:
            options(p)
            if run:
                p.set_defaults(func=_command(run))
    return top
