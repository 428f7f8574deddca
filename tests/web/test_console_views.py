"""The console's page, static files, thumbnails and live stream (web/console_views.py, console_hub.py): the
ingress's real aiohttp app on a real SQLite file. Root's health answer is played by the test (no actor system).

A change in the database reaches an open stream as a new snapshot within a couple of seconds, and nothing is
pushed while nothing changes; the line is kept alive with comments; a client that leaves stops the checks;
the server stops at once with a stream open; no path escapes web/static/.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from persistence import messages
from persistence.db import close_database, open_database
from persistence.models import ImageJob
from protocol.im import MessageFrame
from protocol.messages import ActorHealth, HealthReport
from protocol.settings import Settings
from tests.harness import photo_png
from web import console_hub, console_views
from web.app import make_app
from web.base import ApiState

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """DATA_DIR with a fresh database (opened as the ingress opens it), closed after the test."""
    (tmp_path / "logs").mkdir()
    open_database(f"sqlite:///{tmp_path}/shop.db", create=True)
    try:
        yield tmp_path
    finally:
        close_database()


Scenario = Callable[[TestClient, ApiState], Awaitable[None]]


def run(data_dir: Path, scenario: Scenario) -> None:
    """Serve the ingress app on a loopback port, Root answering health at once, and run the scenario."""
    state: ApiState

    def post(item: Any) -> None:
        if item[0] == "health":  # what the Ingress actor would ask Root, and Root's answer
            report = HealthReport(request_id=item[1], ok=True, actors=[
                ActorHealth(name="root", kind="root", pid=1, state="running"),
                ActorHealth(name="gateway", kind="gateway", pid=2, state="running", restarts=3)])
            asyncio.get_running_loop().call_soon(state.resolve_health, report)

    state = ApiState(Settings(DATA_DIR=data_dir), post)

    async def main() -> None:
        async with TestClient(TestServer(make_app(state))) as client:
            await scenario(client, state)

    try:
        asyncio.run(main())
    finally:
        state.writer.shutdown()
        state.readers.shutdown()


def customer_says(customer: str, text: str, n: list[int] = [0]) -> None:  # noqa: B006 (a counter)
    n[0] += 1
    frame = MessageFrame(msg_id=f"m{n[0]}", customer={"id": customer, "name": ""}, kind="text", content=text)
    ((item, _),) = messages.store_inbound([frame], time.time())
    messages.handle_customer_messages(customer, [item], time.time())


async def next_event(resp: ClientResponse, timeout: float) -> dict[str, str]:
    """The next server-sent event (comments as {"comment": …}), or TimeoutError."""
    event: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if not line:
                if event:
                    return event
                continue
            field, _, value = line.partition(":")
            event[field or "comment"] = value.removeprefix(" ")


async def next_snapshot(resp: ClientResponse, timeout: float) -> dict[str, Any]:
    while True:
        event = await next_event(resp, timeout)
        if event.get("event") == "snapshot":
            return json.loads(event["data"])


def test_the_page_and_its_files_are_served_with_their_types_and_nothing_else(data_dir: Path) -> None:
    async def scenario(client: TestClient, state: ApiState) -> None:
        page = await client.get("/console")
        assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert 'src="/console/static/console.js"' in await page.text()
        for name, kind in (("console.js", "text/javascript; charset=utf-8"),
                           ("console.css", "text/css; charset=utf-8")):
            resp = await client.get(f"/console/static/{name}")
            assert resp.status == 200 and resp.headers["Content-Type"] == kind, name
        for bad in ("..%2Fpyproject.toml", "%2e%2e%2fREADME.md", "console.html", ".hidden.js", "nope.js",
                    "..%2F..%2Fetc%2Fpasswd"):
            resp = await client.get(f"/console/static/{bad}")
            assert resp.status == 404 and (await resp.json())["code"] == 404, bad

    run(data_dir, scenario)


def test_a_change_reaches_an_open_stream_and_nothing_is_pushed_without_one(data_dir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_hub, "TICK_S", 0.2)

    async def scenario(client: TestClient, state: ApiState) -> None:
        customer_says("amy", "在吗")
        async with client.get("/console/api/stream") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            first = await next_snapshot(resp, 5)
            assert [c["customer_id"] for c in first["conversations"]] == ["amy"]
            assert [a["restarts"] for a in first["actors"]["actors"]] == [0, 3]

            with pytest.raises(TimeoutError):  # ten ticks without a change: no event
                await next_snapshot(resp, 2)
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(state.writer, customer_says, "bob", "有人吗")
            second = await next_snapshot(resp, 5)
            assert [c["customer_id"] for c in second["conversations"]] == ["bob", "amy"]
            assert second["conversations"][0]["last_in"]["text"] == "有人吗"
            assert time.monotonic() - started < 2

    run(data_dir, scenario)


def test_the_line_is_kept_alive_and_a_client_that_leaves_stops_the_checks(data_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_views, "KEEPALIVE_S", 0.3)
    monkeypatch.setattr(console_hub, "TICK_S", 0.1)

    async def scenario(client: TestClient, state: ApiState) -> None:
        hub = client.app[console_views.HUB]
        resp = await client.get("/console/api/stream")
        assert (await next_event(resp, 5)) == {"retry": "3000"}
        await next_snapshot(resp, 5)
        assert (await next_event(resp, 2))["comment"].startswith("keep-alive")
        assert hub.listeners == 1
        resp.close()  # the tab is closed
        async with asyncio.timeout(5):
            while hub.listeners or hub._task is not None:
                await asyncio.sleep(0.05)

    run(data_dir, scenario)


def test_the_server_stops_at_once_with_a_stream_open(data_dir: Path) -> None:
    async def scenario(client: TestClient, state: ApiState) -> None:
        resp = await client.get("/console/api/stream")
        await next_snapshot(resp, 5)
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 3

    run(data_dir, scenario)


def test_thumbnails_of_a_jobs_result_and_photo(data_dir: Path) -> None:
    result, source = data_dir / "r.png", data_dir / "s.png"
    result.write_bytes(photo_png(seed=1, size=(400, 300)))
    source.write_bytes(photo_png(seed=2))
    now = time.time()
    ImageJob.create(job_id="J1", customer_id="amy", state="awaiting_confirm", data="{}", created_at=now,
                    updated_at=now, result_path=str(result), source_path=str(source))
    ImageJob.create(job_id="J2", customer_id="bob", state="pending", data="{}", created_at=now + 1, updated_at=now)

    async def scenario(client: TestClient, state: ApiState) -> None:
        for which in ("result", "source"):
            resp = await client.get(f"/console/api/thumb/J1?which={which}")
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
            assert (await resp.read()).startswith(b"\xff\xd8")
        for path, status in (("J2", 404), ("nope", 404), ("J1?which=../../etc", 400)):
            resp = await client.get(f"/console/api/thumb/{path}")
            assert resp.status == status and (await resp.json())["message"], path
        snap = await (await client.get("/console/api/snapshot")).json()
        assert [j["has_result"] for j in snap["data"]["jobs"]] == [False, True]

    run(data_dir, scenario)


def test_a_stream_ends_on_its_own_so_the_browser_reconnects_through_the_login_guard(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_views, "STREAM_MAX_S", 0.5)

    async def scenario(client: TestClient, state: ApiState) -> None:
        async with client.get("/console/api/stream") as resp:
            await next_snapshot(resp, 5)
            async with asyncio.timeout(3):
                assert await resp.content.read() is not None  # the server closed it: read() returns at EOF
        assert client.app[console_views.HUB].listeners == 0

    run(data_dir, scenario)


def test_an_error_logged_by_any_actor_reaches_the_open_stream(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_hub, "TICK_S", 0.2)
    log = data_dir / "logs" / "shop.log"
    log.write_text("2026-02-26 10:00:00,000 INFO shop.gateway: connected\n", encoding="utf-8")

    async def scenario(client: TestClient, state: ApiState) -> None:
        async with client.get("/console/api/stream") as resp:
            assert (await next_snapshot(resp, 5))["errors"] == []
            with open(log, "a", encoding="utf-8") as f:
                f.write("2026-02-26 10:00:01,000 ERROR shop.dispatch: mail to J1 failed\n")
            errors = (await next_snapshot(resp, 5))["errors"]
            assert [(e["logger"], e["message"]) for e in errors] == [("shop.dispatch", "mail to J1 failed")]

    run(data_dir, scenario)


def test_quiet_conversation_actors_are_one_line_and_troubled_ones_stand_alone() -> None:
    actors = [ActorHealth(name="root", kind="root", pid=1, state="running"),
              *[ActorHealth(name=f"conversation:c{i}", kind="conversation", pid=10 + i, state="running")
                for i in range(150)],
              ActorHealth(name="conversation:bad", kind="conversation", pid=None, state="restarting", restarts=2)]
    rows = console_hub.actor_rows(actors)
    assert [(r["name"], r["state"], r["restarts"]) for r in rows] == [
        ("root", "running", 0), ("conversation:bad", "restarting", 2), ("conversation ×150", "running", 0)]
