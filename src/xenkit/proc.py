"""The one place xenkit starts other programs, so every command is logged the same way."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from xenkit.errors import XenkitError

log = logging.getLogger("xenkit")

# Which Debian package provides each tool, for the "how to fix it" half of the error.
_PROVIDERS = {
    "qemu-system-aarch64": "qemu-system-arm (from bookworm-backports)",
    "mkimage": "u-boot-tools",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "apt-get": "apt",
    "dtc": "device-tree-compiler",
    # The bare-metal guests (xenkit.baremetal) need only the cross assembler and linker.
    "aarch64-linux-gnu-as": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-ld": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-objcopy": "binutils-aarch64-linux-gnu",
}


def need(tool: str) -> str:
    """Path of `tool`, or an error naming the package that provides it."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pkg = _PROVIDERS.get(tool, tool)
        raise XenkitError(
            f"{tool} not found: install {pkg} (scripts/install-system-deps.sh does it)"
        )
    return path


def run(
    cmd: Sequence[str | Path],
    *,
    capture: bool = False,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it; a failure becomes a XenkitError carrying its last output."""
    argv = [str(c) for c in cmd]
    argv[0] = need(argv[0])
    log.debug("$ %s", shlex.join(argv))
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if check and proc.returncode != 0:
        last = (proc.stderr or "").strip().splitlines()
        detail = last[-1] if last else f"exit status {proc.returncode}"
        raise XenkitError(f"{Path(argv[0]).name} failed: {detail}")
    return proc
