"""What every module of the web application shares: the state the Ingress actor hands it, the envelope every
answer comes in, the error that becomes one, and how a request body is read.

Writes are validated, group-committed, answered, then posted to the actor, which tells the Scheduler in
batches. Reads query the database directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.redaction import redact
from persistence import tasks
from protocol.messages import HealthReport
from protocol.settings import Settings
from protocol.validation import problems

MAX_BODY = 1024 * 1024
T = TypeVar("T")


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


def found(data: T | None, missing: str) -> T:
    """data, or a 404 in the envelope whose message says what is missing."""
    if data is None:
        raise ApiError(404, missing)
    return data


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
        raise ApiError(400, "; ".join(problems(exc, "body"))) from None


def _json_type(raw: bytes) -> str:
    try:
        return type(json.loads(raw)).__name__
    except ValueError:
        return "something else"


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter name as a whole number between low and high, default when absent."""
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
