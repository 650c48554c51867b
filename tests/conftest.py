from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from xenkit.config import boards, settings, spec
from xenkit.system.artifacts import Artifacts, gather

DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` is the umbrella `-m "not slow"` leaves out: every test that needs Debian's
    packages (`debian`) or boots QEMU (`qemu`, which boots what Debian's packages make, so
    it is `debian` too) is slow."""
    for item in items:
        if item.get_closest_marker("qemu"):
            item.add_marker(pytest.mark.debian)
        if item.get_closest_marker("debian"):
            item.add_marker(pytest.mark.slow)
    # The longest boots (marked `long`, over 2 minutes) first, then the other boots, then
    # builds, then the rest: with `make test`'s two workers (pytest-xdist
    # hands tests out in this order) the long ones start early and the short ones fill in
    # at the end. Measured: the net_root benchmark (430 s) left last kept one worker busy
    # alone for its whole run.
    weight = {"long": -1, "qemu": 0, "debian": 1}
    items.sort(
        key=lambda item: min(
            (weight[m.name] for m in item.iter_markers() if m.name in weight), default=2
        )
    )


def edited_board(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of built-in board NAME's file with `old` (which must be there) made `new`."""
    text = (resources.files(boards) / f"{name}.toml").read_text()
    assert old in text, old
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def make_spec(**overrides: object) -> spec.SystemSpec:
    return spec.resolve(settings.resolve({}, dict(overrides)))


@pytest.fixture(scope="session")
def dts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tests/data/NAME.dts compiled by dtc (once a session): NAME -> the .dtb."""
    out = tmp_path_factory.mktemp("dtbs")

    def compile_dts(name: str) -> Path:
        dtb = out / f"{name}.dtb"
        if not dtb.exists():
            source = DATA / f"{name}.dts"
            proc = subprocess.run(
                ["dtc", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(source)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                dtb.unlink(missing_ok=True)
                pytest.fail(f"dtc could not compile {source}:\n{proc.stderr}", pytrace=False)
        return dtb

    return compile_dts


@pytest.fixture(scope="session")
def pi4_dtb(dts: Callable[[str], Path]) -> Path:
    """The cut-down Pi 4 tree in tests/data (what xenkit reads of Debian's, no package)."""
    return dts("bcm2711-rpi-4-b")


@pytest.fixture(scope="session")
def rpi4_artifacts() -> Artifacts:
    """The real rpi4 artifacts from Debian's packages (downloaded once, then cached)."""
    return gather(make_spec(board="rpi4"))


@pytest.fixture(scope="session")
def rpi4_dtb(rpi4_artifacts: Artifacts) -> Path:
    return rpi4_artifacts.files["dtb"]


@pytest.fixture(scope="session")
def busybox(rpi4_artifacts: Artifacts) -> bytes:
    return rpi4_artifacts.files["busybox"].read_bytes()


@pytest.fixture(scope="session")
def kernel_dtbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Device trees shipped by Debian's arm64 kernel package, by name (vendor/board)."""
    from xenkit.debian import deb
    from xenkit.debian.apt import Apt

    apt = Apt("arm64")
    apt.update()
    pkg = apt.fetch(apt.resolve("linux-image-arm64", follow="linux-image-"))
    names = [
        "broadcom/bcm2711-rpi-4-b",
        "broadcom/bcm2711-rpi-400",
        "broadcom/bcm2711-rpi-cm4-io",
        "freescale/imx8mq-evk",
        "arm/juno",
        "rockchip/rk3399-rockpro64",
    ]
    got = deb.extract(
        pkg, [f"usr/lib/linux-image-*/{n}.dtb" for n in names], tmp_path_factory.mktemp("dtbs")
    )
    return {n: got[f"usr/lib/linux-image-*/{n}.dtb"] for n in names}


@pytest.fixture(scope="session")
def module_tree(rpi4_artifacts: Artifacts) -> object:
    """Debian's arm64 kernel modules, unpacked from the real package into the cache."""
    from xenkit.system.artifacts import modules

    return modules(rpi4_artifacts)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty directory on a filesystem with no room left (a tmpfs of 1 MiB, filled):
    files can be made there but not written. Needs root, to mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (mnt / "out").mkdir()
        with (mnt / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(bytes(1 << 16))
        yield mnt / "out"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def run_xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    """The xenkit command line, as a user runs it, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "xenkit", *args], capture_output=True, text=True, check=False
    )
