"""Limits on what the IM bridge sends in: an overlong text is stored cut, an oversize frame drops the link.

A real WebSocket server plays the bridge and sends raw frames; the client stores into a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from integrations.im_bridge import BridgeClient
from persistence.db import close_database, open_database
from persistence.models import InboundMessage
from protocol.im import MAX_FRAME_BYTES, MAX_TEXT_CHARS, TRUNCATED_MARK

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def db(tmp_path: Path) -> Iterator[None]:
    open_database(f"sqlite:///{tmp_path}/bridge.db", create=True)
    yield
    close_database()


def frame(msg_id: str, content: Any, kind: str = "text") -> str:
    return json.dumps({"type": "message", "msg_id": msg_id, "customer": {"id": "c1", "name": "小明"}, "kind": kind,
                       "content": content, "ts": "2026-11-29T10:00:00+08:00"}, ensure_ascii=False)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def scenario(caplog: pytest.LogCaptureFixture) -> None:
    acks: list[str] = []
    connections: list[Any] = []

    async def bridge(ws: Any) -> None:
        connections.append(ws)
        reader = asyncio.create_task(read_acks(ws))
        if len(connections) == 1:
            await ws.send(frame("long", "长" * (MAX_TEXT_CHARS * 3)))
            await ws.send(frame("order", {"order_id": "O" * 5000, "amount": 1}, kind="order"))
            await ws.send(frame("short", "你好"))
            await until(lambda: "short" in acks)
            await ws.send("x" * (MAX_FRAME_BYTES + 1))  # one frame over the limit: the client closes the link
        else:
            await ws.send(frame("after", "还在吗"))
        await asyncio.gather(reader, return_exceptions=True)

    async def read_acks(ws: Any) -> None:
        async for raw in ws:
            acks.append(json.loads(raw)["msg_id"])

    async with websockets.serve(bridge, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = BridgeClient(f"ws://127.0.0.1:{port}", lambda item: None)
        runner = asyncio.create_task(client.run())
        try:
            await until(lambda: "after" in acks)
        finally:
            runner.cancel()
    assert acks == ["long", "short", "after"]  # the order with a 5,000-character id is not a real one
    assert client.counts["oversize_frames"] == 1 and client.counts["connects"] == 2
    assert any(f"over the {MAX_FRAME_BYTES}-byte limit" in r.getMessage() for r in caplog.records)


def test_overlong_texts_are_cut_and_an_oversize_frame_only_costs_a_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shop.gateway")
    asyncio.run(scenario(caplog))
    stored = {m.msg_id: json.loads(m.content) for m in InboundMessage.select()}
    assert set(stored) == {"long", "short", "after"}
    assert len(stored["long"]) == MAX_TEXT_CHARS and stored["long"].endswith(TRUNCATED_MARK)
    assert stored["short"] == "你好"
