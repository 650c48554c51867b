"""What a build was made from, kept beside it, so building the same thing again does nothing.

The stamp holds one key for every input (xenkit's code, the resolved spec, the Debian
packages by digest, and the content of every file the spec names) and the size, mtime and
inode of each file the build wrote. A build is current when the key is the same and every
file is still the one written: a file edited, added or removed since (`xenkit guest add`
rewrites the card) makes the next build run in full. Measured on the Pi 4's default build:
a full rebuild of unchanged inputs took 0.5-0.6 s, this check about 0.1 s (apt's index check
and the packages' identities included).

The stamp also keys the spec alone (with xenkit's code and the output's place): a stamp with
that key was written by a build this same code accepted for this same spec, so `up_to_date`
can skip the target's refusals and leave the build's own modules unimported (the pipeline,
the targets, the root filesystem: a tenth of a no-op build's time) when nothing changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

from xenkit import __version__
from xenkit.config.spec import SystemSpec
from xenkit.core import files, memo
from xenkit.pipeline import manifest
from xenkit.pipeline.manifest import Manifest
from xenkit.system.artifacts import Artifacts, gather

NAME = ".xenkit-stamp"


def _named_files(value: object) -> Iterator[Path]:
    """Every existing file a spec names, as a Path or as a string (a guest's kernel)."""
    if isinstance(value, Path):
        if value.is_file():
            yield value
    elif isinstance(value, str):
        if "\n" not in value and 0 < len(value) < 4096 and os.path.isfile(value):
            yield Path(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _named_files(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _named_files(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _named_files(item)


def named_files(spec: SystemSpec) -> list[Path]:
    """The files a spec names (Xen or kernel images, guests' files, an autorun script)."""
    return sorted({p.resolve() for p in _named_files(spec)})


def spec_key(spec: SystemSpec, out: Path) -> str:
    """The key of what decides whether a build may run at all: the spec, xenkit's code and
    the output's place, but none of the packages or files."""
    return memo.key(
        __version__, memo.source(), str(out.absolute()), dataclasses.replace(spec, refresh=False)
    )


def key(spec: SystemSpec, art: Artifacts, out: Path) -> str:
    named = named_files(spec)
    return memo.key(
        spec_key(spec, out),
        tuple((p.name, p.version, p.arch, p.sha256) for p in art.packages),
        # What gather() made besides the packages' files (QEMU's dumped DTB, which a QEMU
        # upgrade changes), by content.
        tuple((role, memo.digest(path)) for role, path in sorted(art.files.items())),
        tuple((str(p), p.read_bytes()) for p in named),
    )


def _state(out: Path) -> dict[str, list[int]]:
    found = {}
    for path in out.rglob("*"):
        if path.name != NAME and not path.is_dir():
            st = path.lstat()
            found[str(path.relative_to(out))] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return found


def write(out: Path, spec: SystemSpec, k: str, built_as: Path) -> None:
    """Record `k` and the files now in `out` (the build directory before it is renamed into
    place as `built_as`: a rename keeps every file's inode and times)."""
    stamp = {"spec": spec_key(spec, built_as), "key": k, "files": _state(out)}
    files.write_atomically({out / NAME: json.dumps(stamp)})


def _recorded(out: Path) -> dict[str, object]:
    try:
        recorded = json.loads((out / NAME).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def current(out: Path, k: str) -> bool:
    """`out` holds a build of inputs with key `k`, untouched since."""
    recorded = _recorded(out)
    return recorded.get("key") == k and recorded.get("files") == _state(out)


@dataclasses.dataclass(frozen=True)
class Found:
    """What `up_to_date` found: the build in `out` if it is current; otherwise what it had
    read on the way (the artifacts and the key), for the build not to read again."""

    manifest: Manifest | None = None
    art: Artifacts | None = None
    key: str | None = None


def up_to_date(spec: SystemSpec, out: Path) -> Found:
    """The build of `spec` in `out` if one is there, of the same inputs, untouched since.
    Only a spec built there before is looked into: any other may be one its target refuses,
    which must be said before its packages are fetched (pipeline.build)."""
    out = out.absolute()
    if spec.refresh or _recorded(out).get("spec") != spec_key(spec, out):
        return Found()
    art = gather(spec)
    # Before anything is read: an input replaced during the build makes the next one run.
    k = key(spec, art, out)
    if current(out, k):
        return Found(manifest.read(out), art, k)
    return Found(None, art, k)
