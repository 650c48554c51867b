from __future__ import annotations

import http.client as client
import socket
import time
from pathlib import Path

import pytest

from xenkit.errors import XenkitError
from xenkit.serve import http, netboot


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "x.cacnk").write_bytes(bytes(range(256)) * 40)
    (tmp_path.parent / "secret").write_text("no")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    server = http.HttpServer({"/": tmp_path}, "127.0.0.1")
    yield server
    server.stop()


def _conn(server: http.HttpServer) -> client.HTTPConnection:
    return client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def test_whole_files_ranges_and_keep_alive_on_one_connection(served: http.HttpServer) -> None:
    c = _conn(served)
    c.request("GET", "/ab/x.cacnk")
    r = c.getresponse()
    assert r.status == 200 and r.read() == bytes(range(256)) * 40
    c.request("GET", "/ab/x.cacnk", headers={"Range": "bytes=10-19"})
    r = c.getresponse()
    assert r.status == 206 and r.read() == bytes(range(10, 20))
    assert r.getheader("Content-Range") == "bytes 10-19/10240"
    c.request("GET", "/ab/x.cacnk", headers={"Range": "bytes=-4"})
    assert c.getresponse().read() == bytes(range(252, 256))
    c.request("GET", "/ab/x.cacnk", headers={"Range": "bytes=99999-"})
    r = c.getresponse()
    assert r.status == 416
    r.read()
    c.request("HEAD", "/ab/x.cacnk")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == "10240" and r.read() == b""
    s = served.stats
    for _ in range(600):  # the server counts a transfer once it has sent it (30 s at most)
        if s.requests == 5:
            break
        time.sleep(0.05)
    assert s.requests == 5 and s.chunks == 1 and s.clients == {"127.0.0.1"}
    assert s.bytes == 10240 + 10 + 4
    assert s.repeats == 2 and s.cache_hits == 0
    assert "1 chunks, 2 sent again" in s.summary()


def test_a_current_copy_is_a_304_and_counted_as_a_cache_hit(served: http.HttpServer) -> None:
    c = _conn(served)
    c.request("GET", "/ab/x.cacnk")
    r = c.getresponse()
    r.read()
    etag, modified = r.getheader("ETag"), r.getheader("Last-Modified")
    assert etag and modified
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", {etag}'},
        {"If-Modified-Since": modified},
    ):
        c.request("GET", "/ab/x.cacnk", headers=headers)
        r = c.getresponse()
        assert r.status == 304 and r.read() == b"", headers
    # A different validator, or a date before the file's: the file again.
    for headers in ({"If-None-Match": '"other"'}, {"If-Modified-Since": "garbage"}):
        c.request("GET", "/ab/x.cacnk", headers=headers)
        r = c.getresponse()
        assert r.status == 200 and len(r.read()) == 10240, headers
    for _ in range(600):  # 30 s at most, on a starved host
        if served.stats.requests == 6:
            break
        time.sleep(0.05)
    assert served.stats.cache_hits == 3 and served.stats.repeats == 2
    assert "3 cache hits (304)" in served.stats.summary()


@pytest.mark.parametrize("path", ["/../secret", "/ab/../../secret", "/nothing", "/ab", "/loop1"])
def test_nothing_outside_the_tree_or_missing_is_served(served: http.HttpServer, path: str) -> None:
    c = _conn(served)
    c.request("GET", path)
    assert c.getresponse().status == 404
    assert served.stats.missing == 1


def test_stopping_cuts_open_connections(served: http.HttpServer) -> None:
    c = _conn(served)
    c.request("GET", "/ab/x.cacnk")
    c.getresponse().read()
    served.stop()
    with pytest.raises((ConnectionError, client.HTTPException, socket.timeout, OSError)):
        c.request("GET", "/ab/x.cacnk")
        c.getresponse().read()


def test_a_port_in_use_is_one_line(served: http.HttpServer) -> None:
    with pytest.raises(XenkitError, match=r"HTTP cannot listen on 127\.0\.0\.1 port.*--http-port"):
        http.HttpServer({"/": Path("/")}, "127.0.0.1", served.port)


def test_an_ipv6_bind_serves_both_families_and_a_foreign_address_names_bind(
    tmp_path: Path,
) -> None:
    """--bind :: once failed with "pick another --http-port": the socket was IPv4."""
    (tmp_path / "f").write_text("hi")
    server = http.HttpServer({"/": tmp_path}, "::")
    try:
        for host in ("127.0.0.1", "::1"):
            c = client.HTTPConnection(host, server.port, timeout=10)
            c.request("GET", "/f")
            assert c.getresponse().read() == b"hi"
    finally:
        server.stop()
    with pytest.raises(XenkitError, match=r"HTTP cannot listen on 192\.0\.2\.1 .*fix --bind"):
        http.HttpServer({"/": tmp_path}, "192.0.2.1")


def test_a_netboot_tree_is_served_as_tftp_finds_it_behind_the_routes(tmp_path: Path) -> None:
    """What a boot loader's wget or GRUB's http asks: the file its TFTP request would get,
    a board directory (by the client's MAC) over default/; the store's routes first."""
    root = tmp_path / "tftp"
    (root / "default" / "boot").mkdir(parents=True)
    (root / "default" / "boot" / "xen.gz").write_text("default xen")
    (root / "default" / "Image.gz").write_text("default kernel")
    (root / "52-54-00-12-34-56").mkdir()
    (root / "52-54-00-12-34-56" / "Image.gz").write_text("board kernel")
    (tmp_path / "store" / "boot").mkdir(parents=True)
    (tmp_path / "store" / "boot" / "a.cacnk").write_text("chunk")
    (tmp_path / "secret").write_text("no")
    macs = {"127.0.0.1": "52-54-00-12-34-56"}
    tree = netboot.Tree(root, mac_of=macs.get)
    server = http.HttpServer({"/": tmp_path / "store"}, "127.0.0.1", tree=tree.over_http)
    try:

        def get(path: str) -> tuple[int, bytes]:
            c = _conn(server)
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()

        assert get("/boot/xen.gz") == (200, b"default xen")
        assert get("/Image.gz") == (200, b"board kernel")
        assert get("/boot/a.cacnk") == (200, b"chunk")
        for outside in ("/../secret", "/%2e%2e/secret", "/default/../../secret"):
            assert get(outside)[0] == 404, outside
        macs.clear()
        assert get("/Image.gz") == (200, b"default kernel")
    finally:
        server.stop()
