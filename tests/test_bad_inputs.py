"""The corpus of malformed build configs (tests/data/bad/): each one is refused with exit
status 2 and one line matching what the file's first line expects, no traceback, and no
output directory left behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BAD = Path(__file__).parent / "data" / "bad"
CONFIGS = sorted(BAD.glob("*.toml"))


def expected(config: Path) -> str:
    if config.name == "not-utf8.toml":
        return f"config {re.escape(str(config))} is not UTF-8 text"
    first = config.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{config.name} must say what error it expects"
    return first.removeprefix("# error: ")


def test_the_corpus_is_there() -> None:
    assert len(CONFIGS) >= 12


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_each_bad_config_is_one_line(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "xenkit", "build", "-c", str(config), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("xenkit: error: ")
    assert re.search(expected(config), lines[0]), lines[0]
    assert not out.exists()
