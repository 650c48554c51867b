"""Human sizes ("512M", "4G", "0x1000") to bytes and back."""

from __future__ import annotations

import re

from xenkit.errors import XenkitError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}


def parse_size(text: str | int, what: str = "size", bare: int = MiB) -> int:
    """A size in bytes: "512M", "2G", "0x8000000" (bytes), or a bare number counted in `bare`
    units. xenkit's one rule for sizes a user writes: a bare number means MiB, as in xl.cfg,
    in the config file, on the command line and in guest tables alike."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise XenkitError(f"{what}: {text!r} is not a size; write e.g. 512M or 2G")
    if isinstance(text, int):
        if text < 0:
            raise XenkitError(f"{what}: {text!r} is below 0; write e.g. 512M or 2G")
        return text * bare
    s = text.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
        return int(s, 16)
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", s, re.I)
    if not m:
        raise XenkitError(f"{what}: cannot read {text!r} as a size; write e.g. 512M or 2G")
    unit = m.group(2).upper()
    return int(m.group(1)) * (_UNITS[unit] if unit or s[-1:].isalpha() else bare)


def parse_count(value: object, what: str) -> int:
    """A whole number a user writes (vCPUs): an integer, or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise XenkitError(f"{what}: {value!r} is not a whole number; write e.g. 2")


def format_size(n: int) -> str:
    """Largest exact unit, as Xen's dom0_mem= and humans like it: 512M, 2G, 1536K."""
    for unit, scale in (("T", 1 << 40), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n and n % scale == 0:
            return f"{n // scale}{unit}"
    # A bare number would read back as MiB (parse_size) and as KiB in Xen's own syntax.
    return f"{n}B"


def human(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
