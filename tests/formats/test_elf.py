from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from xenkit.errors import XenkitError
from xenkit.formats import elf


def test_a_program_names_its_interpreter_and_libraries_as_ldd_finds_them() -> None:
    path = Path(shutil.which("casync") or "/usr/bin/casync")
    needs = elf.needs(path.read_bytes(), str(path))
    assert needs.interpreter == "/lib64/ld-linux-x86-64.so.2"
    ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
    for lib in needs.libraries:
        assert lib in ldd
    assert "libc.so.6" in needs.libraries


def test_not_elf_is_one_line() -> None:
    with pytest.raises(XenkitError, match="not a 64-bit little-endian ELF"):
        elf.needs(b"#!/bin/sh\n", "script")
