from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests import sample, write_build


def xenkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xenkit", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--board", "rpi5"], "unknown board 'rpi5'"),
        (["build", "--ram", "3G"], "rpi4 has no 3G model"),
        (["build", "--dom0-mem", "9G"], "does not fit"),
        (["build", "--config", "/no/such.toml"], "cannot read config /no/such.toml"),
        (["run", "/no/such/dir"], "/no/such/dir is not a xenkit build"),
        (["info", "/no/such/dir"], "/no/such/dir is not a xenkit build"),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    proc = xenkit(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_sd_image_is_reported(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    proc = xenkit("run", str(tmp_path))
    assert proc.returncode == 2 and "has no sd.img" in proc.stderr, proc.stderr


def test_a_build_by_an_older_xenkit_asks_for_a_rebuild(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"board": "rpi4"}))
    proc = xenkit("run", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "rebuild with this version" in lines[0]


@pytest.mark.debian
def test_info_reports_the_build(tmp_path: Path) -> None:
    out = tmp_path / "virt"
    assert xenkit("build", "--board", "qemu-virt", "-o", str(out)).returncode == 0
    info = json.loads(xenkit("info", "--json", str(out)).stdout)
    assert info["board"] == "qemu-virt"
    assert {f for f in info["files"]} >= {"sd.img", "boot/boot.scr", "boot/xen"}
    text = xenkit("info", str(out)).stdout
    assert "xen-hypervisor-4.17-arm64" in text and "load layout" in text


def test_missing_qemu_is_reported_with_the_package_to_install(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    (tmp_path / "sd.img").write_bytes(bytes(512))
    proc = subprocess.run(
        [sys.executable, "-m", "xenkit", "run", str(tmp_path)],
        capture_output=True,
        text=True,
        # No QEMU on PATH; the same xenkit (PYTHONPATH, where one is set) as the other tests.
        env={"PATH": str(tmp_path), **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "xenkit: error: qemu-system-aarch64 not found: install qemu-system-arm "
        "(from bookworm-backports) (scripts/install-system-deps.sh does it)"
    )
