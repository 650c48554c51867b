"""Read files out of Debian packages without dpkg: a .deb is an ar archive holding a tarball."""

from __future__ import annotations

import fnmatch
import io
import lzma
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from xenkit.errors import XenkitError


def _ar_members(data: bytes) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise XenkitError("not a Debian package (no ar header): delete it from the cache")
    members: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def _data_tar(deb: Path) -> tarfile.TarFile:
    members = _ar_members(deb.read_bytes())
    for name, blob in members.items():
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise XenkitError(f"{deb.name}: zstd-compressed packages are not supported")
            if name.endswith(".xz"):
                blob = lzma.decompress(blob)
            return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    raise XenkitError(f"{deb.name} has no data.tar member: delete it from the cache")


def _norm(name: str) -> str:
    return str(PurePosixPath("/", name)).lstrip("/")


# The top directories a merged-/usr system links into /usr (lib64 on amd64).
MERGED = ("bin", "sbin", "lib", "lib64")


def usr_merged(path: str) -> str:
    """Where `path` lives on a merged-/usr system: bin/busybox -> usr/bin/busybox. Debian 12
    still ships such files under /bin, Debian 13 under /usr/bin."""
    top, _, rest = path.partition("/")
    if top in MERGED:
        return f"usr/{top}/{rest}" if rest else f"usr/{top}"
    return path


def list_files(deb: Path) -> list[str]:
    with _data_tar(deb) as tar:
        return [_norm(m.name) for m in tar.getmembers() if m.isfile()]


def extract(deb: Path, patterns: list[str], dest: Path) -> dict[str, Path]:
    """Extract one regular file per glob pattern (paths inside the package) under `dest`.

    Patterns let board data name `boot/vmlinuz-*` without knowing the kernel's ABI version,
    and match across merged /usr (bin/busybox finds usr/bin/busybox), so one board file
    serves releases before and after the move. Returns pattern -> extracted path.
    """
    out: dict[str, Path] = {}
    with _data_tar(deb) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for pattern in patterns:
            want = usr_merged(_norm(pattern))
            hits = [m for m in members if fnmatch.fnmatchcase(usr_merged(_norm(m.name)), want)]
            if len(hits) != 1:
                what = "no file" if not hits else f"{len(hits)} files"
                raise XenkitError(f"{deb.name} has {what} matching {pattern}: fix the board file")
            target = dest / _norm(hits[0].name)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(hits[0])
            assert src is not None
            target.write_bytes(src.read())
            out[pattern] = target
    return out


def unpack(
    deb: Path,
    dest: Path,
    keep: Callable[[str], bool] = lambda _: True,
    rename: Callable[[str], str] = lambda p: p,
) -> int:
    """Unpack a package's files under `dest` the way dpkg would, without its scripts:
    directories, regular files (mode, and owner when running as root), symlinks and hard
    links. `keep` filters paths, `rename` maps them (merged /usr). Returns files written."""
    as_root = os.geteuid() == 0
    count = 0
    with _data_tar(deb) as tar:
        for m in tar.getmembers():
            rel = _norm(m.name)
            if not rel or not keep(rel):
                continue
            rel = rename(rel)
            target = dest / rel
            if m.isdir():
                if not target.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                os.chmod(target, m.mode & 0o7777)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if m.issym():
                os.symlink(m.linkname, target)
                continue
            if m.islnk():
                os.link(dest / rename(_norm(m.linkname)), target)
                continue
            if not m.isfile():
                continue
            src = tar.extractfile(m)
            assert src is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            if as_root:
                os.chown(target, m.uid, m.gid)
            os.chmod(target, m.mode & 0o7777)
            count += 1
    return count
