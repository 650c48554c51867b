"""Files replaced whole or not at all, and sparse copies: the one place for both.

A build, a cache entry or a guest added to a card is written beside its target and renamed
over it at the end, so a failed or killed step leaves the previous file (or none), never half
of one; `xenkit serve` may be reading a build while it is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from xenkit.errors import XenkitError

CHUNK = 1 << 20
# A block compared with this (memcmp, which stops at the first byte of data) rather than
# counted (count(0) reads every byte: 0.65-0.9 ms a MiB, 26 ms of a card's rebuild).
ZERO_MIB = bytes(CHUNK)


def write_atomically(files: Mapping[Path, bytes | str]) -> None:
    """All of `files` or none: each is written beside its target and renamed at the end."""
    temps: dict[Path, Path] = {}
    try:
        for target, data in files.items():
            fd, name = _create_beside(target)
            # Known before the first write: a full disk fails in write or close, and the
            # temporary file must go with the rest.
            temps[target] = Path(name)
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(name, 0o644)
        for target, tmp in temps.items():
            tmp.replace(target)
    except OSError as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise XenkitError(write_error(target, exc)) from None


def _create_beside(target: Path) -> tuple[int, str]:
    """A new file beside `target`, named after it and this process, as tempfile.mkstemp
    makes one without tempfile's imports (random, shutil's compressors: 8 ms of
    `xenkit uboot-script`'s start)."""
    n = 0
    while True:
        name = str(target.parent / f".{target.name}.{os.getpid()}-{n}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), name
        except FileExistsError:
            n += 1


def write_error(target: Path, exc: OSError) -> str:
    """Why `target` could not be written, naming it (not a temporary file beside it)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {target}: its filesystem is full: free some space or write elsewhere"
    return f"cannot write {target}: {exc.strerror}"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Held by one process at a time (an exclusive flock on `path`, made if missing): what
    two xenkit runs sharing a cache must not do at once (apt's index update, unpacking the
    same tree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write; renamed over `target` if the block ends
    normally, removed otherwise."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def copy_sparse(src: Path, dst: int | Path, offset: int = 0) -> Iterator[int]:
    """Copy `src` into `dst` (an open descriptor, at `offset`, or a new file) skipping
    all-zero blocks, which stay holes: a card image is mostly empty space. Yields the bytes
    done after each block, for a progress bar."""
    own = not isinstance(dst, int)
    fd = dst if isinstance(dst, int) else os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        size = src.stat().st_size
        if own:
            os.ftruncate(fd, size)
        # Read by position on the descriptor itself: SEEK_DATA/SEEK_HOLE move it, which a
        # buffered reader would not know (its buffer served the next extent from the old
        # position where st_blksize exceeds the hole granularity).
        src_fd = os.open(src, os.O_RDONLY)
        try:
            pos = 0
            for start, end in _data_extents(src_fd, size):
                yield start - pos  # a hole: nothing to read (a new FAT is 90% hole)
                pos = start
                while pos < min(end, size) and (
                    chunk := os.pread(src_fd, min(CHUNK, min(end, size) - pos), pos)
                ):
                    if chunk != ZERO_MIB[: len(chunk)]:
                        os.pwrite(fd, chunk, offset + pos)
                    pos += len(chunk)
                    yield len(chunk)
            yield size - pos
        finally:
            os.close(src_fd)
    finally:
        if own:
            os.close(fd)


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of `fd` that is not a hole; the whole file where the
    filesystem cannot tell (SEEK_DATA unsupported)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                return
            yield pos, size
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def copy_sparse_file(src: Path, dst: Path) -> None:
    try:
        for _ in copy_sparse(src, dst):
            pass
    except OSError as exc:
        raise XenkitError(f"copying {src} to {dst}: {exc.strerror}") from None


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where both sit on one filesystem (free, and the source is never written
    through), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        import shutil  # here, as below: with bz2, 2 ms of the start of commands never using it

        shutil.copyfile(src, dst)


def clean_beside(out: Path) -> None:
    """Remove what a killed build left beside `out`: the directories it was writing (named
    after its process, so another build's, still running, stays), and an old output it was
    swapping out, put back if `out` itself is gone (replace_dir's fallback, killed between
    its two renames)."""
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and not out.exists():
        old.rename(out)
    stale = [old] if old.is_dir() else []
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        pid = partial.name.rsplit(".partial-", 1)[1].split("-")[0]
        if partial.is_dir() and not partial.is_symlink() and not _alive(pid):
            stale.append(partial)
    import shutil

    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def new_dir_beside(out: Path) -> Path:
    """An empty directory beside `out` to build into, then `replace_dir` it over `out`."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-"))
    tmp.chmod(0o755)
    return tmp


_RENAME_EXCHANGE = 2  # <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    kernel, C library or filesystem cannot."""
    import ctypes  # here: only a build's last step needs it, 2 ms of every command's start

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: Path, out: Path) -> None:
    """Put directory `new` where `out` was. A reader of `out` finds either whole, never
    neither, where the kernel can swap them in one step."""
    import shutil

    if out.exists():
        if _exchange(new, out):
            shutil.rmtree(new, ignore_errors=True)
            return
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(out)


def size(path: Path) -> int:
    """Bytes in `path`: a file's size, or a directory's files summed (a linked store too)."""
    if not path.is_dir():
        return path.stat().st_size
    return sum(
        (Path(top) / name).stat().st_size
        for top, _, names in os.walk(path, followlinks=True)
        for name in names
    )


# No config, board file or script a user writes comes near this: a bigger "config" is some
# other file (or /dev/zero, which would otherwise be read until memory ran out).
MAX_TEXT = 4 << 20


def regular(path: Path, what: str, fix: str) -> os.stat_result:
    """The status of a file the user named, refusing what is none: missing, a directory, a
    symlink loop (Path.resolve raised RuntimeError on one), a device or socket. A FIFO
    passes: a shell's <(...) is one, and read_text waits for it a bounded time."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise XenkitError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:
        why = (
            "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
        )
        raise XenkitError(f"{what} {path} {why}: {fix}") from None
    if stat.S_ISDIR(st.st_mode):
        raise XenkitError(f"{what} {path} is a directory: {fix}")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise XenkitError(f"{what} {path} is a device or socket, not a file: {fix}")
    return st


def binary(path: Path, what: str, fix: str) -> Path:
    """A binary the user named (a kernel, Xen, a DTB): a regular file, since it is read
    more than once and by size (a FIFO would wait forever for a writer)."""
    if stat.S_ISFIFO(regular(path, what, fix).st_mode):
        raise XenkitError(f"{what} {path} is a FIFO, not a file: {fix}")
    return path


# How long a FIFO given as a config may stay silent: a writer that never comes (mkfifo
# without one) hung xenkit forever.
FIFO_WAIT = 10.0


def read_text(path: Path, what: str, fix: str) -> str:
    """A text file the user gave (`what`, e.g. "config"), as UTF-8 (a byte-order mark, as
    some Windows editors write, is dropped); one line naming it and `fix` if it is not."""
    fifo = stat.S_ISFIFO(regular(path, what, fix).st_mode)
    try:
        data = _read_fifo(path, what) if fifo else _read_head(path)
        if len(data) > MAX_TEXT:
            raise XenkitError(f"{what} {path} is over {MAX_TEXT >> 20} MiB: {fix}")
        return data.decode("utf-8-sig")
    except OSError as exc:
        raise XenkitError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise XenkitError(f"{what} {path} is not UTF-8 text: {fix}") from None


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_TEXT + 1)


def _read_fifo(path: Path, what: str) -> bytes:
    """A FIFO's text, up to EOF: opened without blocking, each read waits FIFO_WAIT at most."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    chunks: list[bytes] = []
    try:
        size = 0
        while size <= MAX_TEXT:
            if not select.select([fd], [], [], FIFO_WAIT)[0]:
                raise XenkitError(
                    f"{what} {path} is a FIFO nothing wrote to in {FIFO_WAIT:.0f} s: give a file"
                )
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    import hashlib  # here, as in sha256_sparse: 4 ms of every command's start

    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_sparse(path: Path) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The sha256 of `path` with its all-zero MiB blocks (the file cut at every MiB) left
    out, and those blocks as [first, end) ranges of their numbers; holes are never read. A
    card image is 90% zeros: hashing them took 0.3 s of a 0.8 s rebuild (sha256 runs at
    0.86 GB/s here). A file with no all-zero MiB gives sha256sum's digest, and a sparse
    file the same as a copy of it with every zero written out."""
    import hashlib

    digest = hashlib.sha256()
    zero: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        extents = iter(_data_extents(fd, size))
        extent = next(extents, None)
        for block in range(-(-size // CHUNK)):
            low, high = block * CHUNK, min(size, (block + 1) * CHUNK)
            while extent is not None and extent[1] <= low:
                extent = next(extents, None)
            chunk = b""
            if extent is not None and extent[0] < high:
                chunk = _pread_all(fd, high - low, low)
                if chunk == ZERO_MIB[: len(chunk)]:
                    chunk = b""
            if chunk:
                digest.update(chunk)
            elif zero and zero[-1][1] == block:
                zero[-1] = (zero[-1][0], block + 1)
            else:
                zero.append((block, block + 1))
    finally:
        os.close(fd)
    return digest.hexdigest(), tuple(zero)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length > 0 and (part := os.pread(fd, length, offset)):
        parts.append(part)
        length -= len(part)
        offset += len(part)
    return b"".join(parts)
