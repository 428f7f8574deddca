"""Designer dispatch (图绘派单) API client over aiohttp (SPEC §4).

The key travels in ``X-API-Key``; every call has its own ``timeout_s`` (10 s by default). Task creation
sends ``Idempotency-Key`` and ends the description with ``[key:<key>]``, so that a retry after a lost
answer can find the task (:meth:`DispatchClient.find_pending_by_key`) even on an API that ignores the
header.

Errors (all :class:`DispatchError`; ``retryable`` says whether trying again can help)::

    DispatchError
    ├── DispatchUnavailable(status)   connection refused / reset, no answer within timeout_s,
    │                                 5xx or 429 (status None when there was no answer)      retryable
    ├── DispatchRejected(status)      any other 4xx (401/403 a bad or missing key), or a 2xx
    │                                 saying ``"success": false``                           not retryable
    └── DispatchMalformed             an answer that is not JSON or not of the documented shape  retryable

Messages never contain the API key.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from integrations.http_limits import AnswerTooLarge, read_text_capped
from protocol.dispatch import DEFAULT_PRIORITY, TASK_TYPE, DispatchQueue, DispatchTask, key_marker

__all__ = [
    "DispatchClient",
    "DispatchError",
    "DispatchMalformed",
    "DispatchRejected",
    "DispatchUnavailable",
]

_M = TypeVar("_M", bound=BaseModel)

KEY_HEADER = "X-API-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_SNIPPET = 200  # characters of an error body worth quoting


class DispatchError(Exception):
    """Base of every error this client raises."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *extra: object) -> None:
        # Extra fields travel in args so the error pickles across processes.
        super().__init__(message, *extra)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DispatchUnavailable(DispatchError):
    """No usable answer now: unreachable, timed out, 5xx or 429; ``status`` is None without an answer."""

    retryable = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.status = status


class DispatchRejected(DispatchError):
    """The API refused the call (4xx, or ``"success": false``); the same call will be refused again."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status)
        self.status = status


class DispatchMalformed(DispatchError):
    """An answer that is not JSON or not of the shape SPEC §4 documents."""

    retryable = True


class DispatchClient:
    """Async client of the dispatch API; the caller owns ``session`` (one per event loop)."""

    def __init__(self, base_url: str, api_key: str | None, session: aiohttp.ClientSession,
                 timeout_s: float = 10.0) -> None:
        """``base_url`` like ``http://host:port`` (a path prefix is kept); ``api_key`` None sends no key."""
        self.base_url = base_url.rstrip("/")
        self._key = api_key or None
        self._session = session
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"DispatchClient({self.base_url!r}, api_key={'***' if self._key else None})"

    async def online_designers(self) -> list[str]:
        """``GET /online/designers``: the names of the designers online now."""
        answer = await self._call("GET", "/online/designers")
        if not isinstance(answer, list) or not all(isinstance(name, str) for name in answer):
            raise DispatchMalformed(f"GET /online/designers answered {_kind(answer)}, not a list of names")
        return answer

    async def queue(self) -> DispatchQueue:
        """``GET /dispatch/queue``: pending tasks, online designers and the API's suggestion."""
        return self._parse(DispatchQueue, "GET /dispatch/queue", await self._call("GET", "/dispatch/queue"))

    async def create_task(self, name: str, description: str, key: str) -> str:
        """``POST /tasks`` under ``Idempotency-Key: key``; the new (or, for a known key, the same) task id.

        The description is made to end with ``[key:<key>]`` for :meth:`find_pending_by_key`.
        """
        marker = key_marker(key)
        if not description.rstrip().endswith(marker):
            description = f"{description.rstrip()}\n{marker}" if description.strip() else marker
        body = {"task_name": name, "description": description, "task_type": TASK_TYPE, "priority": DEFAULT_PRIORITY}
        answer = await self._call("POST", "/tasks", body, {IDEMPOTENCY_HEADER: key})
        task_id = answer.get("task_id") if isinstance(answer, dict) else None
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            raise DispatchMalformed(f"POST /tasks answered {_kind(answer)} without a task_id")
        return task_id

    async def assign(self, task_id: str, designer: str, notes: str) -> None:
        """``POST /tasks/{id}/assign``: give the task to ``designer``; DispatchRejected if they are offline."""
        await self._call("POST", f"/tasks/{_segment(task_id)}/assign", {"designer_name": designer, "notes": notes})

    async def task(self, task_id: str) -> DispatchTask:
        """``GET /tasks/{id}``: the task's status, designer and notes."""
        path = f"/tasks/{_segment(task_id)}"
        return self._parse(DispatchTask, f"GET {path}", await self._call("GET", path))

    async def complete(self, task_id: str, notes: str) -> None:
        """``POST /tasks/{id}/complete``: mark the task done with the designer's notes."""
        await self._call("POST", f"/tasks/{_segment(task_id)}/complete", {"notes": notes})

    async def find_pending_by_key(self, key: str) -> str | None:
        """The id of a pending task created under ``key`` (its key field or its description's tag), else None."""
        marker = key_marker(key)
        for task in (await self.queue()).pending_tasks.tasks:
            if task.key == key or marker in task.description:
                return task.task_id
        return None

    # ------------------------------------------------------------------ transport

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None) -> Any:
        """One request; the parsed JSON answer of a 2xx, else the matching DispatchError."""
        sent = dict(headers or {})
        if self._key is not None:
            sent[KEY_HEADER] = self._key
        what = f"{method} {path}"
        try:
            async with self._session.request(method, self.base_url + path, json=body, headers=sent,
                                             timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                status = resp.status
                text = await read_text_capped(resp)
        except AnswerTooLarge as exc:
            raise DispatchMalformed(f"{what}: {exc}") from None
        except TimeoutError:
            raise DispatchUnavailable(f"{what}: no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise DispatchUnavailable(self._scrub(f"{what}: unreachable: {type(exc).__name__}: {exc}")) from None
        if status >= 500 or status == 429:
            raise DispatchUnavailable(self._scrub(f"{what}: HTTP {status}: {_reason(text)}"), status)
        if 400 <= status < 500:
            raise DispatchRejected(self._scrub(f"{what}: HTTP {status}: {_reason(text)}"), status)
        if not 200 <= status < 300:
            raise DispatchMalformed(f"{what}: unexpected HTTP {status}")
        try:
            answer = json.loads(text)
        except ValueError:
            raise DispatchMalformed(self._scrub(f"{what}: answer is not JSON: {text[:_SNIPPET]!r}")) from None
        if isinstance(answer, dict) and answer.get("success") is False:
            raise DispatchRejected(self._scrub(f"{what}: refused: {_reason(text)}"), status)
        return answer

    def _parse(self, model: type[_M], what: str, answer: Any) -> _M:
        try:
            return model.model_validate(answer)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "answer"
            raise DispatchMalformed(self._scrub(f"{what}: off-shape answer ({exc.error_count()} errors; "
                                                f"{where}: {first['msg']})")) from None

    def _scrub(self, text: str) -> str:
        """Answers and library errors may quote the key (a server echoing it back); take it out."""
        return text.replace(self._key, "***") if self._key else text


def _segment(value: str) -> str:
    """A path segment: an id is data, never extra path."""
    return quote(value, safe="")


def _reason(text: str) -> str:
    """The error message of a JSON error answer, else the start of the body."""
    try:
        answer = json.loads(text)
    except ValueError:
        return repr(text[:_SNIPPET])
    if isinstance(answer, dict):
        for field in ("error", "message", "detail", "msg"):
            if isinstance(answer.get(field), str):
                return answer[field][:_SNIPPET]
    return text[:_SNIPPET]


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
