"""What a board file must look like, key by key: checked before a board is read, so a typo or
a wrong type is one line naming the key, not an exception deep in a build, a value quietly
split into characters ("a" for ["a"]) or a line break carried into a script.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from xenkit.errors import XenkitError
from xenkit.xen.xl import UNQUOTABLE

# A problem with a value, or None.
Kind = Callable[[Any], str | None]


def _matching(regex: str, problem: str) -> Kind:
    """A string the whole of which `regex` matches, else `problem`."""
    compiled = re.compile(regex)

    def kind(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        return None if compiled.fullmatch(value) else problem

    return kind


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def line(value: Any) -> str | None:
    """A command line: written into boot scripts, GRUB's menu and config.txt; the same
    characters xl.cfg strings cannot hold."""
    if not isinstance(value, str):
        return "must be a string"
    return "cannot hold a line break, quote or backslash" if UNQUOTABLE.search(value) else None


# A word QEMU or a boot loader takes as one argument: no spaces, quotes or shell syntax.
word = _matching(r"[A-Za-z0-9._,=+:@/-]*", "must be one word (no spaces or quotes)")
# A package name or a path in one: a word, with {xen} and glob characters.
pattern = _matching(r"[A-Za-z0-9._,=+:@/{}*?\[\]-]+", "must be a package name or path (no spaces)")
# A file name on the boot partition, which U-Boot's load command takes bare (or none).
file_name = _matching(
    r"|(?!\.\.?$)[A-Za-z0-9._+-]+", "must be a bare file name (letters, digits, . _ + -)"
)
# A memory size as QEMU's -m takes it ("2G"), or "" (the build's RAM model).
size = _matching(r"|\d+[MGT]", 'must be a size like "2G"')


def whole(low: int, high: int) -> Kind:
    def kind(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"must be a whole number from {low} to {high}"

    return kind


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def words(value: Any) -> str | None:
    """A list of names: a bare string would be read one character at a time."""
    if isinstance(value, list) and all(isinstance(v, str) and not word(v) for v in value):
        return None
    return 'must be a list of names, e.g. ["a", "b"]'


def lines(value: Any) -> str | None:
    if isinstance(value, list) and all(line(v) is None for v in value):
        return None
    return "must be a list of one-line strings"


def table(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a table"


def uboot_env(value: Any) -> str | None:
    """U-Boot variables by name, each a one-line value."""
    if isinstance(value, dict) and all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_]+", k) and line(v) is None
        for k, v in value.items()
    ):
        return None
    return 'must be a table of U-Boot variables, e.g. { preboot = "pci enum;" }'


def anything(value: Any) -> str | None:
    return None


# Every key a board file may have. Tables map to their own keys; [ram], [packages] and
# [boot] (the target's own) are checked where they are read.
SHAPE: dict[str, Kind | dict[str, Kind]] = {
    "name": word,
    "description": line,
    "arch": word,
    "release": word,
    "target": word,
    "xen_console": word,
    "xen_cmdline": line,
    "dom0_cmdline": line,
    "dom0_mem": word,
    "dma_bitsize": anything,  # 0 or 20-64: its own message (boards.check)
    "platform_compatible": word,
    "dtb_name": file_name,
    "default_ram": word,
    "cpus": whole(1, 4096),
    "ram": table,
    "packages": table,
    "boot": table,
    "check": {"min_xen": word, "min_dom0_linux": word, "xen_hides": words},
    "layout": {"limit": whole(0, 1 << 64), "top_reserve": whole(0, 1 << 64), "reserved": anything},
    "emulate": {
        "machine": word,
        "memory": size,
        "ram": anything,
        "disk": word,
        "console_serial": whole(0, 16),
        "dom0_cmdline": line,
        "xen_cmdline": line,
        "disable": words,
        "cpu": word,
        "smp": whole(1, 4096),
        "accel": word,
        "qemu_release": word,
        "drop_properties": anything,
        "uboot_env": uboot_env,
    },
    "dom0": {
        "root_modules": words,
        "toolstack": flag,
        "hardware_modules": words,
        "net_modules": words,
    },
}
# What every build takes from packages (a target may need more: it says so).
PACKAGE_ROLES = ("xen", "kernel", "busybox")
PACKAGE_KEYS = {"name": pattern, "files": table, "follow": pattern}


def check(data: dict[str, Any], source: str) -> None:
    """One line naming the first key of `data` (a board file) that is unknown or wrong."""

    def refuse(where: str, problem: str) -> None:
        raise XenkitError(f"board file {source}: {where} {problem}")

    def walk(values: dict[str, Any], shape: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            where = f"{prefix}{key}"
            if key not in shape:
                refuse(where, f"is not a board setting: known here: {', '.join(shape)}")
            kind = shape[key]
            if isinstance(kind, dict):
                if not isinstance(value, dict):
                    refuse(f"[{where}]", "must be a table")
                walk(value, kind, f"{where}.")
            elif (problem := kind(value)) is not None:
                refuse(f"{where} = {value!r}", problem)

    walk(data, SHAPE, "")
    for role, ref in data.get("packages", {}).items():
        if not isinstance(ref, dict):
            refuse(f"[packages.{role}]", "must be a table")
        walk(ref, PACKAGE_KEYS, f"packages.{role}.")
        for name, path in ref.get("files", {}).items():
            if (problem := pattern(path)) is not None:
                refuse(f"packages.{role}.files.{name} = {path!r}", problem)


def required(data: dict[str, Any], source: str) -> None:
    """The packages every build takes (checked last: a board file that is wrong in a value
    gets that named first)."""
    for role in PACKAGE_ROLES:
        if role not in data.get("packages", {}):
            raise XenkitError(
                f"board file {source}: [packages.{role}] is missing: every board boots Xen, "
                "a kernel and busybox"
            )
