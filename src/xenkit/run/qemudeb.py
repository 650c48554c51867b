"""A Debian release's QEMU, unpacked into xenkit's cache beside the one installed: for a board
whose guests the installed QEMU cannot run (the board file says why). Only its packages'
files, no scripts; its libraries are the installed QEMU's, and its firmware the host's.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

from xenkit.core import files, log
from xenkit.core.cachedir import cache_home
from xenkit.core.proc import run
from xenkit.errors import XenkitError

# Debian's names for the machines xenkit runs on.
HOST_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
# Where Debian's QEMU looks for ROMs and BIOS images (its firmware path). It looks there
# relative to its own binary, so the unpacked tree points each back at the host's copy:
# SeaBIOS, iPXE and the QEMU ROMs the installed QEMU uses too (a directory the packages
# bring, /usr/share/qemu, gets the host's files it lacks).
FIRMWARE_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu")


def host_arch() -> str:
    machine = platform.machine()
    try:
        return HOST_ARCHES[machine]
    except KeyError:
        raise XenkitError(
            f"this machine is {machine}: xenkit runs its emulators on amd64 or arm64 hosts"
        ) from None


@functools.cache
def binary(release: str, packages: tuple[str, ...], name: str) -> Path:
    """QEMU's `name` (qemu-system-x86_64) from `release`'s `packages`, unpacked once per
    version under the cache and checked to start."""
    from xenkit.debian import deb
    from xenkit.debian.apt import Apt

    apt = Apt(host_arch(), release)
    apt.update()
    pkgs = [apt.resolve(p) for p in packages]
    tree = cache_home() / "emulators" / pkgs[0].filename.removesuffix(".deb")
    exe = tree / "usr" / "bin" / name
    with files.locked(tree.with_name(tree.name + ".lock")):
        if not exe.exists():
            log.info(
                "unpacking %s's %s %s into the cache (once)", release, pkgs[0].name, pkgs[0].version
            )
            tree.parent.mkdir(parents=True, exist_ok=True)
            files.clean_beside(tree)
            new = files.new_dir_beside(tree)
            try:
                for pkg in pkgs:
                    deb.unpack(
                        apt.fetch(pkg), new, keep=lambda p: not p.startswith("usr/share/doc")
                    )
                for rel in FIRMWARE_DIRS:
                    _link_host(new / rel, Path("/") / rel)
                files.replace_dir(new, tree)
            except BaseException:
                import shutil

                shutil.rmtree(new, ignore_errors=True)
                raise
    probe = run([str(exe), "--version"], capture=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise XenkitError(
            f"{release}'s {pkgs[0].name} {pkgs[0].version} does not start here ({why}): "
            "install the QEMU packages' libraries (make deps)"
        )
    return exe


def _link_host(inside: Path, host: Path) -> None:
    """`inside` (a directory of the unpacked tree) showing the host's `host`: a symlink to it,
    or, where the packages made the directory, a symlink per host entry it lacks."""
    if not inside.is_dir():
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.symlink_to(host)
        return
    if host.is_dir():
        for entry in host.iterdir():
            if not (inside / entry.name).exists() and not (inside / entry.name).is_symlink():
                (inside / entry.name).symlink_to(entry)
