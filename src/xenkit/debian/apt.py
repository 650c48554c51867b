"""Resolve and fetch Debian packages for a foreign architecture with apt's own tooling.

xenkit keeps a private apt root in its cache (sources, lists, status) so it needs neither root
nor `dpkg --add-architecture` on the host. apt resolves versions and verifies the signed
indexes; xenkit downloads the exact file apt names and checks its SHA256 against the index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xenkit.core import files, log
from xenkit.core.cachedir import cache_home
from xenkit.core.proc import run
from xenkit.core.progress import Progress
from xenkit.debian import aptsources
from xenkit.errors import XenkitError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
COMPONENTS = "main non-free-firmware"
# Indexes younger than this are reused, so a rebuild needs no network at all.
LISTS_MAX_AGE = 24 * 3600
# A download that fails without an answer from the server (a DNS lookup that timed out, a
# connection reset) is tried this often, as apt's Acquire::Retries would: one fresh CI run
# failed on a single "Temporary failure in name resolution" among a few hundred downloads.
FETCH_TRIES = 3


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    sha256: str
    size: int
    url: str

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


class Apt:
    def __init__(self, arch: str, release: str = "bookworm", cache: Path | None = None) -> None:
        self.arch = arch
        self.release = release
        self.root = (cache or cache_home()) / "apt" / f"{release}-{arch}"
        self.debs = (cache or cache_home()) / "debs"

    # -- the private apt root ---------------------------------------------------------------
    def _options(self) -> list[str]:
        r = self.root
        return [
            "-o",
            f"Dir::Etc={r / 'etc'}",
            "-o",
            f"Dir::State={r / 'state'}",
            "-o",
            f"Dir::Cache={r / 'cache'}",
            "-o",
            f"Dir::State::status={r / 'state' / 'status'}",
            "-o",
            f"APT::Architecture={self.arch}",
            "-o",
            f"APT::Architectures::={self.arch}",
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Sandbox::User=root",
        ]

    def _write_sources(self) -> bool:
        suites = aptsources.debian_sources(aptsources.read_host_sources(), self.release)
        if self.release not in suites:
            raise XenkitError(
                f"no apt source for Debian {self.release} in /etc/apt: add a 'deb' line for it"
            )
        if not KEYRING.exists():
            raise XenkitError(f"{KEYRING} missing: apt install debian-archive-keyring")
        wanted = [self.release, f"{self.release}-updates", f"{self.release}-security"]
        lines = [
            f"deb [arch={self.arch} signed-by={KEYRING}] {suites[s]} {s} {COMPONENTS}"
            for s in wanted
            if s in suites
        ]
        text = "\n".join(lines) + "\n"
        etc = self.root / "etc"
        for d in (
            etc / "apt.conf.d",
            etc / "preferences.d",
            etc / "sources.list.d",
            self.root / "state" / "lists" / "partial",
            self.root / "cache" / "archives" / "partial",
        ):
            d.mkdir(parents=True, exist_ok=True)
        status = self.root / "state" / "status"
        if not status.exists():
            status.touch()
        sources = etc / "sources.list"
        changed = not sources.exists() or sources.read_text() != text
        if changed:
            sources.write_text(text)
        return changed

    def _lists_age(self) -> float | None:
        lists = list((self.root / "state" / "lists").glob("*_Packages*"))
        if not lists:
            return None
        return time.time() - max(p.stat().st_mtime for p in lists)

    def update(self, force: bool = False) -> None:
        """Refresh the package indexes if they are missing, stale or the sources changed.
        One process at a time: apt runs here without its own locks (Debug::NoLocking)."""
        with files.locked(self.root.with_name(self.root.name + ".lock")):
            self._update(force)

    def _update(self, force: bool) -> None:
        changed = self._write_sources()
        age = self._lists_age()
        if not force and not changed and age is not None and age < LISTS_MAX_AGE:
            return
        log.info("updating the %s package indexes for %s", self.release, self.arch)
        try:
            run(["apt-get", *self._options(), "-q", "update"])
        except XenkitError as exc:
            if age is None:
                raise XenkitError(
                    f"cannot fetch the {self.release} {self.arch} package indexes ({exc}): "
                    "check the network and /etc/apt sources"
                ) from None
            log.warning("could not refresh package indexes (%s); using the cached ones", exc)

    # -- resolution -------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        """What apt's answers depend on: the sources and the indexes (the status is empty)."""
        h = hashlib.sha256((self.root / "etc" / "sources.list").read_bytes())
        for f in sorted((self.root / "state" / "lists").glob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def _remembered(self, key: str, ask: Callable[[], list[Package]]) -> list[Package]:
        """apt's answer to `key`, from the last time it was asked of the same indexes. Each
        apt run loads the whole index (about a second), and a build asks a dozen questions."""
        memo = self.root / "answers.json"
        fingerprint = self._fingerprint()
        try:
            saved = json.loads(memo.read_text())
            answers = saved["answers"] if saved["fingerprint"] == fingerprint else {}
        except (OSError, ValueError, KeyError, TypeError):
            answers = {}
        if key in answers:
            try:
                return [Package(**p) for p in answers[key]]
            except TypeError:
                pass
        packages = ask()
        answers[key] = [dataclasses.asdict(p) for p in packages]
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "answers": answers}))
        tmp.replace(memo)
        return packages

    def show(self, name: str) -> dict[str, str]:
        proc = run(
            ["apt-cache", *self._options(), "show", "--no-all-versions", name],
            capture=True,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise XenkitError(
                f"package {name} not found for {self.arch} in Debian {self.release}: "
                "check the name, or run with --refresh to update the indexes"
            )
        fields: dict[str, str] = {}
        key = ""
        for line in proc.stdout.splitlines():
            if not line.strip():
                break
            if line[0] in " \t" and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields

    def resolve(self, name: str, follow: str | None = None) -> Package:
        """The candidate version of `name`. With `follow`, `name` is a metapackage
        (linux-image-arm64) and the package with the files is its dependency starting so."""
        key = json.dumps(["resolve", name, follow])
        return self._remembered(key, lambda: [self._resolve(name, follow)])[0]

    def _resolve(self, name: str, follow: str | None) -> Package:
        fields = self.show(name)
        if follow:
            depends = [d.split()[0] for d in fields.get("Depends", "").split(",") if d.strip()]
            real = [d for d in depends if d.startswith(follow)]
            if len(real) != 1:
                raise XenkitError(f"{name} does not depend on exactly one {follow}* package")
            return self._resolve(real[0], None)
        proc = run(
            ["apt-get", *self._options(), "--print-uris", "download", name],
            capture=True,
            check=False,
        )
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0].startswith("'") and parts[3].startswith("SHA256:"):
                return Package(
                    name=fields["Package"],
                    version=fields["Version"],
                    arch=fields["Architecture"],
                    sha256=parts[3].removeprefix("SHA256:"),
                    size=int(parts[2]),
                    url=parts[0].strip("'"),
                )
        raise XenkitError(f"apt could not locate a download for {name}: run with --refresh")

    def closure(self, names: list[str]) -> list[Package]:
        """`names` and everything they depend on (Depends and Pre-Depends, no Recommends),
        as apt would install them onto an empty system. Essential packages come only when
        something depends on them: the result is a toolstack, not a whole Debian."""
        return self._remembered(json.dumps(["closure", names]), lambda: self._closure(names))

    def _closure(self, names: list[str]) -> list[Package]:
        proc = run(
            [
                "apt-get",
                *self._options(),
                "-o",
                "APT::Install-Recommends=0",
                "-qq",
                "--print-uris",
                "install",
                *names,
            ],
            capture=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr or "").strip().splitlines()
            raise XenkitError(
                f"apt cannot install {' '.join(names)} for {self.arch}: "
                f"{last[-1] if last else 'unknown error'}; run with --refresh"
            )
        # install --print-uris names the files with MD5 sums only; download gives SHA256.
        wanted = []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("'"):
                name, version, _arch = parts[1].removesuffix(".deb").split("_")
                wanted.append(f"{name}={urllib.parse.unquote(version)}")
        if not wanted:
            return []
        proc = run(
            ["apt-get", *self._options(), "--print-uris", "download", *wanted],
            capture=True,
        )
        packages = []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) < 4 or not parts[3].startswith("SHA256:"):
                continue
            name, version, arch = parts[1].removesuffix(".deb").split("_")
            packages.append(
                Package(
                    name=name,
                    version=urllib.parse.unquote(version),
                    arch=arch,
                    sha256=parts[3].removeprefix("SHA256:"),
                    size=int(parts[2]),
                    url=parts[0].strip("'"),
                )
            )
        if len(packages) != len(wanted):
            raise XenkitError(f"apt located {len(packages)} of {len(wanted)} packages: retry")
        return sorted(packages, key=lambda p: p.name)

    # -- download ---------------------------------------------------------------------------
    def fetch(self, pkg: Package) -> Path:
        """The package file in the cache, downloading and verifying it if needed."""
        self.debs.mkdir(parents=True, exist_ok=True)
        target = self.debs / pkg.filename
        if target.exists() and target.stat().st_size == pkg.size and _verified(target, pkg.sha256):
            return target
        # Here, not at the top: urllib.request (http.client, ssl, email) is 20 ms of every
        # build's start, and a cached package never needs it.
        import urllib.error
        import urllib.request

        # Each process its own partial file: two builds may fetch the same package at once.
        part = target.with_name(f".{target.name}.part-{os.getpid()}")
        for attempt in range(1, FETCH_TRIES + 1):
            digest = hashlib.sha256()
            try:
                with (
                    urllib.request.urlopen(pkg.url, timeout=60) as resp,
                    part.open("wb") as out,
                    Progress(f"fetch {pkg.name}", pkg.size) as bar,
                ):
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.advance(len(chunk))
                break
            except urllib.error.HTTPError as exc:
                # The server answered (404, 403): asking again gets the same answer.
                part.unlink(missing_ok=True)
                raise XenkitError(f"downloading {pkg.name} failed ({exc}): {pkg.url}") from None
            except (urllib.error.URLError, OSError) as exc:
                part.unlink(missing_ok=True)
                if attempt == FETCH_TRIES:
                    raise XenkitError(
                        f"downloading {pkg.name} failed {FETCH_TRIES} times ({exc}): "
                        "check the network"
                    ) from None
                log.warning("downloading %s failed (%s); trying again", pkg.name, exc)
                time.sleep(attempt)
        if digest.hexdigest() != pkg.sha256:
            part.unlink(missing_ok=True)
            raise XenkitError(
                f"{pkg.name} {pkg.version}: SHA256 mismatch with the signed index; retry"
            )
        shutil.move(part, target)
        return target


def _verified(path: Path, expected: str) -> bool:
    """`path` has the digest the signed index gives, hashed once per version of the file
    (its inode, size and mtime, kept beside it): hashing every package on every build took
    45 ms of a 0.5 s rebuild. A stamp beside the package rather than memo.digest: a
    toolstack build verifies a few hundred packages, more than memo keeps of one kind, and
    the stamp goes when the package does."""
    st = path.stat()
    seen = path.with_name(f".{path.name}.verified")
    stamp = f"{expected} {st.st_ino} {st.st_size} {st.st_mtime_ns}\n"
    with contextlib.suppress(OSError):
        if seen.read_text() == stamp:
            return True
    if files.sha256(path) != expected:
        return False
    with contextlib.suppress(OSError):  # a read-only cache still builds, only slower
        seen.write_text(stamp)
    return True
