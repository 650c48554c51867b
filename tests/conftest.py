from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xenkit.config import settings, spec
from xenkit.system.artifacts import Artifacts, gather


def make_spec(**overrides: object) -> spec.SystemSpec:
    return spec.resolve(settings.resolve({}, dict(overrides)))


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


def run_xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    """The xenkit command line, as a user runs it, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "xenkit", *args], capture_output=True, text=True, check=False
    )
