"""A build's steps remembered by what they were made from, so a rebuild redoes only what changed.

Each step that is a pure function of its inputs (the address map's drawing, an initramfs, the
facts read out of a kernel) stores its result in the cache under the hash of those inputs
and of xenkit's own source, since a change to the code that makes a result changes the
result. An entry is a directory written beside its name and renamed into place, so a
killed build leaves a whole entry or none, and two builds sharing a cache race harmlessly.
Measured on the Pi 4's default build (2 CPUs): the map (drawn by matplotlib then) took
1.0-1.9 s of a 2.6 s rebuild, the initramfs 0.2 s and reading the kernel's version 0.3 s, all
for inputs a command line change leaves alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from xenkit.core import files
from xenkit.core.cachedir import cache_home
from xenkit.errors import XenkitError

PACKAGE = Path(__file__).resolve().parent.parent
# Entries of one kind kept (the newest by use): enough for a developer's few configurations
# on both releases, bounded whatever the number of code changes.
KEPT = 64


def key(*parts: object) -> str:
    """The hash of `parts`: bytes as they are, anything else by its repr (frozen dataclasses,
    tuples and strings have a stable one)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:32]


@functools.cache
def source() -> str:
    """The hash of xenkit's code and data files, every one but compiled bytecode (about
    1 MiB, read in a few milliseconds). Walked with os.walk, __pycache__ left unentered:
    pathlib's rglob and a stat a path made it 25 ms of every build's 0.3 s no-op."""
    root = str(PACKAGE)
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [n for n in subfolders if n != "__pycache__"]
        # Files only (a symlink to one counts): an editor's lock file is a dangling link.
        paths = [os.path.join(folder, n) for n in names]
        found += [os.path.relpath(p, root) for p in paths if os.path.isfile(p)]
    digest = hashlib.sha256()
    for rel in sorted(found):
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(rel.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:32]


def _entry(kind: str, k: str) -> Path:
    return cache_home() / "derived" / "memo" / f"{kind}-{k}"


def store_file(kind: str, k: str, name: str, made: Path, keep: int) -> None:
    """Keep `made` (a file nobody writes again) as the entry's file `name`: a hard link, so
    a disk image costs neither a copy nor space twice. Only the `keep` newest entries of this
    kind stay: each is a whole filesystem image."""
    entry = _entry(kind, k)
    _publish(entry, lambda tmp: _link(made, tmp / name))
    _prune(entry, kind, keep)


def _prune(entry: Path, kind: str, keep: int) -> None:
    """Only the `keep` newest entries of `kind` stay: each change to xenkit's code makes
    new ones, and a toolstack initramfs is tens of MiB."""
    with contextlib.suppress(OSError):
        for old in sorted(entry.parent.glob(f"{kind}-*"), key=_age)[keep:]:
            shutil.rmtree(old, ignore_errors=True)


def _age(entry: Path) -> int:
    """Newest first; one another build removed meanwhile counts as oldest."""
    try:
        return -entry.stat().st_mtime_ns
    except OSError:
        return 0


def fetch_file(kind: str, k: str, name: str, dest: Path) -> bool:
    """The entry's file `name` at `dest` (a link, or a sparse copy), if the entry exists."""
    kept = _entry(kind, k) / name
    try:
        if not kept.is_file():
            return False
        dest.unlink(missing_ok=True)
        _link(kept, dest)
    except (OSError, XenkitError):  # pruned by another build meanwhile: make it again
        dest.unlink(missing_ok=True)
        return False
    with contextlib.suppress(OSError):
        os.utime(kept.parent)  # recently used: the last to be pruned
    return True


def _publish(entry: Path, fill: Callable[[Path], None]) -> None:
    """Make `entry` whole or not at all: filled in a directory beside it, each file synced,
    then renamed. Another build storing the same entry first (rename onto a non-empty
    directory), or a full or read-only cache, leaves the result unremembered, not failed."""
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
        fill(tmp)
        for path in tmp.iterdir():
            _sync(path)
        os.rename(tmp, entry)
    except (OSError, XenkitError):
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _sync(path: Path) -> None:
    """On disk before its entry is named: a crash must not leave an entry of empty files
    that later builds would trust."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem
        files.copy_sparse_file(source, dest)


def load(kind: str, k: str) -> dict[str, bytes] | None:
    entry = _entry(kind, k)
    try:
        return {p.name: p.read_bytes() for p in entry.iterdir()}
    except OSError:  # none, or unreadable: made again
        return None


def store(kind: str, k: str, result: Mapping[str, bytes]) -> None:
    entry = _entry(kind, k)

    def fill(tmp: Path) -> None:
        for name, data in result.items():
            (tmp / name).write_bytes(data)

    _publish(entry, fill)
    _prune(entry, kind, KEPT)


def forget(kind: str, k: str) -> None:
    """Drop an entry its reader found damaged, for the result made again to take its place
    (store never replaces an entry)."""
    shutil.rmtree(_entry(kind, k), ignore_errors=True)


def cached(kind: str, k: str, make: Callable[[], Mapping[str, bytes]]) -> dict[str, bytes]:
    """`make()`'s files, from the cache when inputs with this key made them before."""
    found = load(kind, k)
    if found is not None:
        with contextlib.suppress(OSError):
            os.utime(_entry(kind, k))  # recently used: the last to be pruned
        return found
    result = dict(make())
    store(kind, k, result)
    return result


def digest(path: Path) -> str:
    """`path`'s sha256, hashed once per version of the file (its inode, size and mtime, as
    make and ccache tell a changed file). The 31 MiB kernel Image took 25 ms of every build."""
    st = path.stat()
    k = key(str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    return cached("digest", k, lambda: {"sha256": files.sha256(path).encode()})["sha256"].decode()
