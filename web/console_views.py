"""The operators' console page and its read side: the page, its static files, the snapshot, its live stream
(server-sent events), a conversation's detail and job thumbnails. The login guard in front of every /console
path and the actions behind its buttons live in console_auth and console_actions.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from aiohttp import web

from imaging.thumbnail import NoThumbnail, thumbnail
from persistence import console
from web.base import STATE, ApiError, envelope, found
from web.console_hub import ConsoleHub

WEB_DIR = Path(__file__).resolve().parent / "static"  # package data: a wheel serves the console too
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png", ".svg": "image/svg+xml"}
STATIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")  # one name, no path, no dot-dot
KEEPALIVE_S = 15.0
# A stream ends after this long and the browser reconnects at once, through the login guard again: a session
# that was logged out or expired meanwhile stops receiving.
STREAM_MAX_S = 300.0
RETRY_MS = 3000  # how soon a browser reconnects a broken stream
# The page loads nothing from elsewhere and runs no inline script: a stolen page cannot phone home.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
HUB = web.AppKey("console_hub", ConsoleHub)


async def page(request: web.Request) -> web.StreamResponse:
    """GET /console: the console page."""
    return web.FileResponse(WEB_DIR / "console.html",
                            headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def static(request: web.Request) -> web.StreamResponse:
    """GET /console/static/{name}: the page's stylesheet, script and images, from web/static only."""
    name = request.match_info["name"]
    kind = STATIC_TYPES.get(Path(name).suffix)
    path = WEB_DIR / name
    if kind is None or not STATIC_NAME.match(name) or path.resolve().parent != WEB_DIR or not path.is_file():
        raise ApiError(404, f"no console file {name!r}")
    return web.FileResponse(path, headers={"Content-Type": f"{kind}; charset=utf-8" if kind.startswith("text")
                                           else kind, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def snapshot(request: web.Request) -> web.Response:
    """GET /console/api/snapshot: everything the console shows, now."""
    return envelope(200, "ok", await request.app[HUB].build())


async def conversation(request: web.Request) -> web.Response:
    """GET /console/api/conversations/{customer_id}: messages in and out (held ones too) in order, takeover, jobs."""
    customer_id = request.match_info["customer_id"]
    data = await request.app[STATE].read(console.conversation_detail, customer_id, time.time())
    return envelope(200, "ok", found(data, f"no conversation with customer {customer_id}"))


async def thumb(request: web.Request) -> web.StreamResponse:
    """GET /console/api/thumb/{job_id}?which=result|source: a small JPEG of the job's result or photo."""
    state = request.app[STATE]
    job_id, which = request.match_info["job_id"], request.query.get("which", "result")
    if which not in ("result", "source"):
        raise ApiError(400, f"which must be result or source, got {which!r}")
    src = await state.read(console.image_path, job_id, which)
    if src is None:
        raise ApiError(404, f"job {job_id} has no {which} image")
    try:
        path = await state.read(thumbnail, Path(src), state.settings.DATA_DIR / "thumbs")
    except NoThumbnail as exc:
        raise ApiError(404, f"no thumbnail of job {job_id}'s {which}: {exc}") from None
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=3600"})


async def stream(request: web.Request) -> web.StreamResponse:
    """GET /console/api/stream: server-sent events, a `snapshot` event with the whole picture whenever it
    changed, and a comment every KEEPALIVE_S so proxies and the browser know the line is alive."""
    hub = request.app[HUB]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    await resp.prepare(request)
    ready = hub.subscribe()
    sent = 0
    ends = time.monotonic() + STREAM_MAX_S
    try:
        await resp.write(f"retry: {RETRY_MS}\n\n".encode())
        while not hub.closing and time.monotonic() < ends:
            try:
                await asyncio.wait_for(ready.wait(), min(KEEPALIVE_S, max(0.0, ends - time.monotonic())))
            except TimeoutError:
                await resp.write(f": keep-alive {time.time():.0f}\n\n".encode())
                continue
            ready.clear()
            if hub.closing:
                break
            if hub.version != sent and hub.text is not None:
                sent = hub.version
                await resp.write(f"id: {sent}\nevent: snapshot\ndata: {hub.text}\n\n".encode())
    except ConnectionError:  # the browser went away (a tab closed, a phone slept): nothing to clean but our seat
        pass
    finally:
        hub.unsubscribe(ready)
    return resp


def register(app: web.Application) -> None:
    """Add the console's page and read routes to the ingress app."""
    hub = ConsoleHub(app[STATE])
    app[HUB] = hub
    app.on_shutdown.append(hub.close)
    app.router.add_get("/console", page)
    app.router.add_get("/console/static/{name}", static)
    app.router.add_get("/console/api/snapshot", snapshot)
    app.router.add_get("/console/api/stream", stream)
    app.router.add_get("/console/api/conversations/{customer_id}", conversation)
    app.router.add_get("/console/api/thumb/{job_id}", thumb)
