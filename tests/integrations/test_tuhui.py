"""The dispatch client against the dispatch stand-in on loopback, and against a server that misbehaves."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from integrations.tuhui import (
    DispatchClient,
    DispatchError,
    DispatchMalformed,
    DispatchRejected,
    DispatchUnavailable,
)
from protocol.dispatch import DispatchQueue, pick_designer, task_name
from standins.dispatch_api import DispatchStandin
from tests.harness import free_port

pytestmark = pytest.mark.timeout(30)

KEY = "tuhui-secret-key-0123"


def with_standin(scenario: Callable[[DispatchStandin, DispatchClient], Awaitable[None]]) -> None:
    """Run ``scenario`` with a started stand-in (key KEY) and a client holding the right key."""
    async def main() -> None:
        async with DispatchStandin(port=free_port(), api_key=KEY) as standin, aiohttp.ClientSession() as session:
            await scenario(standin, DispatchClient(standin.base_url, KEY, session))
    asyncio.run(main())


def test_hand_off_from_creation_to_completion() -> None:
    async def scenario(standin: DispatchStandin, client: DispatchClient) -> None:
        assert await client.online_designers() == ["橘子", "婷婷"]
        task_id = await client.create_task(task_name("customer_123"), "原因:图片含文字\n客户:小明", "h-1")
        assert await client.create_task(task_name("customer_123"), "原因:图片含文字\n客户:小明", "h-1") == task_id
        [task] = standin.tasks()
        assert task["task_name"] == "图片处理-_123" and task["description"].endswith("\n[key:h-1]")
        assert (task["task_type"], task["priority"]) == ("image_process", 2)
        assert [r["idempotency_key"] for r in standin.requests() if r["path"] == "/tasks"] == ["h-1", "h-1"]

        queue = await client.queue()
        assert [t.task_id for t in queue.pending_tasks.tasks] == [task_id]
        assert await client.find_pending_by_key("h-1") == task_id
        assert await client.find_pending_by_key("h-2") is None
        designer = pick_designer(queue, {})
        assert designer == queue.suggestion == "婷婷"

        await client.assign(task_id, designer, "含文字,需人工")
        task = await client.task(task_id)
        assert (task.status, task.assigned_to, task.notes, task.key) == ("assigned", "婷婷", "含文字,需人工", "h-1")
        assert await client.find_pending_by_key("h-1") is None  # assigned: no longer pending

        await client.complete(task_id, "已处理")
        task = await client.task(task_id)
        assert (task.status, task.notes) == ("completed", "已处理") and task.completed_at
    with_standin(scenario)


def test_a_task_is_found_by_its_description_when_the_api_ignored_the_key() -> None:
    async def scenario(standin: DispatchStandin, client: DispatchClient) -> None:
        # What a real API that drops Idempotency-Key leaves behind: no key field, only our tag.
        body = {"task_name": "图片处理-_123", "description": "原因:x\n[key:h-9]"}
        async with aiohttp.ClientSession() as session, \
                session.post(f"{standin.base_url}/tasks", json=body, headers={"X-API-Key": KEY}) as resp:
            assert resp.status == 200
            task_id = (await resp.json())["task_id"]
        assert await client.find_pending_by_key("h-9") == task_id
        assert await client.find_pending_by_key("h-") is None  # the whole tag, not a prefix
    with_standin(scenario)


def test_refusals_are_rejected_and_not_retryable() -> None:
    async def scenario(standin: DispatchStandin, client: DispatchClient) -> None:
        task_id = await client.create_task("图片处理-_123", "原因:x", "h-1")
        standin.set_designers(offline=["橘子"])
        with pytest.raises(DispatchRejected) as caught:
            await client.assign(task_id, "橘子", "")
        assert caught.value.status == 400 and not caught.value.retryable
        assert "designer 橘子 is offline" in str(caught.value)
        with pytest.raises(DispatchRejected) as caught:
            await client.task("no/such id")
        assert caught.value.status == 404 and "/tasks/no%2Fsuch%20id" in str(caught.value)

        async with aiohttp.ClientSession() as session:
            for key in (None, "wrong-key"):
                with pytest.raises(DispatchRejected) as caught:
                    await DispatchClient(standin.base_url, key, session).online_designers()
                assert caught.value.status == 401
                assert "wrong-key" not in str(caught.value)
    with_standin(scenario)


def test_no_designer_online_leaves_nobody_to_pick() -> None:
    async def scenario(standin: DispatchStandin, client: DispatchClient) -> None:
        standin.set_designers(offline=["橘子", "婷婷"])
        queue = await client.queue()
        assert queue.suggestion is None and pick_designer(queue, {}) is None
        assert await client.online_designers() == []
    with_standin(scenario)


# ---------------------------------------------------------------------- a server that misbehaves

class Misbehaving:
    """Answers every path with ``answer`` (status, body); ``sleep_s`` first when set. Echoes the key it got."""

    def __init__(self) -> None:
        self.answer: tuple[int, str] = (200, "{}")
        self.sleep_s = 0.0
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def handle(self, request: web.Request) -> web.Response:
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        status, body = self.answer
        # A careless server quoting the credentials back: the client must not pass them on.
        body = body.replace("$KEY", request.headers.get("X-API-Key", ""))
        return web.Response(status=status, text=body, content_type="application/json")


def with_misbehaving(scenario: Callable[[Misbehaving, DispatchClient], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Misbehaving()
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                await scenario(server, DispatchClient(f"http://127.0.0.1:{server.port}/", KEY, session, timeout_s=0.5))
        finally:
            assert server.runner is not None
            await server.runner.cleanup()
    asyncio.run(main())


def assert_clean(exc: DispatchError) -> None:
    """The key appears nowhere a log or a pickle could carry it."""
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in repr(exc.args)


def test_error_tree_against_a_misbehaving_server() -> None:
    async def scenario(server: Misbehaving, client: DispatchClient) -> None:
        async def fails(call: Callable[[], Awaitable[Any]], kind: type[DispatchError]) -> DispatchError:
            with pytest.raises(kind) as caught:
                await call()
            assert_clean(caught.value)
            return caught.value

        server.answer = (500, '{"error": "database down, key was $KEY"}')
        exc = await fails(client.online_designers, DispatchUnavailable)
        assert isinstance(exc, DispatchUnavailable) and exc.status == 500 and exc.retryable
        assert "HTTP 500: database down, key was ***" in str(exc)

        server.answer = (503, "<html>Service Unavailable</html>")
        assert (await fails(client.queue, DispatchUnavailable)).retryable

        server.answer = (429, '{"error": "slow down"}')
        assert (await fails(client.queue, DispatchUnavailable)).retryable

        server.answer = (403, '{"message": "key $KEY is not allowed"}')
        exc = await fails(lambda: client.assign("ea853bd9", "橘子", ""), DispatchRejected)
        assert isinstance(exc, DispatchRejected) and exc.status == 403 and not exc.retryable
        assert "key *** is not allowed" in str(exc)

        server.answer = (200, '{"success": false, "error": "designer busy"}')
        exc = await fails(lambda: client.complete("ea853bd9", "done"), DispatchRejected)
        assert "designer busy" in str(exc)

        server.answer = (200, "<html>upstream $KEY error")
        exc = await fails(client.queue, DispatchMalformed)
        assert exc.retryable and "not JSON" in str(exc)
        server.answer = (200, '{"pending_tasks": 3, "online_designers": {"designers": ["橘子"]}}')
        assert "pending_tasks" in str(await fails(client.queue, DispatchMalformed))
        server.answer = (200, '{"id": "ea853bd9"}')
        await fails(lambda: client.create_task("图片处理-_123", "x", "h-1"), DispatchMalformed)
        server.answer = (200, '{"designers": ["橘子"]}')
        await fails(client.online_designers, DispatchMalformed)
        server.answer = (200, '{"task_id": "ea853bd9", "status": null}')
        await fails(lambda: client.task("ea853bd9"), DispatchMalformed)

        server.answer, server.sleep_s = (200, "[]"), 3.0
        started = asyncio.get_running_loop().time()
        exc = await fails(client.online_designers, DispatchUnavailable)
        assert asyncio.get_running_loop().time() - started < 2.0
        assert isinstance(exc, DispatchUnavailable) and exc.status is None and "within 0.5 s" in str(exc)
    with_misbehaving(scenario)


def test_extra_fields_and_numbers_are_tolerated() -> None:
    async def scenario(server: Misbehaving, client: DispatchClient) -> None:
        server.answer = (200, '{"task_id": 12345678, "status": "assigned", "assigned_to": "橘子", '
                              '"created_at": 1772186400, "priority_label": "normal", "history": []}')
        task = await client.task("12345678")
        assert (task.task_id, task.status, task.assigned_to, task.created_at) == (
            "12345678", "assigned", "橘子", "1772186400")
        server.answer = (201, '{"task_id": 12345678}')
        assert await client.create_task("图片处理-_123", "x", "h-1") == "12345678"
    with_misbehaving(scenario)


def test_nobody_listening_is_unavailable() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            client = DispatchClient(f"http://127.0.0.1:{free_port()}", KEY, session, timeout_s=0.5)
            with pytest.raises(DispatchUnavailable) as caught:
                await client.create_task("图片处理-_123", "x", "h-1")
        assert caught.value.status is None and caught.value.retryable and "unreachable" in str(caught.value)
        assert_clean(caught.value)
        assert KEY not in repr(client)
    asyncio.run(main())


def test_errors_survive_pickling() -> None:
    for exc in (DispatchUnavailable("x", 503), DispatchRejected("y", 401), DispatchMalformed("z")):
        back = pickle.loads(pickle.dumps(exc))
        assert (type(back), str(back), getattr(back, "status", None)) == (type(exc), str(exc),
                                                                         getattr(exc, "status", None))


# ---------------------------------------------------------------------- pure helpers

def queue(online: list[str], suggestion: str | None) -> DispatchQueue:
    return DispatchQueue.model_validate({"pending_tasks": {"count": 0, "tasks": []},
                                         "online_designers": {"count": len(online), "designers": online},
                                         "suggestion": suggestion})


def test_task_name_uses_the_last_four_characters() -> None:
    assert task_name("customer_123") == "图片处理-_123"
    assert task_name("c1") == "图片处理-c1"


def test_pick_designer() -> None:
    assert pick_designer(queue(["橘子", "婷婷"], "橘子"), {"橘子": 5}) == "橘子"  # the API's suggestion wins
    assert pick_designer(queue(["橘子", "婷婷"], "小王"), {"橘子": 2, "婷婷": 1}) == "婷婷"  # suggestion offline
    assert pick_designer(queue(["橘子", "婷婷"], None), {"婷婷": 1}) == "橘子"  # fewest open tasks
    assert pick_designer(queue(["橘子", "婷婷"], None), {}) == "婷婷"  # a tie goes by name
    assert pick_designer(queue([], "橘子"), {}) is None
