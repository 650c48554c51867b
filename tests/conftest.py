from __future__ import annotations

from pathlib import Path

import pytest

from xenkit import settings, spec
from xenkit.artifacts import Artifacts, gather


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
