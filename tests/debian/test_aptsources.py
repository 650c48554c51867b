from __future__ import annotations

from xenkit.debian.aptsources import Source, debian_sources, parse_sources

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://sec.example/debian-security/
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm-backports
"""

ONELINE = """# comment
deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib
deb-src http://one.example/debian bookworm main
deb http://other.example/ubuntu jammy main
"""


def test_deb822_and_one_line_entries_are_read() -> None:
    found = parse_sources({"/a.sources": DEB822, "/b.list": ONELINE})
    assert found == [
        Source("http://mirror.example/debian", "bookworm"),
        Source("http://mirror.example/debian", "bookworm-updates"),
        Source("http://sec.example/debian-security", "bookworm-security"),
        Source("http://one.example/debian", "bookworm"),
        Source("http://other.example/ubuntu", "jammy"),
    ]


def test_first_source_per_suite_wins() -> None:
    suites = debian_sources(parse_sources({"/a.sources": DEB822, "/b.list": ONELINE}))
    assert suites == {
        "bookworm": "http://mirror.example/debian",
        "bookworm-updates": "http://mirror.example/debian",
        "bookworm-security": "http://sec.example/debian-security",
    }


def test_a_release_the_host_lacks_comes_from_the_mirrors_it_has() -> None:
    """A bookworm host builds for trixie: the host's mirror serves every release."""
    suites = debian_sources(parse_sources({"/a.sources": DEB822, "/b.list": ONELINE}), "trixie")
    assert suites == {
        "trixie": "http://mirror.example/debian",
        "trixie-updates": "http://mirror.example/debian",
        "trixie-security": "http://sec.example/debian-security",
    }
    assert debian_sources([Source("http://x/ubuntu", "jammy")], "trixie") == {}
