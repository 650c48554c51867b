from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from xenkit.core.files import sha256
from xenkit.debian import deb
from xenkit.debian.apt import FETCH_TRIES, Apt, Package
from xenkit.errors import XenkitError

pytestmark = pytest.mark.debian  # talks to the mirror the host's apt sources name


@pytest.fixture(scope="module")
def apt() -> Apt:
    a = Apt("arm64")
    a.update()
    return a


def test_metapackage_is_followed_to_the_kernel_package(apt: Apt) -> None:
    pkg = apt.resolve("linux-image-arm64", follow="linux-image-")
    assert pkg.name.startswith("linux-image-6.") and pkg.name.endswith("-arm64")
    assert pkg.arch == "arm64" and len(pkg.sha256) == 64


def test_fetch_verifies_and_caches_by_checksum(apt: Apt) -> None:
    pkg = apt.resolve("busybox-static")
    path = apt.fetch(pkg)
    assert sha256(path) == pkg.sha256
    assert path.name == pkg.filename
    mtime = path.stat().st_mtime_ns
    assert apt.fetch(pkg) == path and path.stat().st_mtime_ns == mtime


def test_a_corrupt_cached_package_is_fetched_again(apt: Apt, tmp_path: Path) -> None:
    pkg = apt.resolve("busybox-static")
    copy = Apt("arm64", cache=tmp_path)
    copy.debs.mkdir(parents=True)
    (copy.debs / pkg.filename).write_bytes(b"x" * pkg.size)
    assert sha256(copy.fetch(pkg)) == pkg.sha256


def test_unknown_package_is_a_one_line_error(apt: Apt) -> None:
    with pytest.raises(XenkitError, match="package no-such-pkg-xenkit not found for arm64"):
        apt.resolve("no-such-pkg-xenkit")


def test_files_come_out_of_the_package_by_pattern(apt: Apt, tmp_path: Path) -> None:
    path = apt.fetch(apt.resolve("busybox-static"))
    got = deb.extract(path, ["bin/busy*"], tmp_path)
    assert got["bin/busy*"].read_bytes()[:4] == b"\x7fELF"
    with pytest.raises(XenkitError, match="no file matching boot/nothing"):
        deb.extract(path, ["boot/nothing"], tmp_path)


def test_answers_are_remembered_until_the_indexes_change(
    apt: Apt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="xenkit")
    first = apt.resolve("busybox-static")
    caplog.clear()
    assert apt.resolve("busybox-static") == first
    assert not [r for r in caplog.records if "apt-" in r.getMessage()], "apt ran again"

    lists = sorted((apt.root / "state" / "lists").glob("*_Packages*"))[0]
    st = lists.stat()
    try:
        os.utime(lists, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        caplog.clear()
        assert apt.resolve("busybox-static") == first
        assert [r for r in caplog.records if "apt-cache" in r.getMessage()], "a stale answer"
    finally:
        os.utime(lists, ns=(st.st_atime_ns, st.st_mtime_ns))


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Drops the first `drops` connections without a word, then serves BODY; 404 elsewhere."""

    drops: ClassVar[int] = 0
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path != "/p.deb":
            self.send_error(404)
        elif type(self).drops > 0:
            type(self).drops -= 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


BODY = b"!<arch>\n" + b"x" * 5000


@pytest.fixture
def flaky() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    _Flaky.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _package(url: str) -> Package:
    return Package("p", "1.0", "arm64", hashlib.sha256(BODY).hexdigest(), len(BODY), url)


def test_a_download_cut_off_without_an_answer_is_tried_again(flaky: str, tmp_path: Path) -> None:
    _Flaky.drops = FETCH_TRIES - 1
    path = Apt("arm64", cache=tmp_path).fetch(_package(f"{flaky}/p.deb"))
    assert path.read_bytes() == BODY and len(_Flaky.seen) == FETCH_TRIES
    _Flaky.drops, _Flaky.seen = FETCH_TRIES, []
    with pytest.raises(XenkitError, match=f"downloading p failed {FETCH_TRIES} times .*network"):
        Apt("arm64", cache=tmp_path / "2").fetch(_package(f"{flaky}/p.deb"))
    assert len(_Flaky.seen) == FETCH_TRIES and not list((tmp_path / "2").rglob("*.part-*"))


def test_a_server_that_answers_no_is_not_asked_again(flaky: str, tmp_path: Path) -> None:
    with pytest.raises(XenkitError, match=r"downloading p failed \(HTTP Error 404"):
        Apt("arm64", cache=tmp_path).fetch(_package(f"{flaky}/nothing.deb"))
    assert _Flaky.seen == ["/nothing.deb"]
