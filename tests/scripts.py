"""The project's scripts and benchmarks as modules, for tests of their pure parts."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

TOP = Path(__file__).resolve().parent.parent


def load(folder: str, name: str) -> ModuleType:
    """TOP/folder/name.py, imported with its folder on the path (for its sibling modules)."""
    where = str(TOP / folder)
    sys.path.insert(0, where)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(where)
