"""GET /api/health: this ingress and every actor, as Root sees them now."""

from __future__ import annotations

import asyncio

from aiohttp import web

from protocol.messages import HealthReport
from web.base import STATE, ApiState, envelope

HEALTH_TIMEOUT_S = 3.0


async def ask_health(state: ApiState) -> HealthReport | None:
    """Every actor's liveness as Root sees it now; None if Root does not answer within HEALTH_TIMEOUT_S."""
    request_id = next(state.ids)
    fut: asyncio.Future[HealthReport] = asyncio.get_running_loop().create_future()
    state.health_waiters[request_id] = fut
    state.post(("health", request_id))
    try:
        return await asyncio.wait_for(fut, HEALTH_TIMEOUT_S)
    except TimeoutError:
        state.health_waiters.pop(request_id, None)
        return None


async def health(request: web.Request) -> web.Response:
    """GET /api/health: this process and every actor, as Root sees them now."""
    report = await ask_health(request.app[STATE])
    if report is None:
        return envelope(503, f"Root did not answer within {HEALTH_TIMEOUT_S:.0f} s",
                        {"status": "degraded", "actors": []})
    data = {"status": "ok" if report.ok else "degraded", "actors": [a.model_dump() for a in report.actors],
            "members": report.members}
    return envelope(200 if report.ok else 503, "ok" if report.ok else "some actors are not answering", data)


def register(app: web.Application) -> None:
    """Add the health route."""
    app.router.add_get("/api/health", health)
