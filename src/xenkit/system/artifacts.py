"""Artifacts: the binaries a build needs, from Debian packages through the cache."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from xenkit.config.spec import SystemSpec
from xenkit.core import log, memo
from xenkit.core.cachedir import cache_home
from xenkit.core.files import locked
from xenkit.debian import deb
from xenkit.debian.apt import Apt, Package
from xenkit.debian.kmods import ModuleTree
from xenkit.errors import XenkitError
from xenkit.formats import kernel
from xenkit.run import qemu


@dataclass(frozen=True)
class Artifacts:
    files: dict[str, Path]  # role (xen, kernel, dtb, busybox, uboot, firmware/...) -> file
    packages: tuple[Package, ...]
    overrides: dict[str, Path]  # roles the user replaced with local files
    debs: dict[str, Path] = field(default_factory=dict)  # package role -> .deb in the cache


def _extracted(pkg: Package, debfile: Path, patterns: dict[str, str]) -> dict[str, Path]:
    """Files of one package, extracted into the cache under the package's SHA256. Boards
    want different files of the same package: each is extracted once and indexed, and the
    index is replaced atomically, so builds for several boards share one cache."""
    dest = cache_home() / "files" / pkg.sha256
    index_path = dest / "index.json"
    index: dict[str, str] = {}
    if index_path.exists():
        index = json.loads(index_path.read_text())
    missing = sorted(
        {p for p in patterns.values() if p not in index or not (dest / index[p]).exists()}
    )
    if missing:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".x-") as tmp:
            for pattern, path in deb.extract(debfile, missing, Path(tmp)).items():
                rel = path.relative_to(tmp)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                path.replace(dest / rel)
                index[pattern] = str(rel)
        partial = index_path.with_suffix(f".{os.getpid()}")
        partial.write_text(json.dumps(index, indent=1, sort_keys=True))
        partial.replace(index_path)
    return {role: dest / index[pattern] for role, pattern in patterns.items()}


def gzipped(path: Path) -> Path:
    """A gzip'd copy of an uncompressed kernel Image, cached by content. U-Boot reads the
    emulated SD card at about 1.3 MiB/s, and Xen inflates a gzip'd Dom0 kernel itself."""
    with path.open("rb") as f:
        if kernel.is_gzip(f.read(2)):
            return path
    target = cache_home() / "derived" / f"{memo.digest(path)}.Image.gz"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        with path.open("rb") as src, gzip.GzipFile(tmp, "wb", compresslevel=6, mtime=0) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(target)
    return target


def gather(spec: SystemSpec) -> Artifacts:
    board = spec.board
    apt = Apt(board.arch, board.release)
    apt.update(force=spec.refresh)
    overrides = {
        role: path
        for role, path in (("xen", spec.xen_image), ("kernel", spec.kernel_image))
        if path is not None
    }
    files: dict[str, Path] = {}
    packages: list[Package] = []
    debs: dict[str, Path] = {}
    for ref in board.packages:
        patterns = {r: p for r, p in ref.files.items() if r not in overrides}
        if not patterns:
            continue
        pkg = apt.resolve(ref.name, ref.follow)
        log.info("package %s %s", pkg.name, pkg.version)
        packages.append(pkg)
        debs[ref.role] = apt.fetch(pkg)
        files.update(_extracted(pkg, debs[ref.role], patterns))
    files.update(overrides)
    if board.dtb_from_qemu:
        files["dtb"] = qemu.dumped_dtb(board, spec.ram)
    return Artifacts(files, tuple(packages), overrides, debs)


MODULES = "usr/lib/modules/"


def modules(art: Artifacts) -> ModuleTree:
    """The Dom0 kernel's modules, unpacked once per kernel package into the cache."""
    if "kernel" in art.overrides or "kernel" not in art.debs:
        raise XenkitError(
            "the toolstack needs the packaged kernel's modules: drop kernel_image, "
            "or build without toolstack"
        )
    debfile = art.debs["kernel"]
    dest = cache_home() / "files" / memo.digest(debfile) / "modules"
    if not (dest / ".complete").exists():
        # One unpacker at a time: two builds on an empty cache both unpacked, and the second
        # one's rename onto the first one's tree failed the build (ENOTEMPTY, a fresh CI).
        dest.parent.mkdir(parents=True, exist_ok=True)
        with locked(dest.with_name(dest.name + ".lock")):
            if not (dest / ".complete").exists():
                _unpack_modules(debfile, dest)
    top = next((dest / d for d in ("usr/lib/modules", "lib/modules") if (dest / d).is_dir()), None)
    releases = [p for p in top.iterdir() if p.is_dir()] if top else []
    if len(releases) != 1:
        raise XenkitError(f"{debfile.name} holds {len(releases)} module trees, expected one")
    return ModuleTree(releases[0])


def _unpack_modules(debfile: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)  # an incomplete tree a killed build left
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".modules-"))
    try:
        # Debian 12 ships them under lib/modules, 13 under usr/lib/modules.
        deb.unpack(debfile, tmp, keep=lambda p: deb.usr_merged(p).startswith(MODULES))
        (tmp / ".complete").touch()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
