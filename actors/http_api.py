"""The Tianwang HTTP API (SPEC §1) as an aiohttp app, run in the Ingress actor's loop thread.

Writes are validated, group-committed, answered, then posted to the actor, which tells the
Scheduler in batches. Reads query the database directly. Every answer is the envelope.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from actors import metrics_http, openapi
from actors.json_logs import ids_in
from core.redaction import redact
from persistence import jobs, messages, profiles, takeover, tasks
from protocol.api import PAGE_SIZE_MAX
from protocol.messages import HealthReport
from protocol.operator import PauseIn
from protocol.settings import Settings
from protocol.tianwang import CancelIn, EventIn, TaskIn, TaskStatus

log = logging.getLogger("shop.ingress")

MAX_BODY = 1024 * 1024
HEALTH_TIMEOUT_S = 3.0


class ApiError(Exception):
    """An error answered in the envelope with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def envelope(code: int, message: str, data: Any = None) -> web.Response:
    """Every answer, success or error, in the same shape."""
    body = json.dumps({"code": code, "message": message, "data": data}, ensure_ascii=False)
    # An error text from outside (a mail server, an API) may quote a secret back: none leaves in an answer.
    return web.Response(status=code, text=redact(body), content_type="application/json")


def describe_validation(exc: ValidationError) -> str:
    """Pydantic's errors as one line that names each field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class GroupCommitter:
    """Collects concurrent writes and commits each batch in one transaction on one writer thread."""

    def __init__(self, commit: Callable[[list[Any]], list[Any]], executor: ThreadPoolExecutor) -> None:
        self._commit, self._executor = commit, executor
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._running = False

    async def submit(self, item: Any) -> Any:
        """Queue one item and wait for its own result (or exception)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await loop.run_in_executor(self._executor, self._commit, [i for i, _ in batch])
                except Exception as exc:  # the whole transaction failed: every item gets the error
                    results = [exc] * len(batch)
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, Exception):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._running = False


class ApiState:
    """What the app shares with the Ingress actor: outgoing posts and pending health answers."""

    def __init__(self, settings: Settings, post: Callable[[Any], None], name: str = "ingress") -> None:
        self.settings = settings
        self.name = name  # which ingress process this is (INGRESS_PROCESSES), in metrics
        self.post = post
        self.health_waiters: dict[int, asyncio.Future[HealthReport]] = {}
        self.answers: dict[int, asyncio.Future[Any]] = {}  # request id → an actor's answer awaited by a handler
        self.ids = itertools.count(1)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="ingress-writer")
        self.readers = ThreadPoolExecutor(4, thread_name_prefix="ingress-reader")
        callbacks = bool(settings.TIANWANG_CALLBACK_URL)
        tz = settings.SHOP_TIMEZONE
        self.public_base = settings.public_base_url
        self.committer = GroupCommitter(lambda items: tasks.receive_many(items, time.time(), tz, callbacks),
                                        self.writer)

    def resolve_health(self, report: HealthReport) -> None:
        """Called in the loop by the actor when Root's report arrives."""
        fut = self.health_waiters.pop(report.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(report)

    def resolve_answer(self, request_id: int, answer: Any) -> None:
        """Called in the loop by the actor when an actor answers a request a handler waits for."""
        fut = self.answers.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(answer)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a database read off the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.readers, fn, *args)

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a database write on the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)


STATE = web.AppKey("state", ApiState)


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The request body as model, or an ApiError that says what is wrong."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"request body of {request.content_length} bytes is over the {MAX_BODY}-byte limit")
    raw = await request.read()
    try:
        return model.model_validate_json(raw)  # parses and validates in one pass
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError(400, f"malformed JSON: {exc.errors()[0]['msg']}") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            raise ApiError(400, f"body must be a JSON object, got {_json_type(raw)}") from None
        raise ApiError(400, describe_validation(exc)) from None


def _json_type(raw: bytes) -> str:
    try:
        return type(json.loads(raw)).__name__
    except ValueError:
        return "something else"


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
    # The console has its own login (actors/console_auth.py).
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


async def conversation(request: web.Request) -> web.Response:
    """GET /api/conversation/{customer_id}: profile, latest messages, image jobs with their history."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    data = await state.read(profiles.conversation_view, customer_id, state.public_base)
    if data is None:
        raise ApiError(404, f"no conversation with customer {customer_id}")
    return envelope(200, "ok", data)


async def pause(request: web.Request) -> web.Response:
    """POST /api/conversation/{customer_id}/pause: an operator takes over; the AI is silent to this customer."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    empty = not request.content_length and not (await request.read()).strip()
    body = PauseIn() if empty else await parse_body(request, PauseIn)
    minutes = body.minutes if body.minutes is not None else state.settings.TAKEOVER_MINUTES
    t = time.time()
    data = await state.write(takeover.set_pause, customer_id, t + minutes * 60, body.by, body.reason, t)
    if data is None:
        raise ApiError(404, f"no conversation with customer {customer_id}")
    return envelope(200, "已暂停AI回复", data)


async def resume(request: web.Request) -> web.Response:
    """POST /api/conversation/{customer_id}/resume: the AI answers this customer again."""
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    data = await state.write(takeover.set_pause, customer_id, None, "", "", time.time())
    if data is None:
        raise ApiError(404, f"no conversation with customer {customer_id}")
    return envelope(200, "已恢复AI回复", data)


async def job(request: web.Request) -> web.Response:
    """GET /api/jobs/{job_id}: one image job with its attempts, requirement changes, result URL and mails."""
    state = request.app[STATE]
    job_id = request.match_info["job_id"]
    data = await state.read(jobs.job_view, job_id, state.public_base)
    if data is None:
        raise ApiError(404, f"no image job {job_id}")
    return envelope(200, "ok", data)


async def public_file(request: web.Request) -> web.StreamResponse:
    """GET /files/{token}/{name}: a result image or file, at the unguessable URL the customer was sent."""
    row = await request.app[STATE].read(jobs.public_file, request.match_info["token"])
    if row is None or row.name != request.match_info["name"] or not Path(row.path).is_file():
        raise ApiError(404, "no such file")
    return web.FileResponse(row.path, headers={"Content-Type": row.mime, "Cache-Control": "private, max-age=86400"})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


async def list_tasks(request: web.Request) -> web.Response:
    """GET /api/task/list?status=&customer=&type=&page=&page_size=: tasks newest first."""
    state = request.app[STATE]
    status_filter = request.query.get("status") or None
    if status_filter and status_filter not in {s.value for s in TaskStatus}:
        raise ApiError(400, f"status must be one of {', '.join(s.value for s in TaskStatus)}, got {status_filter!r}")
    page = _int_param(request, "page", 1, 1, 1_000_000)
    page_size = _int_param(request, "page_size", 20, 1, PAGE_SIZE_MAX)
    data = await state.read(tasks.list_tasks, state.settings.SHOP_TIMEZONE, status_filter,
                            request.query.get("customer") or None, request.query.get("type") or None, page, page_size)
    return envelope(200, "ok", data)


async def stats(request: web.Request) -> web.Response:
    """GET /api/task/stats: counts by status, priority, trigger type."""
    return envelope(200, "ok", await request.app[STATE].read(tasks.stats))


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


def make_app(state: ApiState) -> web.Application:
    """The aiohttp application with every route of SPEC §1 and /api/event."""
    app = web.Application(middlewares=[errors_in_envelope, api_key], client_max_size=MAX_BODY)
    app[STATE] = state
    app.router.add_post("/api/task/receive", receive)
    app.router.add_post("/api/task/cancel", cancel)
    app.router.add_get("/api/task/status/{task_id}", status)
    app.router.add_get("/api/task/list", list_tasks)
    app.router.add_get("/api/task/stats", stats)
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/event", event)
    app.router.add_get("/api/conversation/{customer_id}", conversation)
    app.router.add_post("/api/conversation/{customer_id}/pause", pause)
    app.router.add_post("/api/conversation/{customer_id}/resume", resume)
    app.router.add_get("/api/jobs/{job_id}", job)
    app.router.add_get("/files/{token}/{name}", public_file)
    metrics_http.install(app, state.name)
    openapi.add_routes(app, keyed=state.settings.TIANWANG_API_KEY is not None, max_body=MAX_BODY, needs_key=needs_key)
    from actors import console_actions, console_auth, console_views  # imported here: they build on this module

    console_auth.register(app)
    console_actions.register(app)
    console_views.register(app)
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
