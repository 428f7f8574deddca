"""The console's operator actions (/console/api/…): pause, resume, write as staff, hand a job to a designer,
cancel a Tianwang task, delete a customer's data; each one audited with the thing before and after. The session and
CSRF checks are console_auth's guard; request[OPERATOR] is who acts.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from persistence import forget, operator_actions, operators, tasks
from protocol.console import ConsolePauseIn, ReasonIn, StaffMessageIn
from protocol.image import TERMINAL_JOB_STATES
from protocol.messages import OperatorHandOff, OperatorHandOffDone, SendNudge
from web.base import STATE, ApiError, envelope, found, parse_body
from web.console_auth import ACCOUNTS, CSRF, OPERATOR, client_ip

HANDOFF_TIMEOUT_S = 15.0  # the customer's conversation may have to be started first
AUDIT_LIMIT_MAX = 500


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    """The body as model; an empty body is the model's defaults."""
    if not request.content_length and not (await request.read()).strip():
        return model()
    return await parse_body(request, model)


async def me(request: web.Request) -> web.Response:
    """GET /console/api/me: who is logged in and the CSRF token every POST must carry."""
    return envelope(200, "ok", {"operator": request[OPERATOR], "csrf": request[CSRF],
                                "accounts": request[ACCOUNTS]})


async def audit_list(request: web.Request) -> web.Response:
    """GET /console/api/audit?limit=50: the latest operator actions, newest first."""
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be a whole number, got {raw!r}") from None
    if not 1 <= limit <= AUDIT_LIMIT_MAX:
        raise ApiError(400, f"limit must be between 1 and {AUDIT_LIMIT_MAX}, got {limit}")
    return envelope(200, "ok", await request.app[STATE].read(operators.recent_audit, limit))


async def pause(request: web.Request) -> web.Response:
    """POST /console/api/conversations/{customer_id}/pause {minutes?, reason?}: the AI stays silent to them."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    body = await _body(request, ConsolePauseIn)
    minutes = body.minutes if body.minutes is not None else state.settings.TAKEOVER_MINUTES
    t = time.time()
    data = await state.write(operator_actions.set_pause, customer_id, t + minutes * 60, request[OPERATOR],
                             body.reason, client_ip(request), t)
    return envelope(200, "已暂停AI回复", found(data, f"no conversation with customer {customer_id}"))


async def resume(request: web.Request) -> web.Response:
    """POST /console/api/conversations/{customer_id}/resume: the AI answers them again."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    data = await state.write(operator_actions.set_pause, customer_id, None, request[OPERATOR], "",
                             client_ip(request), time.time())
    return envelope(200, "已恢复AI回复", found(data, f"no conversation with customer {customer_id}"))


def _send_key(customer_id: str, operator: str, request: web.Request) -> str:
    """The send's idempotency key: from the client's Idempotency-Key header (a repeated request sends nothing
    more), else a fresh one."""
    given = request.headers.get("Idempotency-Key", "")
    if not given:
        return f"console:{customer_id}:{uuid.uuid4().hex}"
    if len(given) > 200:
        raise ApiError(400, "Idempotency-Key is longer than 200 characters")
    digest = hashlib.sha256(operator.encode() + b"\0" + given.encode()).hexdigest()[:32]
    return f"console:{customer_id}:{digest}"


async def message(request: web.Request) -> web.Response:
    """POST /console/api/conversations/{customer_id}/message {text}: write to the customer as staff (through the
    outbox and the IM gateway); the AI pauses for TAKEOVER_MINUTES."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    body = await parse_body(request, StaffMessageIn)
    operator = request[OPERATOR]
    data = await state.write(operator_actions.staff_message, customer_id, body.text,
                             _send_key(customer_id, operator, request), operator, client_ip(request),
                             state.settings.TAKEOVER_MINUTES * 60, time.time())
    if data is None:
        raise ApiError(404, f"no conversation with customer {customer_id}")
    if data["created"]:
        state.post(("tell", "gateway", SendNudge()))
    return envelope(200, "消息已发出" if data["created"] else "这条消息已经发过了", data)


async def handoff(request: web.Request) -> web.Response:
    """POST /console/api/jobs/{job_id}/handoff {reason?}: hand the image job to a designer (one dispatch task),
    decided by the customer's conversation like every change of a job."""
    state = request.app[STATE]
    job_id = request.match_info["job_id"]
    body = await _body(request, ReasonIn)
    before = await state.read(operator_actions.job_snapshot, job_id)
    if before is None:
        raise ApiError(404, f"no image job {job_id}")
    if before["state"] in {s.value for s in TERMINAL_JOB_STATES}:
        raise ApiError(409, f"job {job_id} is already {before['state']}: there is nothing to hand off")
    request_id = next(state.ids)
    answer: asyncio.Future[OperatorHandOffDone] = asyncio.get_running_loop().create_future()
    state.answers[request_id] = answer
    state.post(("tell", "conversations", OperatorHandOff(request_id=request_id, customer_id=before["customer_id"],
                                                          job_id=job_id, operator=request[OPERATOR],
                                                          reason=body.reason)))
    try:
        done = await asyncio.wait_for(answer, HANDOFF_TIMEOUT_S)
    except TimeoutError:
        state.answers.pop(request_id, None)
        raise ApiError(504, f"the conversation of customer {before['customer_id']} did not answer within "
                            f"{HANDOFF_TIMEOUT_S:.0f} s; look at the job before trying again") from None
    if not done.ok:
        raise ApiError(409, f"job {job_id} was not handed off: {done.error}")
    after = await state.read(operator_actions.job_snapshot, job_id)
    await state.write(operators.audit, request[OPERATOR], "handoff", f"job:{job_id}", before, after,
                      client_ip(request))
    return envelope(200, "已转给设计师", after)


async def cancel_task(request: web.Request) -> web.Response:
    """POST /console/api/tasks/{task_id}/cancel {reason?}: cancel a Tianwang task as Tianwang's cancel does."""
    state = request.app[STATE]
    task_id = request.match_info["task_id"]
    body = await _body(request, ReasonIn)
    s = state.settings
    try:
        data = await state.write(operator_actions.cancel_task, task_id, body.reason, request[OPERATOR],
                                 client_ip(request), s.SHOP_TIMEZONE, bool(s.TIANWANG_CALLBACK_URL), time.time())
    except tasks.TaskNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except tasks.TaskFinished as exc:
        raise ApiError(409, str(exc)) from None
    state.post(("tasks_changed", task_id))
    return envelope(200, "任务已取消", data)


async def forget_customer(request: web.Request) -> web.Response:
    """POST /console/api/conversations/{customer_id}/forget: delete everything kept of the customer (photos, results,
    mails, messages, profile, e-mail) on their request; their Tianwang tasks stay without texts, open ones cancelled.
    Audited with the customer by pseudonym; 404 when nothing of them is kept."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    s = state.settings
    done = await state.write(functools.partial(
        forget.forget, customer_id, s.DATA_DIR, time.time(), request[OPERATOR], tz=s.SHOP_TIMEZONE,
        callbacks=bool(s.TIANWANG_CALLBACK_URL), ip=client_ip(request), only_if_found=True))
    if done is None:
        raise ApiError(404, f"nothing of customer {customer_id} is kept: no conversation, message, job or task")
    for task_id in done.cancelled:
        state.post(("tasks_changed", task_id))
    return envelope(200, "客户数据已删除", {"customer": done.pseudonym, "removed": done.removed, "left": done.left,
                                       "cancelled_tasks": done.cancelled})


def register(app: web.Application) -> None:
    """Add the operator actions to the ingress app (console_auth's guard protects them)."""
    app.router.add_get("/console/api/me", me)
    app.router.add_get("/console/api/audit", audit_list)
    app.router.add_post("/console/api/conversations/{customer_id}/pause", pause)
    app.router.add_post("/console/api/conversations/{customer_id}/resume", resume)
    app.router.add_post("/console/api/conversations/{customer_id}/message", message)
    app.router.add_post("/console/api/conversations/{customer_id}/forget", forget_customer)
    app.router.add_post("/console/api/jobs/{job_id}/handoff", handoff)
    app.router.add_post("/console/api/tasks/{task_id}/cancel", cancel_task)
