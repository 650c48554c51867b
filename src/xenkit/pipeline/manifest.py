"""A build's manifest: what was built, from what, and where each piece is, written and read
only here.

Every stage after the build (run, check, map, info, guest add) learns about a build from
this file (serve only asks that there is one), so its shape is a typed record with a schema
number: a build written by another version of xenkit is refused with one line, never
misread.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xenkit.config import boards
from xenkit.config.boards import Bank, Board
from xenkit.core import files
from xenkit.core.sizes import format_size
from xenkit.errors import XenkitError
from xenkit.xen import xl
from xenkit.xen.memory import Module

NAME = "manifest.json"
# The board file the build was made from, copied into the build: run, check and guest add
# read it there, so a build made from a board file elsewhere stays usable on its own.
BOARD_FILE = "board.toml"
# Raised whenever a field is added, renamed or changes meaning.
SCHEMA = 4


@dataclass(frozen=True)
class FileEntry:
    """A file the build wrote. `sha256` leaves out the file's all-zero MiB blocks (the file
    cut at every MiB), listed in `zero_mib` as [first, end) ranges of block numbers: where
    there are none, as for every file but the disk images, it is sha256sum's digest."""

    size: int
    sha256: str
    zero_mib: tuple[tuple[int, int], ...] = ()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(path.stat().st_size, *files.sha256_sparse(path))


@dataclass(frozen=True)
class PackageEntry:
    name: str
    version: str
    arch: str
    sha256: str


@dataclass(frozen=True)
class LoadEntry:
    """One file the hardware boot script loads, and where."""

    name: str
    file: str
    address: int
    end: int
    size: int
    file_size: int


@dataclass(frozen=True)
class DomainEntry:
    """A dom0less guest, started by Xen at boot."""

    name: str
    kernel: str
    memory: str
    vcpus: int


@dataclass(frozen=True)
class GuestEntry:
    """A run-time guest Dom0 starts with xl."""

    name: str
    memory: str
    vcpus: int
    maxvcpus: int
    ip: str
    type: str = ""  # pv, pvh, hvm on x86; arm on Arm ("" in manifests before types)


def guest_entry(g: xl.Guest) -> GuestEntry:
    return GuestEntry(g.name, format_size(g.memory), g.vcpus, g.maxvcpus, g.ip, g.type)


@dataclass(frozen=True)
class BootFiles:
    """Paths inside the build of what checks and the emulator read."""

    xen: str
    kernel: str
    dtb: str  # the hardware's DTB, as the boot script hands it to Xen
    emulator_dtb: str  # the emulator's copy
    config_txt: str = ""  # the Pi firmware's config, where the target has one


@dataclass(frozen=True)
class Manifest:
    xenkit: str
    built: str
    build_seconds: float
    board: str
    target: str
    description: str
    debian: str  # the release it was built from
    ram: str
    ram_banks: tuple[Bank, ...]
    emulated_ram_banks: tuple[Bank, ...]
    boot_files: BootFiles
    xen_version: str
    linux_version: str
    kernel_isize: int | None
    dom0_mem: str
    xen_cmdline: str
    dom0_cmdline: str
    emulator_dom0_cmdline: str
    emulator_xen_cmdline: str
    packages: tuple[PackageEntry, ...]
    local_files: dict[str, str]
    layout: tuple[LoadEntry, ...]
    guests: tuple[DomainEntry, ...]
    guest_banners: tuple[str, ...]
    # Every line a boot of this build prints once all is up (Dom0, guests, autorun's end).
    banners: tuple[str, ...]
    toolstack: bool
    dom0_root: str
    autorun: bool
    runtime_guests: tuple[GuestEntry, ...]
    # Boot modules as Xen registers them, for "hardware" and "emulator".
    xen_modules: dict[str, tuple[Module, ...]]
    files: dict[str, FileEntry]
    check: dict[str, Any] = field(default_factory=dict)
    # The images to write to a card, stick or disc (sd.img, live.iso).
    media: tuple[str, ...] = ("sd.img",)
    # The pre-boot checks that apply, by name: the boot target's (None: every one).
    checks: tuple[str, ...] | None = None
    schema: int = SCHEMA

    def path(self, build_dir: Path, name: str) -> Path:
        rel: str = getattr(self.boot_files, name)
        return build_dir / rel


def to_json(m: Manifest) -> str:
    return json.dumps(dataclasses.asdict(m), indent=2) + "\n"


def _convert(hint: Any, value: Any, where: str) -> Any:
    """`value` from JSON as the type `hint` says, or KeyError/TypeError naming `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise TypeError(where)
        hints = typing.get_type_hints(hint)
        kwargs = {}
        for f in dataclasses.fields(hint):
            if f.name in value:
                kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{where}.{f.name}")
        return hint(**kwargs)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise TypeError(where)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(where)
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise TypeError(where)
    return value


def from_json(text: str, source: str) -> Manifest:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # RecursionError: arrays nested some thousand deep, which no xenkit wrote.
        raise XenkitError(f"cannot read {source}: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise XenkitError(
            f"{source} was written by another version of xenkit (manifest schema {schema}, "
            f"this one reads {SCHEMA}): rebuild with this version (xenkit build -o DIR)"
        )
    try:
        manifest: Manifest = _convert(Manifest, data, "manifest")
    except (KeyError, TypeError, ValueError) as exc:
        raise XenkitError(
            f"{source} is damaged near {exc.args[0] if exc.args else 'the top'}: "
            "rebuild (xenkit build -o DIR)"
        ) from None
    for name in ("ram_banks", "emulated_ram_banks"):
        if (problem := boards.bank_problem(getattr(manifest, name))) is not None:
            raise XenkitError(f"{source} is damaged near manifest.{name} ({problem}): rebuild")
    return manifest


def require(build_dir: Path) -> None:
    """Refuse a directory that is no build. Enough for readers of a build's files alone
    (`xenkit serve` sends its netboot tree, whichever xenkit wrote it)."""
    if not (build_dir / NAME).is_file():
        raise XenkitError(
            f"{build_dir} is not a xenkit build (no {NAME}): run xenkit build -o {build_dir}"
        )


def read(build_dir: Path) -> Manifest:
    path = build_dir / NAME
    require(build_dir)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise XenkitError(f"cannot read {path}: {exc}") from None
    return from_json(text, str(path))


def write(build_dir: Path, m: Manifest) -> None:
    """Replace the manifest in one step: a reader finds the old one or the new, whole."""
    files.write_atomically({build_dir / NAME: to_json(m)})


def board(build_dir: Path, m: Manifest | None = None) -> Board:
    """The board a build was made for, from the copy of its file kept in the build, for
    the release it was built from (`m`: its manifest, read if not given)."""
    path = build_dir / BOARD_FILE
    if not path.is_file():
        # boards.load would look for a built-in board of that name ("unknown board").
        raise XenkitError(
            f"{build_dir} has no {BOARD_FILE} (the board file it was built for): rebuild it "
            f"(xenkit build -o {build_dir})"
        )
    return boards.load(str(path)).for_release((m or read(build_dir)).debian)
