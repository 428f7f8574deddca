"""Answers of outside servers are read up to a limit: Gemini, the dispatch API, the WeChat robot, callbacks.

Each client talks to a real server that sends back a body just over the limit, with and without a
Content-Length; the client stops reading and says so, and a normal answer still works.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from integrations.gemini import AnswerTooLarge, GeminiClient
from integrations.http_limits import MAX_ANSWER_BYTES, read_capped
from integrations.tuhui import DispatchClient, DispatchMalformed
from integrations.wechat import WebhookError, post_markdown
from tests.harness import LoopbackServer

pytestmark = pytest.mark.timeout(60)

BIG = MAX_ANSWER_BYTES + 1000


class Flood(LoopbackServer):
    """Answers every request with `size` bytes of JSON-looking text, chunked or with a Content-Length."""

    def __init__(self) -> None:
        super().__init__()
        self.size, self.chunked, self.sent = BIG, True, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        body = b'{"errcode": 0, "pad": "' + b"x" * max(0, self.size - 26) + b'"}'
        if not self.chunked:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for i in range(0, len(body), 64 * 1024):
                await resp.write(body[i:i + 64 * 1024])
                self.sent = i + 64 * 1024
        except ConnectionError:
            pass  # the client stopped reading: that is the point
        return resp


@pytest.fixture
def flood() -> Iterator[Flood]:
    with Flood() as server:
        yield server


@pytest.mark.parametrize("chunked", [True, False])
def test_gemini_stops_reading_an_answer_over_its_limit(flood: Flood, chunked: bool) -> None:
    flood.chunked, flood.size = chunked, 3 * 1024 * 1024
    with GeminiClient("k" * 20, flood.url, "img", "txt", timeout_s=10, max_answer_bytes=1024 * 1024) as gemini, \
            pytest.raises(AnswerTooLarge, match="over the 1048576-byte limit"):
        gemini.detect_text(b"\x89PNG fake", "image/png")
    assert not AnswerTooLarge.retryable  # asking again would read the same flood


def run(coro_fn: object) -> object:
    async def main() -> object:
        async with aiohttp.ClientSession() as session:
            return await coro_fn(session)  # type: ignore[operator]

    return asyncio.run(main())


@pytest.mark.parametrize("chunked", [True, False])
def test_the_dispatch_client_refuses_an_oversize_answer(flood: Flood, chunked: bool) -> None:
    flood.chunked = chunked
    with pytest.raises(DispatchMalformed, match=f"over the {MAX_ANSWER_BYTES}-byte limit"):
        run(lambda s: DispatchClient(flood.url, "key-0123456789", s).online_designers())


def test_the_wechat_robot_answer_is_capped(flood: Flood) -> None:
    with pytest.raises(WebhookError, match=f"over the {MAX_ANSWER_BYTES}-byte limit"):
        run(lambda s: post_markdown(s, f"{flood.url}/cgi-bin/webhook/send?key=robot-key-0123", "hello"))


def test_a_normal_answer_is_read_whole(flood: Flood) -> None:
    flood.size = 1000

    async def fetch(session: aiohttp.ClientSession) -> bytes:
        async with session.get(flood.url) as resp:
            return await read_capped(resp)

    assert json.loads(run(fetch))["errcode"] == 0  # type: ignore[arg-type]
    run(lambda s: post_markdown(s, f"{flood.url}/cgi-bin/webhook/send?key=robot-key-0123", "hello"))
