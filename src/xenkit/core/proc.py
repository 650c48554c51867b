"""The one place xenkit starts other programs, so every command is logged the same way."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xenkit.core import hostdeps, log
from xenkit.errors import XenkitError


def need(tool: str) -> str:
    """Path of `tool`, or an error naming the package that provides it."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise XenkitError(
            f"{tool} not found: install {hostdeps.provider(tool)}"
            " (scripts/install-system-deps.sh does it)"
        )
    return path


def _argv(cmd: Sequence[str | Path]) -> list[str]:
    argv = [str(c) for c in cmd]
    argv[0] = need(argv[0])
    log.debug("$ %s", shlex.join(argv))
    return argv


def run(
    cmd: Sequence[str | Path],
    *,
    capture: bool = False,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it; a failure becomes a XenkitError carrying its last output.
    `stdin` is fed as bytes; the output is text either way (undecodable bytes replaced)."""
    proc = subprocess.run(
        _argv(cmd),
        cwd=cwd,
        env=env,
        input=stdin,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    out = (proc.stdout or b"").decode(errors="replace")
    err = (proc.stderr or b"").decode(errors="replace")
    if check and proc.returncode != 0:
        last = err.strip().splitlines()
        detail = last[-1] if last else f"exit status {proc.returncode}"
        raise XenkitError(f"{Path(proc.args[0]).name} failed: {detail}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def spawn(cmd: Sequence[str | Path], **popen: Any) -> subprocess.Popen[bytes]:
    """Start a long-running command (an emulator, a server), logged like `run`'s; the caller
    owns it and reads its exit status."""
    return subprocess.Popen(_argv(cmd), **popen)
