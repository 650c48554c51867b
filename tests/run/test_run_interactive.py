"""`xenkit run` on a terminal: the console is live, and Ctrl-C stops the emulator cleanly."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit.pipeline import build
from xenkit.system.initramfs import READY

pytestmark = pytest.mark.qemu


def _read_until(fd: int, needle: bytes, timeout: float, seen: bytearray) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return needle in seen
            if not chunk:
                break
            seen += chunk
            if needle in seen:
                return True
    return needle in seen


def test_console_is_interactive_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    out = tmp_path / "virt"
    build.build(make_spec(board="qemu-virt"), out)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "xenkit", "run", str(out)])
    seen = bytearray()
    try:
        assert _read_until(fd, READY.encode(), 300, seen), seen[-2000:].decode(errors="replace")
        time.sleep(1)
        os.write(fd, b"echo answer=$((6 * 7))\r")
        assert _read_until(fd, b"answer=42", 60, seen), seen[-2000:].decode(errors="replace")
        os.write(fd, b"\x03")  # Ctrl-C from the terminal
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            _read_until(fd, b"\0", 0.5, seen)
        else:
            pytest.fail("xenkit run did not stop on Ctrl-C")
        assert os.WIFEXITED(status)
        assert b"Traceback" not in seen
        assert READY in (out / "run/console.log").read_text(errors="replace")
        # No QEMU left behind.
        ps = subprocess.run(["pgrep", "-f", str(out / "run")], capture_output=True)
        assert ps.returncode == 1
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
