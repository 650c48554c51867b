"""Read the host's apt sources to find which Debian mirror to use.

xenkit never names a mirror: it reuses whatever this machine's apt already points at.
Standard library only, so the system set-up script can run it before any venv exists:
`python3 src/xenkit/debian/aptsources.py` prints the mirror for the bookworm suite.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str


def parse_sources(files: dict[str, str]) -> list[Source]:
    """Every (URI, suite) pair of `deb` entries, from one-line and deb822 files, in order."""
    found: list[Source] = []
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.M))
                if fields.get("Enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("Types", "").split():
                    continue
                for uri in fields.get("URIs", "").split():
                    for suite in fields.get("Suites", "").split():
                        found.append(Source(uri.rstrip("/"), suite))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0]
                line = re.sub(r"\[[^\]]*\]", " ", line)
                words = line.split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append(Source(words[1].rstrip("/"), words[2]))
    return found


def read_host_sources(root: Path = Path("/etc/apt")) -> list[Source]:
    files: dict[str, str] = {}
    paths = [root / "sources.list"]
    paths += sorted((root / "sources.list.d").glob("*.list"))
    paths += sorted((root / "sources.list.d").glob("*.sources"))
    for path in paths:
        try:
            files[str(path)] = path.read_text()
        except OSError:
            continue
    return parse_sources(files)


# Debian's codenames, for telling its suites from other archives' (jammy, nodistro).
CODENAMES = ("bullseye", "bookworm", "trixie", "forky", "sid")


def debian_sources(sources: list[Source], release: str = "bookworm") -> dict[str, str]:
    """Map each suite of `release` (bookworm, bookworm-updates, ...) to its mirror URI.
    A release the host has no line for comes from the mirrors of the one it has: one
    Debian mirror serves every release (a bookworm machine builds for trixie), and the
    security archive every release's -security suite."""
    out: dict[str, str] = {}
    for src in sources:
        if src.suite == release or src.suite.startswith(release + "-"):
            out.setdefault(src.suite, src.uri)
    if release in out:
        return out
    for src in sources:
        codename, _, pocket = src.suite.partition("-")
        if codename in CODENAMES and pocket in ("", "updates", "security"):
            out.setdefault(f"{release}-{pocket}" if pocket else release, src.uri)
    return out


def main() -> int:
    suites = debian_sources(read_host_sources())
    if "bookworm" not in suites:
        print("error: no apt source for Debian bookworm in /etc/apt; add one", file=sys.stderr)
        return 1
    print(suites["bookworm"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
