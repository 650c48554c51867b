"""Rebuilds: an unchanged build is kept, any change to what it was made from rebuilds it,
and a rebuild killed at any point leaves the previous output byte for byte."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests import manifests as entries
from tests.conftest import make_spec
from xenkit.pipeline import build, manifest, stamp

pytestmark = pytest.mark.debian


def _contents(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _whole(out: Path) -> bool:
    """`out` is one complete build: every file its manifest lists, as listed, and the stamp
    of the files written with it."""
    m = manifest.read(out)
    for rel, entry in m.files.items():
        if entries.entry_of((out / rel).read_bytes()) != entry:
            return False
    return (out / stamp.NAME).is_file()


def test_an_unchanged_build_is_kept_and_every_change_rebuilds_it(tmp_path: Path) -> None:
    out = tmp_path / "rpi4"
    m, made = build.build_if_changed(make_spec(board="rpi4"), out)
    assert made and _whole(out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again, made = build.build_if_changed(make_spec(board="rpi4"), out)
    assert not made and again == m
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # The same no-op from the command line reads the stamp and the packages' identities,
    # and imports none of the build's stages (issue 17: a no-op build under 0.3 s).
    probe = (
        "import sys; from xenkit.cli import main\n"
        "main(['build', '--board', 'rpi4', '-o', sys.argv[1]])\n"
        "print(*sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(out)], capture_output=True, text=True, check=True
    )
    assert f"{out}/ is up to date" in proc.stdout
    stages = ("xenkit.pipeline.build", "xenkit.targets", "xenkit.system.rootfs", "xenkit.analysis")
    assert not [name for name in proc.stderr.split() if name.startswith(stages)]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # A command line: the boot script says the new one.
    _, made = build.build_if_changed(make_spec(board="rpi4", xen_extra="loglvl=all"), out)
    assert made and "loglvl=all" in (out / "boot/boot.source").read_text()
    assert not build.build_if_changed(make_spec(board="rpi4", xen_extra="loglvl=all"), out)[1]
    # A file of the build edited by hand is put back.
    script = out / "boot/boot.source"
    script.write_text(script.read_text() + "# mine\n")
    assert build.build_if_changed(make_spec(board="rpi4", xen_extra="loglvl=all"), out)[1]
    assert "# mine" not in script.read_text()
    # A file the spec names, changed in place under the same name.
    xen = tmp_path / "my-xen"
    shutil.copyfile(out / m.boot_files.xen, xen)
    assert build.build_if_changed(make_spec(board="rpi4", xen_image=str(xen)), out)[1]
    assert not build.build_if_changed(make_spec(board="rpi4", xen_image=str(xen)), out)[1]
    with xen.open("ab") as f:
        f.write(b"\0" * 4096)
    assert build.build_if_changed(make_spec(board="rpi4", xen_image=str(xen)), out)[1]
    assert (out / m.boot_files.xen).read_bytes() == xen.read_bytes()


def test_a_rebuild_killed_anywhere_leaves_the_previous_output_or_the_new_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "rpi4"
    argv = [sys.executable, "-m", "xenkit", "build", "--board", "rpi4", "-o", str(out)]
    build.build(make_spec(board="rpi4"), out)
    # How long a rebuild takes here, then kills spread over it (SIGKILL: no cleanup runs).
    start = time.monotonic()
    subprocess.run([*argv, "--xen-extra", "loglvl=warning"], check=True, capture_output=True)
    took = time.monotonic() - start
    outcomes = []
    for fraction in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
        old = _contents(out)
        proc = subprocess.Popen([*argv, "--xen-extra", f"loglvl=all k{fraction}"])
        time.sleep(took * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if _contents(out) == old:
            outcomes.append("old")
        else:  # killed after the swap: the new build, whole (a build stamps its time)
            assert _whole(out), f"killed at {fraction:.0%}: {out} is neither build"
            assert f"k{fraction}" in (out / "boot/boot.source").read_text()
            outcomes.append("new")
    assert "old" in outcomes, f"every kill came too late to test anything: {outcomes}"
    # The next build removes what the killed ones were writing.
    build.build(make_spec(board="rpi4"), out)
    assert _whole(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rpi4"]


def test_build_watch_rebuilds_on_a_change_and_times_it(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('board = "rpi4"\nxen_cmdline = "console=dtuart one"\n')
    out = tmp_path / "w"
    argv = [sys.executable, "-m", "xenkit", "build", "-c", str(config), "-o", str(out), "--watch"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream: IO[str]) -> None:
            for ln in stream:
                lines.put(ln)
            lines.put(None)  # the watch ended: fail now, not after the deadline

        threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()

        def until(text: str) -> str:
            """The next line holding `text`; a missed rebuild fails in a minute, not hangs."""
            deadline = time.monotonic() + 60
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = lines.get(timeout=left)
                except queue.Empty:
                    break
                if line is None:
                    break
                seen.append(line)
                if text in line:
                    return line
            raise AssertionError(f"no {text!r} in: {''.join(seen)}")

        until("watching")
        time.sleep(1.1)  # mtimes: a change within the same tick as the build may go unseen
        config.write_text('board = "rpi4"\nxen_cmdline = "console=dtuart two"\n')
        line = until("build: rebuilt in")
        assert float(line.split("rebuilt in ")[1].split(" s")[0]) > 0
        assert "console=dtuart two" in (out / "boot/boot.source").read_text()
        os.utime(config)  # touched, not changed: nothing to build
        until("build: up to date")
        # A file the config names only now is watched from then on.
        mine = tmp_path / "my-xen"
        shutil.copy(out / "boot" / "xen", mine)
        config.write_text(
            f'board = "rpi4"\nxen_cmdline = "console=dtuart two"\nxen_image = "{mine}"\n'
        )
        until("build: rebuilt in")
        # Watched as the rebuild found it (stamped before it was read): no pause needed.
        with mine.open("ab") as f:
            f.write(b"\0" * 4096)  # a developer's next Xen, of a new size
        until("build: rebuilt in")
        assert (out / "boot" / "xen").read_bytes() == mine.read_bytes()
        config.write_text('board = "rpi4"\nxen_cmdline = "oops\n')
        until("rebuild failed (keeping the last build): config")
        assert "console=dtuart two" in (out / "boot/boot.source").read_text()
    finally:
        proc.kill()
        proc.wait()
