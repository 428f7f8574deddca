"""The IM bridge client against the real simulator over a real WebSocket, with a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.im_bridge import BridgeClient
from persistence import outbox
from persistence.db import close_database, open_database
from persistence.models import InboundMessage, Outbox
from protocol.im import MessageKind
from standins.im_bridge import BridgeSimulator, CustomerMessageRequest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def db(tmp_path: Path) -> Iterator[None]:
    open_database(f"sqlite:///{tmp_path}/bridge.db", create=True)
    yield
    close_database()


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _say(msg_id: str | None = None) -> CustomerMessageRequest:
    return CustomerMessageRequest(customer_id="c1", name="小明", kind=MessageKind.TEXT, content="你好", msg_id=msg_id)


async def _scenario() -> None:
    sim = BridgeSimulator()
    await sim.start()
    posted: list[tuple[str, Any]] = []
    client = BridgeClient(sim.ws_url, posted.append)
    runner = asyncio.create_task(client.run())
    try:
        # A message is stored, then acknowledged, then handed on for routing.
        msg_id = await sim.post_customer_message(_say())
        await _until(lambda: sim.stats()["acked"] == 1 and posted)
        row = InboundMessage.get(InboundMessage.msg_id == msg_id)
        assert (row.customer_id, row.customer_name, row.handled) == ("c1", "小明", False)
        assert posted[0][0] == "route" and posted[0][1].msg_id == msg_id

        # The same msg_id again is acknowledged but not routed twice.
        await sim.post_customer_message(_say(msg_id=msg_id))
        await _until(lambda: client.counts["duplicates"] == 1 and sim.stats()["unacked"] == 0)
        assert len(posted) == 1 and InboundMessage.select().count() == 1

        # An outbox send reaches the customer once and settles the row.
        outbox.add("tw:T1:msg", "im_send", "T1", {"send_id": "tw:T1:msg", "customer_id": "c1", "msg_type": 0,
                                                   "content": "您好"}, time.time())
        client.request_flush()
        await _until(lambda: ("settled", "T1") in posted)
        assert [d["content"] for d in sim.deliveries()] == ["您好"]
        assert Outbox.get(Outbox.key == "tw:T1:msg").status == "delivered"

        # A refused send is recorded as failed with the bridge's error.
        sim.fail_sends(1, "customer offline")
        outbox.add("tw:T2:msg", "im_send", "T2", {"send_id": "tw:T2:msg", "customer_id": "c1", "msg_type": 0,
                                                   "content": "again"}, time.time())
        client.request_flush()
        await _until(lambda: ("settled", "T2") in posted)
        failed = Outbox.get(Outbox.key == "tw:T2:msg")
        assert (failed.status, failed.error) == ("failed", "customer offline")

        # The bridge goes away and comes back on the same port: the client reconnects by itself,
        # and a message sent meanwhile is delivered after the reconnect.
        port = sim.ws_port
        await sim.stop()
        outbox.add("tw:T3:msg", "im_send", "T3", {"send_id": "tw:T3:msg", "customer_id": "c1", "msg_type": 0,
                                                   "content": "after reconnect"}, time.time())
        sim = BridgeSimulator(ws_port=port)
        await sim.start()
        await _until(lambda: client.counts["connects"] == 2)
        await _until(lambda: ("settled", "T3") in posted)
        assert [d["content"] for d in sim.deliveries()] == ["after reconnect"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await sim.stop()


def test_store_ack_route_send_settle_and_reconnect() -> None:
    asyncio.run(_scenario())
