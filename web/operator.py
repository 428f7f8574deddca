"""The operator endpoints: a conversation and its image jobs, pausing and resuming the AI, and the result files
customers are sent."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from persistence import jobs, profiles, takeover
from protocol.operator import PauseIn
from web.base import STATE, ApiError, envelope, found, parse_body


async def conversation(request: web.Request) -> web.Response:
    """GET /api/conversation/{customer_id}: profile, latest messages, image jobs with their history."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    data = await state.read(profiles.conversation_view, customer_id, state.public_base)
    return envelope(200, "ok", found(data, f"no conversation with customer {customer_id}"))


async def pause(request: web.Request) -> web.Response:
    """POST /api/conversation/{customer_id}/pause: an operator takes over; the AI is silent to this customer."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    empty = not request.content_length and not (await request.read()).strip()
    body = PauseIn() if empty else await parse_body(request, PauseIn)
    minutes = body.minutes if body.minutes is not None else state.settings.TAKEOVER_MINUTES
    t = time.time()
    data = await state.write(takeover.set_pause, customer_id, t + minutes * 60, body.by, body.reason, t)
    return envelope(200, "已暂停AI回复", found(data, f"no conversation with customer {customer_id}"))


async def resume(request: web.Request) -> web.Response:
    """POST /api/conversation/{customer_id}/resume: the AI answers this customer again."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    data = await state.write(takeover.set_pause, customer_id, None, "", "", time.time())
    return envelope(200, "已恢复AI回复", found(data, f"no conversation with customer {customer_id}"))


async def job(request: web.Request) -> web.Response:
    """GET /api/jobs/{job_id}: one image job with its attempts, requirement changes, result URL and mails."""
    state = request.app[STATE]
    job_id = request.match_info["job_id"]
    data = await state.read(jobs.job_view, job_id, state.public_base)
    return envelope(200, "ok", found(data, f"no image job {job_id}"))


async def public_file(request: web.Request) -> web.StreamResponse:
    """GET /files/{token}/{name}: a result image or file, at the unguessable URL the customer was sent."""
    row = await request.app[STATE].read(jobs.public_file, request.match_info["token"])
    if row is None or row.name != request.match_info["name"] or not Path(row.path).is_file():
        raise ApiError(404, "no such file")
    return web.FileResponse(row.path, headers={"Content-Type": row.mime, "Cache-Control": "private, max-age=86400"})


def register(app: web.Application) -> None:
    """Add the operator endpoints' and the result files' routes."""
    app.router.add_get("/api/conversation/{customer_id}", conversation)
    app.router.add_post("/api/conversation/{customer_id}/pause", pause)
    app.router.add_post("/api/conversation/{customer_id}/resume", resume)
    app.router.add_get("/api/jobs/{job_id}", job)
    app.router.add_get("/files/{token}/{name}", public_file)
