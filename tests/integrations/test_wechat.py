"""Staff notifications: the WeChat Work robot client against the recorder stand-in, merging and pacing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.wechat import (
    MAX_CONTENT_BYTES,
    SEPARATOR,
    TRUNCATION_MARKER,
    RateWindow,
    WebhookError,
    merge_notifications,
    post_markdown,
    redact_url,
    truncate_utf8,
)
from standins.webhook_recorder import WebhookRecorder
from tests.harness import REPO, free_port, http

pytestmark = pytest.mark.timeout(30)

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
NOTE = "### 新派单\n> 客户:**小明**(…_123)\n> 原因:图片含文字,需人工处理\n> 设计师:橘子"


def with_recorder(scenario: Callable[[WebhookRecorder, aiohttp.ClientSession], Awaitable[None]],
                  per_minute: int | None = None) -> None:
    """Run ``scenario`` with a started recorder (robot key KEY) and a client session."""
    async def main() -> None:
        async with WebhookRecorder(port=free_port(), key=KEY, per_minute=per_minute) as recorder, \
                aiohttp.ClientSession() as session:
            await scenario(recorder, session)
    asyncio.run(main())


def test_markdown_reaches_the_robot() -> None:
    async def scenario(recorder: WebhookRecorder, session: aiohttp.ClientSession) -> None:
        await post_markdown(session, recorder.url(), NOTE)
        [message] = recorder.messages
        assert message["body"] == {"msgtype": "markdown", "markdown": {"content": NOTE}}
        assert (message["key"], message["errcode"]) == (KEY, 0)
    with_recorder(scenario)


def test_refusal_is_an_error_without_the_key() -> None:
    async def scenario(recorder: WebhookRecorder, session: aiohttp.ClientSession) -> None:
        recorder.set_errcode(93000, count=1)
        with pytest.raises(WebhookError) as caught:
            await post_markdown(session, recorder.url(), NOTE)
        assert caught.value.errcode == 93000 and caught.value.retry_after_s is None
        assert "93000" in caught.value.message and "key=***" in caught.value.message
        assert KEY not in str(caught.value)
        await post_markdown(session, recorder.url(), NOTE)  # count=1: the next one goes through
        assert [m["errcode"] for m in recorder.messages] == [93000, 0]

        with pytest.raises(WebhookError) as caught:
            await post_markdown(session, recorder.url(key="wrong-key"), NOTE)
        assert caught.value.errcode == 93000 and "wrong-key" not in caught.value.message
    with_recorder(scenario)


def test_rate_limited_robot_asks_for_a_minute() -> None:
    async def scenario(recorder: WebhookRecorder, session: aiohttp.ClientSession) -> None:
        for n in range(3):
            await post_markdown(session, recorder.url(), f"{NOTE} #{n}")
        with pytest.raises(WebhookError) as caught:
            await post_markdown(session, recorder.url(), NOTE)
        assert caught.value.errcode == 45009 and caught.value.retry_after_s == 60
        assert len(recorder.accepted()) == 3
    with_recorder(scenario, per_minute=3)


def test_oversized_content_is_truncated_not_refused() -> None:
    async def scenario(recorder: WebhookRecorder, session: aiohttp.ClientSession) -> None:
        await post_markdown(session, recorder.url(), "修图" * 2000)
        [message] = recorder.accepted()
        assert len(message["content"].encode()) <= MAX_CONTENT_BYTES
        assert message["content"].startswith("修图修图") and message["content"].endswith(TRUNCATION_MARKER)
    with_recorder(scenario)


def test_http_errors_non_json_timeouts_and_a_dead_robot_hide_the_key() -> None:
    async def main() -> None:
        async def gateway_page(request: web.Request) -> web.Response:
            return web.Response(text="<html>502 bad gateway</html>")

        release = asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            await release.wait()
            return web.json_response({"errcode": 0})

        async def busy(request: web.Request) -> web.Response:
            return web.json_response({"errcode": -1}, status=429, headers={"Retry-After": "7"})

        app = web.Application()
        app.router.add_post("/html", gateway_page)
        app.router.add_post("/slow", slow)
        app.router.add_post("/busy", busy)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        errors: dict[str, WebhookError] = {}
        try:
            async with aiohttp.ClientSession() as session:
                for name, url, timeout in [("html", f"{base}/html?key={KEY}", 5.0),
                                           ("missing", f"{base}/nowhere?key={KEY}", 5.0),
                                           ("slow", f"{base}/slow?key={KEY}", 0.2),
                                           ("busy", f"{base}/busy?key={KEY}", 5.0),
                                           ("dead", f"http://127.0.0.1:{free_port()}/x?key={KEY}", 5.0)]:
                    with pytest.raises(WebhookError) as caught:
                        await post_markdown(session, url, NOTE, timeout_s=timeout)
                    errors[name] = caught.value
        finally:
            release.set()
            await runner.cleanup()
        assert "non-JSON" in errors["html"].message
        assert "HTTP 404" in errors["missing"].message
        assert "0.2 s" in errors["slow"].message
        assert errors["busy"].retry_after_s == 7
        assert "unreachable" in errors["dead"].message
        for error in errors.values():
            assert KEY not in error.message and "key=***" in error.message
    asyncio.run(main())


def test_redact_url_hides_every_query_value() -> None:
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}&debug=1"
    assert redact_url(url) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=***"
    assert redact_url("http://robot.local/send") == "http://robot.local/send"


def test_control_api_and_command_line() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.webhook_recorder", "--port", str(port), "--key", KEY],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner
        url = f"http://127.0.0.1:{port}"
        assert http("POST", f"{url}/_control/errcode", {"errcode": 45009, "count": 1})[0] == 200

        async def post_two() -> WebhookError:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(WebhookError) as caught:
                    await post_markdown(session, f"{url}/cgi-bin/webhook/send?key={KEY}", "第一条")
                await post_markdown(session, f"{url}/cgi-bin/webhook/send?key={KEY}", "第二条")
                return caught.value
        assert asyncio.run(post_two()).retry_after_s == 60

        status, listed = http("GET", f"{url}/_control/messages")
        assert status == 200 and [(m["content"], m["errcode"]) for m in listed] == [("第一条", 45009), ("第二条", 0)]
        assert [m["content"] for m in http("GET", f"{url}/_control/messages?accepted=1")[1]] == ["第二条"]
        assert http("DELETE", f"{url}/_control/messages")[0] == 200
        assert http("GET", f"{url}/_control/messages")[1] == []
        assert http("POST", f"{url}/_control/errcode", {"errcode": "many"})[0] == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


# ---------------------------------------------------------------- merging bursts

notes = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=300)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(notes | st.text("ab修图😀 ", min_size=200, max_size=1500), max_size=40),
       limit=st.integers(min_value=60, max_value=MAX_CONTENT_BYTES))
def test_merge_keeps_every_item_in_order_within_the_limit(items: list[str], limit: int) -> None:
    messages = merge_notifications(items, limit_bytes=limit)
    kept = [item for item in items if item.strip()]

    assert all(0 < len(m.encode()) <= limit for m in messages)
    pieces = [piece for m in messages for piece in m.split(SEPARATOR)]
    assert len(pieces) == len(kept)  # none dropped, none split
    for item, piece in zip(kept, pieces, strict=True):
        if len(item.encode()) <= limit:
            assert piece == item
        else:
            assert piece.endswith(TRUNCATION_MARKER)
            shown = piece.removesuffix(TRUNCATION_MARKER)
            assert item.startswith(shown) and len(piece.encode()) > limit - 4  # at most one character lost
    for this, following in zip(messages, messages[1:], strict=False):
        # As few messages as possible: the next one's first item would not have fitted here.
        first_next = following.split(SEPARATOR)[0]
        assert len((this + SEPARATOR + first_next).encode()) > limit


def test_a_burst_of_dispatch_notes_fits_in_few_messages() -> None:
    burst = [f"{NOTE}\n> 订单:{n:04d}" for n in range(40)]
    messages = merge_notifications(burst)
    size = len(burst[0].encode()) + len(SEPARATOR)
    assert len(messages) == -(-40 * size // (MAX_CONTENT_BYTES + len(SEPARATOR)))
    assert SEPARATOR.join(messages) == SEPARATOR.join(burst)
    assert merge_notifications([]) == [] and merge_notifications(["", "  "]) == []


def test_truncate_cuts_on_a_character_boundary() -> None:
    assert truncate_utf8("短消息", 100) == "短消息"
    cut = truncate_utf8("图" * 100, 40)
    assert cut.endswith(TRUNCATION_MARKER) and len(cut.encode()) <= 40
    with pytest.raises(ValueError):
        truncate_utf8("x" * 100, 5)


# ---------------------------------------------------------------- pacing

def test_rate_window_allows_twenty_a_minute() -> None:
    window = RateWindow()
    assert all(window.allow(float(t)) for t in range(20))
    assert not window.allow(19.5)
    assert window.wait_s(19.5) == pytest.approx(40.5)
    assert window.wait_s(59.0) == pytest.approx(1.0)
    assert window.allow(60.0)  # the send at t=0 has left the window
    assert not window.allow(60.5) and window.wait_s(60.5) == pytest.approx(0.5)


def test_rate_window_refusals_do_not_count() -> None:
    window = RateWindow(per_minute=2)
    assert window.wait_s(0.0) == 0.0
    assert window.allow(0.0) and window.allow(1.0)
    for t in range(2, 60):
        assert not window.allow(float(t))
    assert window.allow(60.0) and not window.allow(60.0) and window.allow(61.0)
    with pytest.raises(ValueError):
        RateWindow(per_minute=0)

