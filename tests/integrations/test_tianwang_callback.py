"""Tianwang callbacks against a real aiohttp server: order per task, signatures, retry until delivered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from integrations.tianwang_callback import CallbackDeliverer, backoff
from persistence import outbox
from persistence.db import close_database, open_database
from persistence.models import Outbox

pytestmark = pytest.mark.timeout(60)
SECRET = b"s3cret"


@pytest.fixture(autouse=True)
def db(tmp_path: Path) -> Iterator[None]:
    open_database(f"sqlite:///{tmp_path}/cb.db", create=True)
    yield
    close_database()


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 5) for n in range(1, 6)] == [1, 2, 4, 5, 5]


async def _scenario() -> None:
    received: list[tuple[dict, bool]] = []
    failures = {"left": 2}

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=500)
        expected = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        received.append((json.loads(raw), request.headers.get("X-Signature") == expected))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    now = time.time()
    for task in ("A", "B"):
        for n, status in enumerate(["pending", "waiting", "running", "completed"], 1):
            outbox.add(f"cb:{task}:{n}", "callback", task, {"task_id": task, "status": status, "error": None,
                                                             "timestamp": "t"}, now)
    deliverer = CallbackDeliverer(f"http://127.0.0.1:{port}/cb", SECRET, retry_cap_s=0.3)
    job = asyncio.create_task(deliverer.run())
    try:
        deadline = time.monotonic() + 20
        # Delivered is marked after the answer: wait for the marks too, not only for the eighth POST.
        while len(received) < 8 or Outbox.select().where(Outbox.status != "delivered").exists():
            assert time.monotonic() < deadline, f"only {len(received)} callbacks arrived"
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await runner.cleanup()
    for task in ("A", "B"):
        assert [b["status"] for b, _ in received if b["task_id"] == task] == ["pending", "waiting", "running",
                                                                               "completed"]
    assert all(valid for _, valid in received)
    assert Outbox.select().where(Outbox.status != "delivered").count() == 0
    assert deliverer.counts == {"delivered": 8, "failed_tries": 2}


def test_callbacks_in_order_per_task_signed_and_retried() -> None:
    asyncio.run(_scenario())
