"""Download a customer's image from a URL, refusing private addresses, oversize bodies and decompression bombs."""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from PIL import Image, UnidentifiedImageError

from imaging.limits import MAX_IMAGE_BYTES, MAX_PIXELS

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A download that failed; `.reason` is one of bad_url, blocked_url, too_large, timeout, download_failed,
    not_image, bomb."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchedImage:
    """An image saved at `path` that Pillow opened and verified."""

    path: Path
    mime: str
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    request_path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def fetch_image(url: str, dest: Path, allow_hosts: frozenset[str], max_bytes: int = MAX_IMAGE_BYTES,
                timeout_s: float = 15.0, max_pixels: int = MAX_PIXELS) -> FetchedImage:
    """Download `url` to exactly `dest` (no suffix added) and check it is a sane image; raises FetchError.

    Hosts in `allow_hosts` ("host" or "host:port") may resolve to private or loopback addresses. timeout_s bounds
    connecting and reading; name resolution is bounded by the system resolver's own timeout.
    """
    allow_hosts = frozenset(host.strip().lower() for host in allow_hosts)
    deadline = time.monotonic() + timeout_s
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        size = _download(url, partial, allow_hosts, max_bytes, deadline)
        mime, width, height = _check_image(partial, max_pixels)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return FetchedImage(path=dest, mime=mime, width=width, height=height, size=size)


def _download(url: str, out: Path, allow_hosts: frozenset[str], max_bytes: int, deadline: float) -> int:
    """Follow up to MAX_REDIRECTS redirects, checking every hop, and stream the final body into `out`."""
    for _hop in range(MAX_REDIRECTS + 1):
        target = _parse(url)
        conn = _connect(target, allow_hosts, deadline)
        try:
            response = _request(conn, target, deadline)
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError("download_failed", f"{target.host} answered HTTP {response.status}")
            return _stream(conn, response, out, max_bytes, deadline)
        finally:
            conn.close()
    raise FetchError("download_failed", f"more than {MAX_REDIRECTS} redirects")


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError("bad_url", f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("bad_url", f"only http and https URLs are fetched, not {scheme or 'a relative URL'!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError("bad_url", "the URL has no host")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise FetchError("bad_url", "the URL's host name is not valid") from exc
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def _connect(target: _Target, allow_hosts: frozenset[str], deadline: float) -> http.client.HTTPConnection:
    """Resolve, check every address, then connect to a checked address so DNS cannot change the answer later."""
    allowed = target.host in allow_hosts or f"{target.host}:{target.port}" in allow_hosts \
        or f"[{target.host}]:{target.port}" in allow_hosts
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError("download_failed", f"cannot resolve {target.host}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    blocked = [ip for ip in addresses if not _is_public(ip)]
    if blocked and not allowed:
        raise FetchError("blocked_url", f"{target.host} resolves to a non-public address ({blocked[0]})")
    sock = _open_socket(infos, target, deadline)
    if target.scheme == "https":
        context = ssl.create_default_context()
        try:
            sock = context.wrap_socket(sock, server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise FetchError("timeout", f"TLS handshake with {target.host} timed out") from exc
            raise FetchError("download_failed", f"TLS with {target.host} failed: {exc}") from exc
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock = sock
    return conn


def _open_socket(infos: list[tuple], target: _Target, deadline: float) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline, target))
            sock.connect(sockaddr)
            return sock
        except TimeoutError as exc:
            sock.close()
            raise FetchError("timeout", f"connecting to {target.host} timed out") from exc
        except OSError as exc:
            sock.close()
            last = exc
    raise FetchError("download_failed", f"cannot connect to {target.host}: {last}")


def _request(conn: http.client.HTTPConnection, target: _Target, deadline: float) -> http.client.HTTPResponse:
    headers = {"Host": target.host_header, "Accept": "image/*", "User-Agent": "retouch-shop-fetch/1"}
    try:
        conn.sock.settimeout(_remaining(deadline, target))
        conn.request("GET", target.request_path, headers=headers)
        return conn.getresponse()
    except http.client.InvalidURL as exc:
        raise FetchError("bad_url", f"not a valid URL path: {exc}") from exc
    except TimeoutError as exc:
        raise FetchError("timeout", f"{target.host} did not answer in time") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("download_failed", f"request to {target.host} failed: {exc}") from exc


def _stream(conn: http.client.HTTPConnection, response: http.client.HTTPResponse, out: Path, max_bytes: int,
            deadline: float) -> int:
    """Write the body to `out`, reading at most max_bytes + 1 bytes so an endless body costs nothing more."""
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"the file is {int(declared)} bytes, more than the {max_bytes} allowed")
    received = 0
    try:
        with out.open("wb") as fh:
            while received <= max_bytes:
                if time.monotonic() >= deadline:
                    raise FetchError("timeout", "the download took too long")
                conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = response.read1(min(_CHUNK, max_bytes + 1 - received))
                if not chunk:
                    return received
                fh.write(chunk)
                received += len(chunk)
    except TimeoutError as exc:
        raise FetchError("timeout", "the download took too long") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("download_failed", f"the download broke off: {exc}") from exc
    raise FetchError("too_large", f"the file is larger than the {max_bytes} bytes allowed")


def _check_image(path: Path, max_pixels: int) -> tuple[str, int, int]:
    """Open, size-check and fully decode the file; Pillow's bomb warning counts as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                width, height, fmt = img.width, img.height, img.format or ""
                if width * height > max_pixels:
                    raise FetchError("bomb", f"the image is {width}x{height}, more than {max_pixels} pixels")
                img.verify()
            with Image.open(path) as img:
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise FetchError("bomb", f"the image is too large to decode safely: {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise FetchError("not_image", "the file is not an image that can be opened") from exc
    return Image.MIME.get(fmt, "application/octet-stream"), width, height


def _is_public(ip: IpAddress) -> bool:
    """True for a globally routable unicast address; IPv6 forms that embed an IPv4 address are judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_public(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not _is_public(embedded):
            return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


def _remaining(deadline: float, target: _Target) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("timeout", f"ran out of time fetching from {target.host}")
    return left

