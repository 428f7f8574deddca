"""The ingress's aiohttp application, run in the Ingress actor's loop thread: its middlewares, the table of
modules that add routes to it, and the server.

Every answer is the envelope (web/base.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from observability.json_logs import ids_in
from web import console_actions, console_auth, console_views, health, metrics, openapi, operator, tianwang
from web.base import MAX_BODY, STATE, ApiError, ApiState, envelope

log = logging.getLogger("shop.ingress")

# The modules that add routes, in order (each has register(app)): the API's, then the console's.
ROUTES = (tianwang, health, operator)
CONSOLE = (console_auth, console_actions, console_views)


@web.middleware
async def errors_in_envelope(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    """Turn every failure, ours or aiohttp's, into an envelope with a message that says what is wrong."""
    try:
        return await handler(request)
    except ApiError as exc:
        return envelope(exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return envelope(413, f"request body is over the {MAX_BODY}-byte limit")
    except web.HTTPNotFound:
        return envelope(404, f"no such endpoint: {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        answer = envelope(405, f"{request.method} is not allowed on {request.path}; use {allowed}")
        answer.headers["Allow"] = allowed  # RFC 9110: a 405 names the methods that are allowed
        return answer
    except web.HTTPException as exc:
        return envelope(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path, extra=ids_in(request.match_info))
        return envelope(500, "internal error; the request was not applied")


def needs_key(path: str) -> bool:
    """Whether a path needs X-API-Key when TIANWANG_API_KEY is set (the OpenAPI document says the same)."""
    # Result files are fetched by the IM bridge and customers: their unguessable URL is the credential.
    # The docs page holds no data: it asks the reader for the key to fetch /api/openapi.json.
    # The console has its own login (web/console_auth.py).
    return not (path in ("/api/health", "/api/docs", "/console") or path.startswith(("/files/", "/console/")))


@web.middleware
async def api_key(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Require X-API-Key where needs_key says so when TIANWANG_API_KEY is set."""
    key = request.app[STATE].settings.TIANWANG_API_KEY
    if key is not None and needs_key(request.path):
        given = request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
            raise ApiError(401, "missing or wrong X-API-Key")
    return await handler(request)


def make_app(state: ApiState) -> web.Application:
    """The aiohttp application with every route of SPEC §1, the operator endpoints, /metrics, OpenAPI and the
    console."""
    app = web.Application(middlewares=[errors_in_envelope, api_key], client_max_size=MAX_BODY)
    app[STATE] = state
    for module in ROUTES:
        module.register(app)
    metrics.install(app, state.name)
    openapi.add_routes(app, keyed=state.settings.TIANWANG_API_KEY is not None, max_body=MAX_BODY, needs_key=needs_key)
    for module in CONSOLE:
        module.register(app)
    return app


async def serve(state: ApiState, ready: Callable[[str | None], None]) -> None:
    """Bind and serve until cancelled; ready(None) once listening, ready(error) if the bind failed."""
    runner = web.AppRunner(make_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    s = state.settings
    deadline = time.monotonic() + 5
    while True:
        try:
            # Several ingress processes: one port, the kernel spreads the connections over their sockets.
            site = web.TCPSite(runner, s.HTTP_API_HOST, s.HTTP_API_PORT, reuse_address=True, backlog=1024,
                               reuse_port=s.INGRESS_PROCESSES > 1)
            await site.start()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                ready(f"cannot listen on {s.HTTP_API_HOST}:{s.HTTP_API_PORT}: {exc}")
                await runner.cleanup()
                return
            await asyncio.sleep(0.05)
    ready(None)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        state.writer.shutdown(wait=False)
        state.readers.shutdown(wait=False)
