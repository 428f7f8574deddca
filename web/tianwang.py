"""The Tianwang task API (SPEC §1): receive, cancel, status, list, stats, and custom events."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from persistence import messages, tasks
from protocol.api import PAGE_SIZE_MAX
from protocol.tianwang import CancelIn, EventIn, TaskIn, TaskStatus
from web.base import STATE, ApiError, envelope, int_param, parse_body

log = logging.getLogger("shop.ingress")


async def receive(request: web.Request) -> web.Response:
    """POST /api/task/receive: store a task (idempotent by task_id)."""
    state = request.app[STATE]
    task = await parse_body(request, TaskIn)
    try:
        result = await state.committer.submit(task)
    except tasks.TaskConflict as exc:
        raise ApiError(409, str(exc)) from None
    if result.created:
        state.post(("tasks_changed", task.task_id))
    return envelope(200, "任务接收成功", result.answer)


async def cancel(request: web.Request) -> web.Response:
    """POST /api/task/cancel: cancel a task that has not finished."""
    state = request.app[STATE]
    body = await parse_body(request, CancelIn)
    s = state.settings
    try:
        data = await state.write(tasks.cancel, body.task_id, body.reason, time.time(), s.SHOP_TIMEZONE,
                                 bool(s.TIANWANG_CALLBACK_URL))
    except tasks.TaskNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except tasks.TaskFinished as exc:
        raise ApiError(409, str(exc)) from None
    state.post(("tasks_changed", body.task_id))
    log.info("task %s cancelled: %s", body.task_id, body.reason, extra={"task_id": body.task_id})
    return envelope(200, "任务已取消", data)


async def event(request: web.Request) -> web.Response:
    """POST /api/event: fire custom_event triggers."""
    state = request.app[STATE]
    body = await parse_body(request, EventIn)
    item = await state.write(messages.add_custom_event, body.event, body.customer_id, body.data, time.time())
    state.post(("event", item))
    return envelope(200, "事件已接收", {"event_id": item.event_id, "event": body.event,
                                        "customer_id": body.customer_id})


async def status(request: web.Request) -> web.Response:
    """GET /api/task/status/{task_id}: one task with its history."""
    state = request.app[STATE]
    try:
        data = await state.read(tasks.get, request.match_info["task_id"], state.settings.SHOP_TIMEZONE)
    except tasks.TaskNotFound as exc:
        raise ApiError(404, str(exc)) from None
    return envelope(200, "ok", data)


async def list_tasks(request: web.Request) -> web.Response:
    """GET /api/task/list?status=&customer=&type=&page=&page_size=: tasks newest first."""
    state = request.app[STATE]
    status_filter = request.query.get("status") or None
    if status_filter and status_filter not in {s.value for s in TaskStatus}:
        raise ApiError(400, f"status must be one of {', '.join(s.value for s in TaskStatus)}, got {status_filter!r}")
    page = int_param(request, "page", 1, 1, 1_000_000)
    page_size = int_param(request, "page_size", 20, 1, PAGE_SIZE_MAX)
    data = await state.read(tasks.list_tasks, state.settings.SHOP_TIMEZONE, status_filter,
                            request.query.get("customer") or None, request.query.get("type") or None, page, page_size)
    return envelope(200, "ok", data)


async def stats(request: web.Request) -> web.Response:
    """GET /api/task/stats: counts by status, priority, trigger type."""
    return envelope(200, "ok", await request.app[STATE].read(tasks.stats))


def register(app: web.Application) -> None:
    """Add the task API's routes."""
    app.router.add_post("/api/task/receive", receive)
    app.router.add_post("/api/task/cancel", cancel)
    app.router.add_get("/api/task/status/{task_id}", status)
    app.router.add_get("/api/task/list", list_tasks)
    app.router.add_get("/api/task/stats", stats)
    app.router.add_post("/api/event", event)
