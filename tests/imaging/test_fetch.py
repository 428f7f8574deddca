"""fetch_image against a real aiohttp server on loopback: images, junk, endless and slow bodies, redirects, bombs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from imaging.fetch import FetchError, fetch_image
from tests.harness import FileServer
from tests.tls import self_signed_cert


def _png(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 0 if mode == "1" else (30, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _patched_png_dimensions(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR claims huge dimensions (the classic decompression bomb header)."""
    data = bytearray(_png((8, 8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


class _Server(FileServer):
    """A loopback aiohttp server with the endpoints the tests need."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.files.update({
            "photo.png": (_png(), "image/png"),
            "notes.txt": (b"this is not an image\n" * 10, "text/plain"),
            "bomb.png": (_png((8000, 6000), mode="1"), "image/png"),
            "huge-header.png": (_patched_png_dimensions(100_000, 100_000), "image/png"),
        })
        self.streamed = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/endless", self._endless)
        app.router.add_get("/declared-huge", self._declared_huge)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/redirect/{to:.*}", self._redirect)
        app.router.add_get("/loop", self._loop_redirect)
        app.router.add_get("/{name}", self.serve_file)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        # 50 MB in 64 KiB chunks, no Content-Length: only the byte count can stop it.
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * (64 * 1024 - 8)
        with contextlib.suppress(ConnectionError):
            for _ in range(800):
                await resp.write(chunk)
                self.streamed += len(chunk)
        return resp

    async def _declared_huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(50 * 1024 * 1024)})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(b"\x89PNG\r\n\x1a\n")
        return resp

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                await resp.write(b"\x89")
                await asyncio.sleep(0.1)
        return resp

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.match_info["to"])

    async def _loop_redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    with _Server() as srv:
        yield srv


@pytest.fixture
def allowed(server: _Server) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{server.port}"})


def _reason(url: str, dest: Path, allow: frozenset[str], **kw: float) -> str:
    with pytest.raises(FetchError) as info:
        fetch_image(url, dest, allow, **kw)
    assert str(info.value), "the error says what is wrong"
    assert not dest.exists(), "nothing is left at dest after a failure"
    assert not list(dest.parent.glob("*.part")), "no partial file is left behind"
    return info.value.reason


def test_png_is_saved_at_dest_with_its_measures(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    dest = tmp_path / "in" / "customer-1"
    got = fetch_image(server.url("photo.png"), dest, allowed)
    assert got.path == dest and dest.is_file()
    assert (got.mime, got.width, got.height) == ("image/png", 64, 48)
    assert got.size == dest.stat().st_size == len(server.files["photo.png"][0])
    with Image.open(dest) as img:
        assert img.size == (64, 48)


def test_loopback_is_allowed_by_bare_host_too(server: _Server, tmp_path: Path) -> None:
    got = fetch_image(server.url("photo.png"), tmp_path / "a", frozenset({"127.0.0.1"}))
    assert got.width == 64


def test_loopback_is_refused_unless_allowed(server: _Server, tmp_path: Path) -> None:
    assert _reason(server.url("photo.png"), tmp_path / "a", frozenset()) == "blocked_url"
    assert _reason(server.url("photo.png"), tmp_path / "a", frozenset({"127.0.0.1:1"})) == "blocked_url"
    assert _reason(f"http://localhost:{server.port}/photo.png", tmp_path / "a", frozenset()) == "blocked_url"


@pytest.mark.parametrize("host", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                                  "224.0.0.1", "0.0.0.0", "240.0.0.1", "[::1]", "[fe80::1]", "[fc00::1]",
                                  "[ff02::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[2002:a00:1::]"])
def test_private_and_special_addresses_are_refused(host: str, tmp_path: Path) -> None:
    assert _reason(f"http://{host}/x.png", tmp_path / "a", frozenset()) == "blocked_url"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "http:///nohost",
                                 "not a url", "http://example.com:99999/a.png", "//example.com/a.png"])
def test_non_http_urls_are_bad(url: str, tmp_path: Path) -> None:
    assert _reason(url, tmp_path / "a", frozenset()) == "bad_url"


def test_text_file_is_not_an_image(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("notes.txt"), tmp_path / "a", allowed) == "not_image"


def test_missing_file_fails_the_download(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("nothing-here.png"), tmp_path / "a", allowed) == "download_failed"


def test_endless_stream_is_cut_at_the_limit(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("endless"), tmp_path / "a", allowed, max_bytes=1024 * 1024) == "too_large"
    assert server.streamed < 20 * 1024 * 1024, "the client stopped reading long before 50 MB"


def test_declared_length_over_the_limit_is_too_large(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("declared-huge"), tmp_path / "a", allowed) == "too_large"


def test_slow_body_times_out(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("slow"), tmp_path / "a", allowed, timeout_s=0.5) == "timeout"


def test_redirects_are_followed_and_rechecked(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert fetch_image(server.url("redirect//photo.png"), tmp_path / "ok", allowed).width == 64
    blocked = server.url("redirect/http://169.254.169.254/latest/meta-data")
    assert _reason(blocked, tmp_path / "a", allowed) == "blocked_url"
    to_other_port = server.url("redirect/http://127.0.0.1:1/photo.png")
    assert _reason(to_other_port, tmp_path / "a", allowed) == "blocked_url"


def test_redirect_loop_stops_after_three(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert _reason(server.url("loop"), tmp_path / "a", allowed) == "download_failed"


def test_huge_dimensions_are_a_bomb(server: _Server, allowed: frozenset[str], tmp_path: Path) -> None:
    assert len(server.files["bomb.png"][0]) < 100_000, "a small file..."
    assert _reason(server.url("bomb.png"), tmp_path / "a", allowed) == "bomb"
    assert _reason(server.url("huge-header.png"), tmp_path / "a", allowed) == "bomb"
    assert _reason(server.url("photo.png"), tmp_path / "a", allowed, max_pixels=1000) == "bomb"


def test_https_verifies_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with _Server(context) as srv:
        url = f"https://127.0.0.1:{srv.port}/photo.png"
        allow = frozenset({"127.0.0.1"})
        assert _reason(url, tmp_path / "a", allow) == "download_failed", "an untrusted certificate is refused"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert fetch_image(url, tmp_path / "b", allow).mime == "image/png"
