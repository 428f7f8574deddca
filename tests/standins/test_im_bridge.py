"""The IM bridge simulator (SPEC §5) driven by a real websockets client and a real aiohttp client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.im import MessageFrame, inbound_frame
from standins.im_bridge import BridgeSimulator

RECV_TIMEOUT_S = 5.0


def image_bytes(image_format: str, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small real image file made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, image_format)
    return buffer.getvalue()


PNG = image_bytes("PNG")


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
        assert frame.msg_id == msg_id and msg_id.startswith("sim-") and msg_id.endswith("-1")
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
    uploads = tmp_path / "uploads"
    command = [sys.executable, "-m", "standins.im_bridge", "--ws-port", "0", "--http-port", "0"]
    command += ["--uploads", str(uploads)]
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

            async def check() -> str:
                async with aiohttp.ClientSession(base_url=http_url) as http, connect(ws_url) as ws:
                    body = {"customer_id": "c", "kind": "text", "content": "hi"}
                    async with http.post("/customer/message", json=body) as resp:
                        assert resp.status == 200
                    assert (await recv_json(ws))["content"] == "hi"
                    headers = {"Content-Type": "image/png"}
                    params = {"customer_id": "c"}
                    async with http.post("/customer/photo", params=params, data=PNG, headers=headers) as resp:
                        assert resp.status == 200, await resp.text()
                        url = (await resp.json())["url"]
                    assert (await recv_json(ws))["content"] == url
                    return url

            url = asyncio.run(check())
            assert (uploads / url.rsplit("/", 1)[1]).read_bytes() == PNG
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, stderr.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert json.loads(record.read_text(encoding="utf-8").splitlines()[0])["frame"]["content"] == "hi"


def photo_form(data: bytes, customer_id: str | None = "customer_9", **fields: str) -> aiohttp.FormData:
    """A multipart form as a browser's file picker sends it."""
    form = aiohttp.FormData()
    if customer_id is not None:
        form.add_field("customer_id", customer_id)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename="photo.png", content_type="image/png")
    return form


async def post_json(h: Harness, path: str, body: Any, status: int = 200) -> Any:
    """POST JSON to the control API, check the status, return the JSON answer."""
    async with h.http.post(path, json=body) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


def shop_send(send_id: str, customer_id: str, msg_type: int, content: str) -> str:
    """A system → bridge ``send`` frame of any msg_type."""
    frame = json.loads(send_frame(send_id, content, customer_id))
    return json.dumps({**frame, "msg_type": msg_type})


@pytest.mark.timeout(30)
def test_photo_upload_reaches_client_and_its_url_serves_the_same_bytes(tmp_path: Path) -> None:
    jpeg = image_bytes("JPEG")

    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            async with h.http.post("/customer/photo", data=photo_form(PNG, name="小红")) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            frame = inbound_frame.validate_python(await recv_json(ws))
            headers = {"Content-Type": "image/jpeg"}
            params = {"customer_id": "customer_9"}
            async with h.http.post("/customer/photo", params=params, data=jpeg, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                raw_answer = await resp.json()
            raw_frame = await recv_json(ws)
        assert isinstance(frame, MessageFrame)
        assert (frame.msg_id, frame.kind, frame.content) == (answer["msg_id"], "image", answer["url"])
        assert (frame.customer.id, frame.customer.name) == ("customer_9", "小红")
        assert answer["url"].startswith(f"{h.sim.http_url}/uploads/") and answer["url"].endswith(".png")
        assert (raw_frame["kind"], raw_frame["content"]) == ("image", raw_answer["url"])
        assert raw_answer["url"].endswith(".jpg")
        async with aiohttp.ClientSession() as browser:
            expected = ((answer["url"], PNG, "image/png"), (raw_answer["url"], jpeg, "image/jpeg"))
            for url, content, content_type in expected:
                async with browser.get(url) as resp:
                    assert (resp.status, resp.content_type) == (200, content_type)
                    assert await resp.read() == content
        names = {url.rsplit("/", 1)[1] for url in (answer["url"], raw_answer["url"])}
        assert {p.name for p in tmp_path.iterdir()} == names  # the --uploads folder, nothing else
        for path in ("/uploads/nothing.png", "/uploads/..%2Fsecret.png", f"/uploads/{'0' * 32}.png"):
            async with h.http.get(path) as resp:
                assert resp.status == 404, path

    run(scenario, uploads_dir=tmp_path)


@pytest.mark.timeout(30)
def test_default_uploads_folder_is_temporary() -> None:
    async def main() -> None:
        async with bridge() as h:
            folder = h.sim.uploads_dir
            assert folder is not None and folder.is_dir()
            async with h.http.post("/customer/photo", data=photo_form(PNG)) as resp:
                assert resp.status == 200
            assert len(list(folder.iterdir())) == 1
        assert not folder.exists()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_photo_upload_refusals_say_what_is_wrong() -> None:
    async def expect(h: Harness, status: int, words: str, **request: Any) -> None:
        async with h.http.post("/customer/photo", **request) as resp:
            assert resp.status == status, await resp.text()
            assert words in (await resp.json())["error"]

    async def scenario(h: Harness) -> None:
        await expect(h, 400, "not an image", data=photo_form(b"%PDF-1.4 hello, not a picture"))
        await expect(h, 400, "empty", data=photo_form(b""))
        await expect(h, 400, "damaged", data=photo_form(PNG[:60]))
        await expect(h, 400, "customer_id", data=photo_form(PNG, customer_id=None))
        no_file = aiohttp.FormData({"customer_id": "c"}, default_to_multipart=True)
        await expect(h, 400, "'file'", data=no_file)
        await expect(h, 400, "image/*", params={"customer_id": "c"}, data=b"hi", headers={"Content-Type": "text/plain"})
        svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
        await expect(h, 400, "not an image", params={"customer_id": "c"}, data=svg,
                     headers={"Content-Type": "image/svg+xml"})
        await expect(h, 400, "customer_id", data=PNG, headers={"Content-Type": "image/png"})
        huge = b"\x89PNG" + bytes(25 * 1024 * 1024)
        await expect(h, 413, "25 MB", params={"customer_id": "c"}, data=huge, headers={"Content-Type": "image/png"})
        await expect(h, 413, "25 MB", data=photo_form(huge))
        assert h.sim.frames == [] and (await h.get("/stats"))["unacked"] == 0  # nothing was posted
        assert list(h.sim.uploads_dir.iterdir()) == []  # type: ignore[union-attr]

    run(scenario)


@pytest.mark.timeout(30)
def test_pay_posts_a_payment_message() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            first = await post_json(h, "/customer/pay", {"customer_id": "c1", "amount": 30})
            frame = await recv_json(ws)
            second = await post_json(h, "/customer/pay", {"customer_id": "c1", "order_id": "T9", "name": "小明"})
            frame2 = await recv_json(ws)
        assert first["order_id"] == "SIM-1" and frame["msg_id"] == first["msg_id"]
        assert (frame["kind"], frame["customer"]["id"]) == ("payment", "c1")
        assert frame["content"] == {"order_id": "SIM-1", "amount": 30}
        assert second["order_id"] == "T9"
        assert (frame2["content"], frame2["customer"]["name"]) == ({"order_id": "T9", "amount": 0}, "小明")
        for bad in ({"amount": 3}, {"customer_id": "c", "amount": "30"}, {"customer_id": "c", "amount": -1},
                    {"customer_id": "c", "order_id": ""}, {"customer_id": "c", "amont": 3}):
            assert (await post_json(h, "/customer/pay", bad, status=400))["error"], bad

    run(scenario)


@pytest.mark.timeout(30)
def test_page_has_controls_and_shows_the_conversation_escaped() -> None:
    customer = 'web"<1>'

    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            async with h.http.post("/customer/photo", data=photo_form(PNG, customer_id=customer)) as resp:
                upload = (await resp.json())["url"]
            await post_json(h, "/customer/pay", {"customer_id": customer, "amount": 30})
            for send_id, msg_type, content in (
                ("s-1", 1, "http://shop.example/r/1.png"),
                ("s-2", 3, "https://shop.example/pay?a=1&b=2"),
                ("s-3", 0, "<img src=x onerror=alert(1)>"),
                ("s-4", 2, "javascript:alert(1)"),
            ):
                await ws.send(shop_send(send_id, customer, msg_type, content))
            sent = [await recv_json(ws) for _ in range(6)]  # two messages, four sent answers
            assert [f["type"] for f in sent].count("sent") == 4
        async with h.http.get("/", params={"customer_id": customer}) as resp:
            assert resp.content_type == "text/html"
            page = await resp.text()
        # The controls a shop owner uses.
        for control in ('type="file" name="file" accept="image/*"', 'name="amount"', "付款 / Pay",
                        'name="text"', '<script src="/chat.js"', 'name="viewport"'):
            assert control in page, control
        # Shop images as pictures, links as links, own uploads by path; everything escaped.
        assert '<img src="http://shop.example/r/1.png"' in page
        assert '<a href="https://shop.example/pay?a=1&amp;b=2"' in page
        assert f'<img src="{upload.removeprefix(h.sim.http_url)}"' in page
        assert "付款 / Payment: 30 · SIM-1" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
        assert 'href="javascript:' not in page and "javascript:alert(1)" in page
        assert 'value="web&quot;&lt;1&gt;"' in page and customer not in page
        chat = await h.get(f"/chat?customer_id={quote(customer)}")
        assert [(e["seq"], e["from"], e["kind"]) for e in chat] == [
            (1, "customer", "image"),
            (2, "customer", "payment"),
            (3, "shop", "image"),
            (4, "shop", "link"),
            (5, "shop", "text"),
            (6, "shop", "file"),
        ]
        assert (chat[2]["msg_type"], chat[2]["content"]) == (1, "http://shop.example/r/1.png")
        assert [e["seq"] for e in await h.get(f"/chat?customer_id={quote(customer)}&after=4")] == [5, 6]
        async with h.http.get("/chat.js") as resp:
            script = await resp.text()
        assert resp.content_type == "text/javascript"
        assert "EventSource" in script and "innerHTML" not in script
        async with h.http.get("/chat") as resp:
            assert resp.status == 400

    run(scenario)


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The next ``count`` Server-Sent Events as (event, id, data)."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    event, event_id, data = "message", "", ""
    while len(events) < count:
        line = (await asyncio.wait_for(resp.content.readline(), RECV_TIMEOUT_S)).decode()
        assert line, "the stream ended"
        line = line.rstrip("\n")
        if not line:
            if data:
                events.append((event, event_id, json.loads(data)))
            event, event_id, data = "message", "", ""
        elif not line.startswith((":", "retry:")):
            key, _, value = line.partition(": ")
            if key == "event":
                event = value
            elif key == "id":
                event_id = value
            else:
                data = value
    return events


@pytest.mark.timeout(30)
def test_chat_event_stream_is_live_and_resumable() -> None:
    async def scenario(h: Harness) -> None:
        await h.say("c", "one")
        await h.say("d", "someone else")
        async with h.http.get("/chat/events", params={"customer_id": "c"}) as stream:
            assert stream.content_type == "text/event-stream"
            assert [(e, i, d.get("content")) for e, i, d in await read_events(stream, 2)] == [
                ("status", "", None),
                ("message", "1", "one"),
            ]
            async with h.connect() as ws:
                assert await read_events(stream, 1) == [("status", "", {"connected": True})]
                await recv_json(ws)  # "one", replayed to the new connection
                await recv_json(ws)  # "someone else"
                await ws.send(shop_send("s-1", "c", 1, "http://shop.example/r.png"))
                await recv_json(ws)
                await h.say("d", "not for c")
                await h.say("c", "two")
                (_, shop_id, shop), (_, two_id, two) = await read_events(stream, 2)
            assert (shop["from"], shop["msg_type"], shop["content"]) == ("shop", 1, "http://shop.example/r.png")
            assert (two["from"], two["content"], int(shop_id) < int(two_id)) == ("customer", "two", True)
        # A browser reconnecting sends Last-Event-ID and gets only what it missed.
        headers = {"Last-Event-ID": shop_id}
        async with h.http.get("/chat/events", params={"customer_id": "c"}, headers=headers) as stream:
            assert [(e, i) for e, i, _ in await read_events(stream, 2)] == [("status", ""), ("message", two_id)]
            started = time.monotonic()
            await h.sim.stop()  # an open stream must not hold the simulator up
            assert time.monotonic() - started < 1.5
            assert await asyncio.wait_for(stream.content.read(), RECV_TIMEOUT_S) == b""

    run(scenario)


@pytest.mark.timeout(30)
def test_page_forms_work_without_javascript() -> None:
    async def scenario(h: Harness) -> None:
        async with h.connect() as ws:
            form = photo_form(PNG, customer_id="web 2", name="小李", action="photo")
            async with h.http.post("/", data=form) as resp:
                assert resp.status == 200  # followed the redirect back to the page
                assert 'value="小李"' in await resp.text()
            photo = await recv_json(ws)
            pay_form = {"customer_id": "web 2", "action": "pay", "amount": "12.5"}
            async with h.http.post("/", data=pay_form) as resp:
                assert resp.status == 200
            pay = await recv_json(ws)
            for bad in ({**pay_form, "amount": "abc"}, {**pay_form, "amount": "-1"}):
                async with h.http.post("/", data=bad) as resp:
                    assert resp.status == 400 and "amount" in await resp.text()
            async with h.http.post("/", data=photo_form(b"", customer_id="web 2", action="photo")) as resp:
                assert resp.status == 400
            async with h.http.post("/", data=photo_form(b"not an image", customer_id="web 2", action="photo")) as resp:
                assert resp.status == 400 and "not an image" in await resp.text()
        assert (photo["kind"], photo["customer"]["name"]) == ("image", "小李")
        async with aiohttp.ClientSession() as browser, browser.get(photo["content"]) as resp:
            assert await resp.read() == PNG
        assert (pay["kind"], pay["content"]) == ("payment", {"order_id": "SIM-1", "amount": 12.5})

    run(scenario)
