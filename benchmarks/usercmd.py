"""xenkit as a user runs it: the `xenkit` command pip installs beside the interpreter (what
`make deps` puts in .venv/bin), in the environment of a user's shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("xenkit")
# `python -m xenkit` where the command is not installed: runpy's imports make it ~7 ms
# slower to start than the command, which is what the CLI start-up targets are about.
XENKIT = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "xenkit"]


def user_env() -> dict[str, str]:
    """The environment as a user's shell has it: Python keeps compiled modules (__pycache__).
    A sandbox or CI that sets PYTHONDONTWRITEBYTECODE has every run compile again each module
    edited since the cache was last written (measured here, with no valid cache: 0.05 s of a
    0.6 s no-op build, 0.06 s of `xenkit uboot-script`'s 0.2 s), which no user pays twice."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
