"""The corpus of malformed inputs (tests/data/bad/): build configs, ImageBuilder configs and
board files, each refused by the command that reads it with exit status 2 and one line
matching what the file's first line expects, no traceback, and no output left behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BAD = Path(__file__).parent / "data" / "bad"
CONFIGS = sorted(BAD.glob("*.toml"))
IMAGEBUILDER = sorted((BAD / "imagebuilder").glob("*.cfg"))
BOARDS = sorted((BAD / "boards").glob("*.toml"))
BOOTCONFIGS = sorted((BAD / "bootconfig").glob("*.toml"))


def expected(path: Path, what: str) -> str:
    if path.name.startswith("not-utf8."):
        return f"{what} {re.escape(str(path))} is not UTF-8 text"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} must say what error it expects"
    return first.removeprefix("# error: ")


def refused(argv: list[str], pattern: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "xenkit", *argv], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("xenkit: error: ")
    assert re.search(pattern, lines[0]), lines[0]


def test_the_corpus_is_there() -> None:
    assert len(CONFIGS) >= 12 and len(IMAGEBUILDER) >= 7 and len(BOARDS) >= 4
    assert len(BOOTCONFIGS) >= 2


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_each_bad_config_is_one_line(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    refused(["build", "-c", str(config), "-o", str(out)], expected(config, "config"))
    assert not out.exists()


@pytest.mark.parametrize(
    "config", [*IMAGEBUILDER, *BOOTCONFIGS], ids=[c.stem for c in [*IMAGEBUILDER, *BOOTCONFIGS]]
)
def test_each_bad_boot_script_config_is_one_line(tmp_path: Path, config: Path) -> None:
    """ImageBuilder's configs and xenkit's own TOML form, both `uboot-script -c`."""
    out = tmp_path / "out"
    argv = ["uboot-script", "-c", str(config), "-d", str(tmp_path), "-o", str(out / "boot")]
    refused(argv, expected(config, "config"))
    assert not out.exists()


@pytest.mark.parametrize("board", BOARDS, ids=[b.stem for b in BOARDS])
@pytest.mark.parametrize("command", ["build", "check", "map"])
def test_each_bad_board_file_is_one_line(tmp_path: Path, board: Path, command: str) -> None:
    out = tmp_path / "out"
    argv = [command, "--board", str(board)] + (["-o", str(out)] if command == "build" else [])
    refused(argv, expected(board, "board file"))
    assert not out.exists()
