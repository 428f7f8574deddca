"""The IM bridge simulator (SPEC §5) driven by a real websockets client and a real aiohttp client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.im import MessageFrame, inbound_frame
from standins.im_bridge import BridgeSimulator

RECV_TIMEOUT_S = 5.0


@dataclass
class Harness:
    """A started simulator plus an HTTP session on its control API."""

    sim: BridgeSimulator
    http: aiohttp.ClientSession

    async def say(self, customer_id: str = "customer_1", content: Any = "你好", **extra: Any) -> str:
        """Post a customer message through the control API and return its msg_id."""
        body = {"customer_id": customer_id, "kind": "text", "content": content, **extra}
        async with self.http.post("/customer/message", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["msg_id"]

    async def get(self, path: str) -> Any:
        """GET a JSON answer from the control API."""
        async with self.http.get(path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    def connect(self) -> Any:
        """A websockets client connection to the simulator (async context manager)."""
        return connect(self.sim.ws_url, open_timeout=RECV_TIMEOUT_S)


@asynccontextmanager
async def bridge(**kwargs: Any) -> AsyncIterator[Harness]:
    """Start a simulator on free ports; always stop it, whatever the test did."""
    sim = BridgeSimulator(**kwargs)
    await sim.start()
    try:
        async with aiohttp.ClientSession(base_url=sim.http_url) as http:
            yield Harness(sim, http)
    finally:
        await sim.stop()


def run(scenario: Callable[..., Awaitable[None]], **kwargs: Any) -> None:
    """Run one async scenario against a fresh simulator (pytest-asyncio is not used here)."""

    async def main() -> None:
        async with bridge(**kwargs) as h:
            await scenario(h)

    asyncio.run(main())


async def recv_json(ws: ClientConnection, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
    """The next frame from the bridge, decoded."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def assert_silent(ws: ClientConnection, seconds: float = 0.5) -> None:
    """Fail if the bridge sends anything within ``seconds``."""
    with pytest.raises(TimeoutError):
        frame = await asyncio.wait_for(ws.recv(), seconds)
        pytest.fail(f"unexpected frame {frame}")


def send_frame(send_id: str, content: str = "您好，在的", customer_id: str = "customer_1") -> str:
    """A system → bridge ``send`` frame as text."""
    return json.dumps(
        {
            "type": "send",
            "send_id": send_id,
            "acc_id": "shop_001",
            "acc_type": "AliWorkbench",
            "customer_id": customer_id,
            "msg_type": 0,
            "content": content,
        }
    )


@pytest.mark.timeout(30)
def test_customer_message_reaches_connected_client() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            msg_id = await h.say("customer_123", "在吗", name="小明")
            frame = inbound_frame.validate_python(await recv_json(ws))
        assert isinstance(frame, MessageFrame)
        assert frame.msg_id == msg_id == "sim-1"
        assert (frame.customer.id, frame.customer.name) == ("customer_123", "小明")
        assert (frame.kind, frame.content) == ("text", "在吗")
        assert (frame.acc_id, frame.acc_type) == ("shop_001", "AliWorkbench")
        assert frame.ts.endswith("+08:00")

    run(scenario)


@pytest.mark.timeout(30)
def test_order_message_and_given_msg_id() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            content = {"order_id": "T123", "amount": 30}
            msg_id = await h.say(kind="payment", content=content, msg_id="m-1")
            frame = await recv_json(ws)
        assert msg_id == "m-1"
        assert (frame["msg_id"], frame["kind"], frame["content"]) == ("m-1", "payment", content)

    run(scenario)


@pytest.mark.timeout(30)
def test_unacked_messages_are_resent_in_order_after_reconnect() -> None:
    async def scenario(h: Harness) -> None:
        first = await h.say(content="one")  # queued while nobody is connected
        async with h.connect() as ws:
            assert (await recv_json(ws))["msg_id"] == first
            second = await h.say(content="two")
            assert (await recv_json(ws))["msg_id"] == second
        async with h.connect() as ws:
            replayed = [(await recv_json(ws))["msg_id"] for _ in range(2)]
        assert replayed == [first, second]
        stats = await h.get("/stats")
        assert (stats["unacked"], stats["acked"], stats["connections"]) == (2, 0, 2)

    run(scenario)


@pytest.mark.timeout(30)
def test_acked_message_is_not_resent() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            msg_id = await h.say()
            await recv_json(ws)
            await ws.send(json.dumps({"type": "ack", "msg_id": msg_id}))
            await assert_silent(ws, 1.0)  # no periodic re-send either
        async with h.connect() as ws:
            await assert_silent(ws)
        stats = await h.get("/stats")
        assert (stats["unacked"], stats["acked"]) == (0, 1)

    run(scenario, resend_after=0.5)


@pytest.mark.timeout(30)
def test_unacked_message_is_resent_while_connected() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            msg_id = await h.say()
            assert (await recv_json(ws))["msg_id"] == msg_id
            assert (await recv_json(ws, timeout=3))["msg_id"] == msg_id
            await ws.send(json.dumps({"type": "ack", "msg_id": msg_id}))
            # A re-send may already be on the wire when the ack lands; after that, silence.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
            await assert_silent(ws, 1.0)
        stats = await h.get("/stats")
        assert stats["resends"] >= 1 and stats["unacked"] == 0

    run(scenario, resend_after=0.3)


@pytest.mark.timeout(30)
def test_send_is_delivered_once_and_answered_sent() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            await ws.send(send_frame("s-1", "您好，在的", "customer_1"))
            assert await recv_json(ws) == {"type": "sent", "send_id": "s-1"}
            await ws.send(send_frame("s-2", "other", "customer_2"))
            await recv_json(ws)
        mine = await h.get("/deliveries?customer_id=customer_1")
        assert len(mine) == 1
        assert {k: mine[0][k] for k in ("send_id", "customer_id", "acc_id", "msg_type", "content")} == {
            "send_id": "s-1",
            "customer_id": "customer_1",
            "acc_id": "shop_001",
            "msg_type": 0,
            "content": "您好，在的",
        }
        assert mine[0]["at"].endswith("+08:00")
        assert [d["send_id"] for d in await h.get("/deliveries")] == ["s-1", "s-2"]

    run(scenario)


@pytest.mark.timeout(30)
def test_repeated_send_id_is_confirmed_but_not_delivered_again() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            await ws.send(send_frame("s-1"))
            assert await recv_json(ws) == {"type": "sent", "send_id": "s-1"}
        async with h.connect() as ws:  # the system retries after a reconnect
            await ws.send(send_frame("s-1"))
            assert await recv_json(ws) == {"type": "sent", "send_id": "s-1"}
        assert len(await h.get("/deliveries")) == 1
        stats = await h.get("/stats")
        assert (stats["deliveries"], stats["duplicate_sends"], stats["send_frames"]) == (1, 1, 2)

    run(scenario)


@pytest.mark.timeout(30)
def test_fail_sends_then_retry_succeeds() -> None:
    async def scenario(h: Harness) -> None:
        async with h.http.post("/fail_sends", json={"count": 1, "error": "customer offline"}) as resp:
            assert resp.status == 200
        async with h.connect() as ws:
            await ws.send(send_frame("s-1"))
            assert await recv_json(ws) == {
                "type": "send_failed",
                "send_id": "s-1",
                "error": "customer offline",
            }
            assert await h.get("/deliveries") == []
            await ws.send(send_frame("s-1"))
            assert await recv_json(ws) == {"type": "sent", "send_id": "s-1"}
        assert [d["send_id"] for d in await h.get("/deliveries")] == ["s-1"]
        stats = await h.get("/stats")
        assert (stats["failed_sends"], stats["send_frames"], stats["duplicate_sends"]) == (1, 2, 0)

    run(scenario)


@pytest.mark.timeout(30)
def test_bad_control_input_is_400() -> None:
    bad_messages: list[Any] = [
        {"kind": "text", "content": "hi"},  # no customer_id
        {"customer_id": "", "kind": "text", "content": "hi"},
        {"customer_id": "c", "kind": "voice", "content": "hi"},
        {"customer_id": "c", "kind": "text", "content": ""},
        {"customer_id": "c", "kind": "text", "content": {"x": 1}},
        {"customer_id": "c", "kind": "order", "content": "T1"},
        {"customer_id": "c", "kind": "order", "content": {"order_id": "T1"}},
        {"customer_id": "c", "kind": "payment", "content": {"order_id": "T1", "amount": "30"}},
        {"customer_id": "c", "kind": "text", "content": "hi", "customer": "typo"},
        ["not", "an", "object"],
    ]

    async def scenario(h: Harness) -> None:
        for body in bad_messages:
            async with h.http.post("/customer/message", json=body) as resp:
                assert resp.status == 400, body
                assert (await resp.json())["error"], body
        async with h.http.post("/customer/message", data=b"{not json") as resp:
            assert resp.status == 400
        for body in ({"count": -1}, {"count": "2"}, {}):
            async with h.http.post("/fail_sends", json=body) as resp:
                assert resp.status == 400, body
        msg_id = await h.say(msg_id="m-1")
        async with h.http.post(
            "/customer/message", json={"customer_id": "c", "kind": "text", "content": "x", "msg_id": msg_id}
        ) as resp:
            assert resp.status == 409  # that msg_id still waits for an ack
        assert (await h.get("/stats"))["unacked"] == 1

    run(scenario)


@pytest.mark.timeout(30)
def test_record_file_has_every_frame(tmp_path: Path) -> None:
    record = tmp_path / "frames" / "bridge.jsonl"

    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            msg_id = await h.say()
            await recv_json(ws)
            await ws.send(json.dumps({"type": "ack", "msg_id": msg_id}))
            await ws.send("{broken")
            await ws.send(json.dumps({"type": "send", "send_id": "s-x"}))  # missing fields
            await ws.send(send_frame("s-1"))
            await recv_json(ws)
        lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
        assert [(e["dir"], e["frame"].get("type")) for e in lines] == [
            ("out", "message"),
            ("in", "ack"),
            ("in", None),
            ("in", "send"),
            ("in", "send"),
            ("out", "sent"),
        ]
        assert all(e["at"].endswith("+08:00") for e in lines)
        assert [bool(e.get("error")) for e in lines] == [False, False, True, True, False, False]
        assert await h.get("/frames") == lines
        stats = await h.get("/stats")
        assert (stats["errors"], stats["send_frames"], stats["deliveries"]) == (2, 1, 1)

    run(scenario, record_path=record)


@pytest.mark.timeout(30)
def test_new_connection_replaces_the_old_one() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as old, h.connect() as new:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), RECV_TIMEOUT_S)
            assert old.close_code == 4000
            msg_id = await h.say()
            assert (await recv_json(new))["msg_id"] == msg_id
            stats = await h.get("/stats")
            assert (stats["connected"], stats["connections"]) == (True, 2)
        await asyncio.sleep(0.1)
        assert (await h.get("/stats"))["connected"] is False

    run(scenario)


@pytest.mark.timeout(30)
def test_browser_page_sends_as_customer_and_lists_deliveries() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            form = {"customer_id": "web 1", "name": "", "text": "<b>hi</b>"}
            async with h.http.post("/", data=form) as resp:
                assert resp.status == 200  # followed the redirect back to the page
            frame = await recv_json(ws)
            assert (frame["customer"]["id"], frame["content"]) == ("web 1", "<b>hi</b>")
            await ws.send(send_frame("s-1", "reply <script>", customer_id="web 1"))
            await recv_json(ws)
        async with h.http.get("/", params={"customer_id": "web 1"}) as resp:
            page = await resp.text()
        assert resp.content_type == "text/html"
        assert "reply &lt;script&gt;" in page and "<script>" not in page
        async with h.http.post("/", data={"customer_id": "c", "text": ""}) as resp:
            assert resp.status == 400

    run(scenario)


@pytest.mark.timeout(30)
def test_cli_prints_urls_and_exits_on_sigterm(tmp_path: Path) -> None:
    cwd = Path(__file__).resolve().parents[2]  # the project root, where `protocol` is importable
    stderr = tmp_path / "stderr.txt"
    record = tmp_path / "record.jsonl"
    command = [sys.executable, "-m", "standins.im_bridge", "--ws-port", "0", "--http-port", "0"]
    with (
        stderr.open("w") as err,
        subprocess.Popen(
            [*command, "--record", str(record)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "ws://127.0.0.1:" in line and "http://127.0.0.1:" in line, line + stderr.read_text()
            ws_url = next(word for word in line.split() if word.startswith("ws://"))
            http_url = line.split()[-1]

            async def check() -> None:
                async with aiohttp.ClientSession(base_url=http_url) as http, connect(ws_url) as ws:
                    body = {"customer_id": "c", "kind": "text", "content": "hi"}
                    async with http.post("/customer/message", json=body) as resp:
                        assert resp.status == 200
                    assert (await recv_json(ws))["content"] == "hi"

            asyncio.run(check())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, stderr.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert json.loads(record.read_text(encoding="utf-8").splitlines()[0])["frame"]["content"] == "hi"
