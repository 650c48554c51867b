"""The command line's shape: every command, its options and the module that runs it.

Only this module and the settings table are imported to parse a command line; a command's
module (and what it needs: apt, QEMU, device trees) is imported once it runs, so `xenkit
--help` or a small `uboot-script` does not pay for `build`'s imports.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from xenkit import __version__
from xenkit.config import settings

DESCRIPTION = "Build, check, boot and netboot Xen systems: Raspberry Pi 4, Arm boards, PCs."
Command = Callable[[argparse.Namespace], int]


def default_out(board: str) -> Path:
    return Path("out") / Path(board).name.removesuffix(".toml")


# Where commands look for a build when none is named: the default board's build.
DEFAULT_OUT = str(default_out(settings.DEFAULT_BOARD))


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, as all of xenkit's are (its own are two: the usage,
    then the error)."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse reads a value that starts with "-" (--ram -1G) as the next option.
            message += " (a value starting with -: write it as --option=VALUE)"
        self.exit(2, f"xenkit: error: {message} (see {self.prog} --help)\n")


def _command(module: str, name: str) -> Command:
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


def _target_arguments(p: argparse.ArgumentParser) -> None:
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
    settings.add_arguments(p, ("board", "xen_cmdline", "dom0_cmdline"))
    p.add_argument("--xen-cmd", dest="xen_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--dom0-cmd", dest="dom0_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--xen", help="Xen binary, for its version (default: Debian's)")
    p.add_argument("--kernel", help="Dom0 kernel Image, for its version (default: Debian's)")
    p.add_argument("--config-txt", help="the Pi firmware's config.txt")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="xenkit", description=DESCRIPTION)
    top.add_argument("--version", action="version", version=f"xenkit {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    top.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build a bootable Xen system and its boot image")
    p.add_argument("-o", "--output", help="output directory (default: out/BOARD)")
    p.add_argument("-c", "--config", help="TOML file with settings (keys as the options below)")
    p.add_argument(
        "--watch",
        action="store_true",
        help="then rebuild whenever the config or a file it names changes, timing each",
    )
    settings.add_arguments(p)
    p.set_defaults(func=_command("build", "cmd_build"))

    p = sub.add_parser("run", help="boot a build on the emulated board")
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
    p.set_defaults(func=_command("run", "cmd_run"))

    p = sub.add_parser("check", help="catch memory, DMA, console and layout pitfalls before boot")
    _target_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_command("check", "cmd_check"))

    p = sub.add_parser("map", help="the address spaces side by side (terminal, SVG, PNG)")
    _target_arguments(p)
    p.add_argument("-o", "--output", help="also write OUTPUT.svg and OUTPUT.png")
    p.set_defaults(func=_command("check", "cmd_map"))

    p = sub.add_parser("uboot-script", help="boot scripts from an ImageBuilder or xenkit config")
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
    p.set_defaults(func=_command("uboot", "cmd_uboot_script"))

    p = sub.add_parser("serve", help="netboot a build over TFTP, or serve its network root")
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
    p.set_defaults(func=_command("serve", "cmd_serve"))

    p = sub.add_parser("guest", help="run-time guests Dom0 starts with xl")
    gsub = p.add_subparsers(dest="guest_command", required=True)
    g = gsub.add_parser("add", help="write a guest's xl.cfg (and files) into a build's card")
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
    g.set_defaults(func=_command("guest", "cmd_guest_add"))

    p = sub.add_parser("write", help="write a build's image to a USB stick, card or disk")
    p.add_argument("dir", help="build directory")
    p.add_argument("device", help="the stick's block device (e.g. /dev/sdb), or an image file")
    p.set_defaults(func=_command("write", "cmd_write"))

    p = sub.add_parser("info", help="versions, layout and files of a build")
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="build directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_command("info", "cmd_info"))
    return top
