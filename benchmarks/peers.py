"""The servers benchmarks measure xenkit against: Debian's own binaries, fetched with
`apt-get download` and unpacked into xenkit's cache, run in the foreground. Nothing is
installed, so no system service is started (installing lighttpd or tftpd-hpa starts one on
port 80 or 69 of the user's machine)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xenkit.core.cachedir import cache_home
from xenkit.core.proc import run


def unpacked(name: str, packages: Sequence[str], wants: Sequence[str]) -> Path:
    """A directory under xenkit's cache holding `packages` unpacked, made once: kept while
    every path in `wants` (relative to it) is there."""
    root = cache_home() / f"bench-{name}"
    if all((root / w).exists() for w in wants):
        return root
    with tempfile.TemporaryDirectory() as tmp:
        print(f"bench: downloading {' '.join(packages)}", file=sys.stderr, flush=True)
        # apt's sandbox user cannot write a root-owned temporary directory.
        os.chmod(tmp, 0o777)
        run(["apt-get", "download", *packages], cwd=Path(tmp))
        # On a new machine the peers may be the first thing to use the cache.
        cache_home().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_home(), prefix=f".bench-{name}-"))
        for deb in sorted(Path(tmp).glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(staging)])
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root


def env(root: Path) -> dict[str, str]:
    """The environment that runs a program from `root` with the libraries unpacked beside it."""
    libs = [str(root / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")]
    libs += [str(p) for p in root.glob("usr/lib/*-linux-gnu*")]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(libs)}


# The peers and the shared libraries Debian 12's builds of them load that a minimal host
# may lack (dnsmasq-base links D-Bus, netfilter and nftables; in.tftpd tcp wrappers).
PEER_PACKAGES = (
    "tftpd-hpa",
    "libwrap0",
    "dnsmasq-base",
    "libdbus-1-3",
    "libnetfilter-conntrack3",
    "libnfnetlink0",
    "libnftables1",
    "libnftnl11",
)


def tftp_peers() -> Path:
    """Debian's tftpd-hpa and dnsmasq unpacked (not installed) under xenkit's cache."""
    return unpacked("peers", PEER_PACKAGES, ("usr/sbin/in.tftpd", "usr/sbin/dnsmasq"))
