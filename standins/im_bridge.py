"""IM bridge simulator: the server side of the IM bridge protocol (SPEC §5).

The shop's real chat bridge relays Taobao / AliWorkbench conversations to us over a WebSocket.
Its wire format is not published, so the project defines one (``protocol/im.py``) and ships this
simulator that speaks it. The system connects to it as a WebSocket client, exactly as it would to
the real bridge; a person or a test plays the customer through a small HTTP control API.

What it does, in the bridge's role:

* Customer messages created through the control API are pushed to the connected system as
  ``message`` frames and kept as *unacknowledged* until the system answers ``ack``. On every
  (re)connect all unacknowledged messages are re-sent in their original order, and while connected
  any message left unacknowledged for ``resend_after`` seconds is re-sent too.
* ``send`` frames from the system are shown to the customer ("delivered") once per ``send_id``;
  a repeated ``send_id`` is answered ``sent`` again but never shown twice, and counted as a
  duplicate, so tests can check that nothing reached a customer twice. Failures can be injected.
* Every frame in both directions is recorded in memory and, optionally, as JSON lines in a file
  that other processes (chaos tests) read while the simulator runs.

Run it on its own with ``python -m standins.im_bridge --ws-port 6070 --http-port 6071``; the
launcher embeds :class:`BridgeSimulator` when ``IM_BRIDGE_URL`` is not set.

Control API (JSON unless noted):

``POST /customer/message``
    ``{"customer_id", "name"?, "kind", "content", "acc_id"?, "acc_type"?, "msg_id"?}`` →
    ``{"msg_id"}``; ``content`` of ``order`` / ``payment`` is ``{"order_id", "amount"}``.
``GET /deliveries[?customer_id=X]``
    What the customer(s) saw, in delivery order.
``GET /stats``
    Connection state and counters.
``POST /fail_sends``
    ``{"count", "error"?}``: answer the next ``count`` send frames with ``send_failed``.
``GET /frames``
    The full in-memory frame record.
``GET /`` (HTML)
    A tiny page to chat as a customer from a browser; its form posts to ``POST /``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, TextIO
from urllib.parse import quote

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from protocol.im import (
    AckFrame,
    FrameCustomer,
    MessageFrame,
    MessageKind,
    SendFailedFrame,
    SendFrame,
    SentFrame,
)

__all__ = ["BridgeSimulator", "CustomerMessageRequest", "OrderContent", "main"]

log = logging.getLogger(__name__)

# The shop is in China and the real bridge stamps messages in its local time; the system must
# cope with explicit offsets, so the simulator always writes one.
SHOP_TZ = timezone(timedelta(hours=8))

# SPEC §5 asks the bridge side for heartbeats; 10 s / 10 s notices a dead peer within ~20 s.
PING_INTERVAL_S = 10.0
PING_TIMEOUT_S = 10.0
# How long a delivered-but-unacknowledged message waits before the bridge pushes it again.
RESEND_AFTER_S = 15.0
# Close code for a connection displaced by a newer one (4000-4999 are for applications).
CLOSE_REPLACED = 4000

DEFAULT_FAIL_ERROR = "simulated send failure"


def _now_iso() -> str:
    """Return the current time as ISO 8601 with the shop's +08:00 offset."""
    return datetime.now(SHOP_TZ).isoformat(timespec="milliseconds")


class OrderContent(BaseModel):
    """The ``content`` of an ``order`` or ``payment`` message."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128)
    # Strict: a bool or a string here is a caller mistake worth a 400, not something to coerce.
    amount: Annotated[StrictInt | StrictFloat, Field(ge=0)]


class CustomerMessageRequest(BaseModel):
    """Body of ``POST /customer/message``: one thing a customer (or shop staff) typed."""

    # Unknown keys are refused so a typo ("customer" for "customer_id") is a clear 400.
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=128)
    kind: MessageKind
    content: Any
    acc_id: str = Field(default="shop_001", max_length=128)
    acc_type: str = Field(default="AliWorkbench", max_length=64)
    msg_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _check_content(self) -> CustomerMessageRequest:
        """Check ``content`` against ``kind``: a string, or ``{order_id, amount}`` for orders."""
        if self.kind in (MessageKind.ORDER, MessageKind.PAYMENT):
            if not isinstance(self.content, Mapping):
                raise ValueError(f"content of a {self.kind.value} message must be {{order_id, amount}}")
            self.content = OrderContent.model_validate(self.content).model_dump()
        elif not isinstance(self.content, str) or not self.content:
            what = "an image URL" if self.kind is MessageKind.IMAGE else "a non-empty string"
            raise ValueError(f"content of a {self.kind.value} message must be {what}")
        return self


class FailSendsRequest(BaseModel):
    """Body of ``POST /fail_sends``."""

    model_config = ConfigDict(extra="forbid")

    count: Annotated[StrictInt, Field(ge=0, le=1_000_000)]
    error: str = Field(default=DEFAULT_FAIL_ERROR, max_length=500)


# What the system may send to the bridge. protocol.im's own adapter parses the other direction.
_SystemFrame = Annotated[AckFrame | SendFrame, Field(discriminator="type")]
_system_frame: TypeAdapter[AckFrame | SendFrame] = TypeAdapter(_SystemFrame)


@dataclass
class _Pending:
    """A customer message the system has not acknowledged yet."""

    frame: dict[str, Any]
    last_sent: float | None = None  # monotonic time of the last push; None = never pushed


class BridgeSimulator:
    """The IM bridge's server side: a WebSocket for the system and an HTTP control API.

    All state lives on the event loop that called :meth:`start`; use it from that loop only.
    Frames and deliveries are kept in memory for the simulator's lifetime, which suits test runs
    and a local ``make run``, not months of uptime.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        http_port: int = 0,
        record_path: Path | None = None,
        *,
        resend_after: float = RESEND_AFTER_S,
    ) -> None:
        """Configure the simulator; nothing is bound until :meth:`start`.

        ``ws_port`` / ``http_port`` of 0 pick free ports; after :meth:`start` the attributes hold
        the real ones. ``record_path``, when given, receives one JSON line per frame (appended).
        ``resend_after`` is how long an unacknowledged message waits before it is pushed again.
        """
        self.host = host
        self.ws_port = ws_port
        self.http_port = http_port
        self.record_path = record_path
        self.resend_after = resend_after

        self._pending: dict[str, _Pending] = {}  # insertion order = original order, for replays
        self._acked: set[str] = set()
        self._seq = 0
        self._deliveries: list[dict[str, Any]] = []
        self._delivered_ids: set[str] = set()
        self._frames: list[dict[str, Any]] = []
        self._fail_remaining = 0
        self._fail_error = DEFAULT_FAIL_ERROR
        self._counters = {
            "connections": 0,
            "duplicate_sends": 0,
            "send_frames": 0,
            "failed_sends": 0,
            "resends": 0,
            "errors": 0,
        }

        self._ws: ServerConnection | None = None
        # Held while pushing message frames so a replay after reconnect is never interleaved
        # with a fresh message: the system must see unacknowledged messages in original order.
        self._push_lock = asyncio.Lock()
        self._ws_server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._resend_task: asyncio.Task[None] | None = None
        self._record_file: TextIO | None = None
        self._background: set[asyncio.Task[None]] = set()  # strong refs, or the loop may drop them

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind both ports and start serving; afterwards ``ws_port`` and ``http_port`` are real."""
        if self._ws_server is not None:
            raise RuntimeError("BridgeSimulator already started")
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record_file = self.record_path.open("a", encoding="utf-8")
        try:
            self._ws_server = await serve(
                self._handle_connection,
                self.host,
                self.ws_port,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
            )
            self.ws_port = self._ws_server.sockets[0].getsockname()[1]

            self._runner = web.AppRunner(self._make_app())
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.http_port).start()
            self.http_port = self._runner.addresses[0][1]
        except BaseException:
            await self.stop()
            raise
        self._resend_task = asyncio.create_task(self._resend_loop(), name="im-bridge-resend")
        log.info("IM bridge simulator on %s (control %s)", self.ws_url, self.http_url)

    async def stop(self) -> None:
        """Close the connection and both servers, and the record file. Safe to call twice."""
        if self._resend_task is not None:
            self._resend_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resend_task
            self._resend_task = None
        if self._ws_server is not None:
            self._ws_server.close()  # also closes the open connection (1001 going away)
            await self._ws_server.wait_closed()
            self._ws_server = None
        self._ws = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None

    @property
    def ws_url(self) -> str:
        """The URL the system connects to (``IM_BRIDGE_URL``)."""
        return f"ws://{_url_host(self.host)}:{self.ws_port}"

    @property
    def http_url(self) -> str:
        """The base URL of the control API and the browser page."""
        return f"http://{_url_host(self.host)}:{self.http_port}"

    # ------------------------------------------------------------------ in-process API

    async def post_customer_message(self, request: CustomerMessageRequest) -> str:
        """Queue a customer message, push it now if the system is connected; return its msg_id.

        Raises ``ValueError`` if ``request.msg_id`` is already waiting for an ack. Reusing an
        acknowledged msg_id is allowed on purpose: it is how a test makes the bridge deliver
        the same message twice to check the system's deduplication.
        """
        msg_id = request.msg_id or self._next_msg_id()
        if msg_id in self._pending:
            raise ValueError(f"msg_id {msg_id!r} is already waiting for an ack")
        frame = MessageFrame(
            msg_id=msg_id,
            acc_id=request.acc_id,
            acc_type=request.acc_type,
            customer=FrameCustomer(id=request.customer_id, name=request.name),
            kind=request.kind,
            content=request.content,
            ts=_now_iso(),
        )
        self._acked.discard(msg_id)
        self._pending[msg_id] = _Pending(frame.model_dump(mode="json"))
        async with self._push_lock:
            await self._push(msg_id)
        return msg_id

    def fail_sends(self, count: int, error: str = DEFAULT_FAIL_ERROR) -> None:
        """Answer the next ``count`` send frames with ``send_failed`` (0 disarms)."""
        self._fail_remaining = count
        self._fail_error = error

    def deliveries(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        """What customers saw, in delivery order, optionally for one customer."""
        return [d for d in self._deliveries if customer_id is None or d["customer_id"] == customer_id]

    def stats(self) -> dict[str, Any]:
        """Connection state and counters, as ``GET /stats`` answers them."""
        return {
            "connected": self._ws is not None,
            "connections": self._counters["connections"],
            "unacked": len(self._pending),
            "acked": len(self._acked),
            "deliveries": len(self._deliveries),
            "duplicate_sends": self._counters["duplicate_sends"],
            "send_frames": self._counters["send_frames"],
            "failed_sends": self._counters["failed_sends"],
            "resends": self._counters["resends"],
            "errors": self._counters["errors"],
        }

    @property
    def frames(self) -> list[dict[str, Any]]:
        """Every frame recorded so far: ``{"at", "dir", "frame"}`` (``"error"`` on malformed ones)."""
        return list(self._frames)

    # ------------------------------------------------------------------ WebSocket side

    async def _handle_connection(self, ws: ServerConnection) -> None:
        """Serve one system connection: replace the previous one, replay, then read frames."""
        old, self._ws = self._ws, ws
        self._counters["connections"] += 1
        log.info("system connected from %s", ws.remote_address)
        if old is not None:
            # The bridge talks to one system at a time; a new connection usually means the old
            # client died without a close, so the newer one wins.
            log.info("closing the previous connection: replaced")
            task = asyncio.create_task(old.close(CLOSE_REPLACED, "replaced by a new connection"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        try:
            async with self._push_lock:
                for msg_id in list(self._pending):
                    await self._push(msg_id)
            async for raw in ws:
                await self._handle_frame(ws, raw)
        except ConnectionClosed:
            pass  # the client went away; unacknowledged messages wait for the next connection
        finally:
            if self._ws is ws:
                self._ws = None
            log.info("system disconnected")

    async def _handle_frame(self, ws: ServerConnection, raw: str | bytes) -> None:
        """Record one inbound frame and act on it: ``ack`` or ``send``; ignore anything else."""
        parsed: Any = None
        if isinstance(raw, bytes):
            error = "binary frame; the protocol uses JSON text frames"
        else:
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                error = f"not JSON: {exc}"
            else:
                error = "" if isinstance(parsed, dict) else "not a JSON object"
        if error:
            self._malformed({"raw": raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw}, error)
            return
        try:
            frame = _system_frame.validate_python(parsed)
        except ValidationError as exc:
            self._malformed(parsed, _describe(exc))
            return
        self._record("in", parsed)

        if isinstance(frame, AckFrame):
            if self._pending.pop(frame.msg_id, None) is not None:
                self._acked.add(frame.msg_id)
            else:
                log.debug("ack for unknown or already acknowledged msg_id %r", frame.msg_id)
            return
        await self._handle_send(ws, frame)

    async def _handle_send(self, ws: ServerConnection, frame: SendFrame) -> None:
        """Deliver a send once per send_id (or fail it on purpose) and answer on ``ws``."""
        self._counters["send_frames"] += 1
        answer: SentFrame | SendFailedFrame
        if frame.send_id in self._delivered_ids:
            # A retry of something the customer already saw: confirm it, show nothing.
            self._counters["duplicate_sends"] += 1
            answer = SentFrame(send_id=frame.send_id)
        elif self._fail_remaining > 0:
            self._fail_remaining -= 1
            self._counters["failed_sends"] += 1
            answer = SendFailedFrame(send_id=frame.send_id, error=self._fail_error)
        else:
            self._delivered_ids.add(frame.send_id)
            self._deliveries.append(
                {
                    "send_id": frame.send_id,
                    "customer_id": frame.customer_id,
                    "acc_id": frame.acc_id,
                    "msg_type": int(frame.msg_type),
                    "content": frame.content,
                    "at": _now_iso(),
                }
            )
            answer = SentFrame(send_id=frame.send_id)
        await self._send_frame(ws, answer.model_dump(mode="json"))

    async def _push(self, msg_id: str) -> None:
        """Push one pending message to the current connection, if any. Hold ``_push_lock``."""
        pending = self._pending.get(msg_id)
        ws = self._ws
        if pending is None or ws is None:
            return  # acknowledged meanwhile, or nobody to push to: the next connect replays it
        if pending.last_sent is not None:
            self._counters["resends"] += 1
        if await self._send_frame(ws, pending.frame):
            pending.last_sent = time.monotonic()

    async def _send_frame(self, ws: ServerConnection, frame: dict[str, Any]) -> bool:
        """Send and record one outbound frame; return False if the connection was gone."""
        try:
            await ws.send(json.dumps(frame, ensure_ascii=False))
        except ConnectionClosed:
            return False
        self._record("out", frame)
        return True

    async def _resend_loop(self) -> None:
        """While connected, push again every message left unacknowledged for ``resend_after``."""
        tick = min(1.0, max(self.resend_after / 4, 0.05))
        while True:
            await asyncio.sleep(tick)
            if self._ws is None:
                continue
            due = time.monotonic() - self.resend_after
            async with self._push_lock:
                for msg_id, pending in list(self._pending.items()):
                    if pending.last_sent is not None and pending.last_sent <= due:
                        await self._push(msg_id)

    # ------------------------------------------------------------------ recording

    def _record(self, direction: str, frame: dict[str, Any], error: str = "") -> None:
        """Keep one frame in memory and append it to the record file, flushed for other readers."""
        entry: dict[str, Any] = {"at": _now_iso(), "dir": direction, "frame": frame}
        if error:
            entry["error"] = error
        self._frames.append(entry)
        if self._record_file is not None:
            self._record_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._record_file.flush()

    def _malformed(self, frame: dict[str, Any], error: str) -> None:
        """Record an inbound frame the protocol does not allow; the bridge otherwise ignores it."""
        self._counters["errors"] += 1
        log.warning("ignoring malformed frame from the system: %s", error)
        self._record("in", frame, error)

    def _next_msg_id(self) -> str:
        """Return a fresh ``sim-<n>`` id, skipping any a caller already chose by hand."""
        while True:
            self._seq += 1
            msg_id = f"sim-{self._seq}"
            if msg_id not in self._pending and msg_id not in self._acked:
                return msg_id

    # ------------------------------------------------------------------ HTTP control API

    def _make_app(self) -> web.Application:
        """Build the aiohttp application of the control API."""
        app = web.Application()
        app.router.add_post("/customer/message", self._http_customer_message)
        app.router.add_get("/deliveries", self._http_deliveries)
        app.router.add_get("/stats", self._http_stats)
        app.router.add_post("/fail_sends", self._http_fail_sends)
        app.router.add_get("/frames", self._http_frames)
        app.router.add_get("/", self._http_page)
        app.router.add_post("/", self._http_page_say)
        return app

    async def _http_customer_message(self, request: web.Request) -> web.Response:
        """``POST /customer/message``: queue a customer message → ``{"msg_id"}``."""
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            msg = CustomerMessageRequest.model_validate(body)
            msg_id = await self.post_customer_message(msg)
        except ValidationError as exc:
            return _bad_request(_describe(exc))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"msg_id": msg_id})

    async def _http_deliveries(self, request: web.Request) -> web.Response:
        """``GET /deliveries[?customer_id=X]``: what the customer(s) saw, in order."""
        return web.json_response(self.deliveries(request.query.get("customer_id")))

    async def _http_stats(self, request: web.Request) -> web.Response:
        """``GET /stats``: connection state and counters."""
        return web.json_response(self.stats())

    async def _http_fail_sends(self, request: web.Request) -> web.Response:
        """``POST /fail_sends``: arm failure injection for the next ``count`` send frames."""
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            req = FailSendsRequest.model_validate(body)
        except ValidationError as exc:
            return _bad_request(_describe(exc))
        self.fail_sends(req.count, req.error)
        return web.json_response({"armed": req.count, "error": req.error})

    async def _http_frames(self, request: web.Request) -> web.Response:
        """``GET /frames``: the full in-memory frame record."""
        return web.json_response(self._frames)

    async def _http_page(self, request: web.Request) -> web.Response:
        """``GET /``: a minimal page to play a customer from a browser."""
        customer_id = request.query.get("customer_id", "customer_web")
        rows = "\n".join(_delivery_row(d) for d in self.deliveries(customer_id))
        page = _PAGE.format(
            customer_id=html.escape(customer_id, quote=True),
            connected="connected" if self._ws is not None else "not connected",
            rows=rows or "<li><i>nothing yet</i></li>",
        )
        return web.Response(text=page, content_type="text/html")

    async def _http_page_say(self, request: web.Request) -> web.Response:
        """``POST /`` (form): send the typed text as that customer, then show the page again."""
        form = await request.post()
        customer_id = str(form.get("customer_id", "")).strip()
        try:
            msg = CustomerMessageRequest(
                customer_id=customer_id,
                name=str(form.get("name", "")),
                kind=MessageKind.TEXT,
                content=str(form.get("text", "")),
            )
        except ValidationError as exc:
            return web.Response(text=f"bad input: {_describe(exc)}", status=400)
        await self.post_customer_message(msg)
        # Post/redirect/get, so a browser refresh does not send the text again.
        raise web.HTTPSeeOther(f"/?customer_id={quote(customer_id, safe='')}")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>IM bridge simulator</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>IM bridge simulator</h1>
<p>System: {connected}.</p>
<form method="post" action="/">
  <label>Customer id <input name="customer_id" value="{customer_id}" required></label>
  <label>Name <input name="name"></label><br>
  <textarea name="text" rows="3" cols="60" required></textarea><br>
  <button>Send as customer</button>
</form>
<h2>Delivered to {customer_id} <a href="/?customer_id={customer_id}">(refresh)</a></h2>
<ul>
{rows}
</ul>
</body></html>
"""


def _delivery_row(delivery: dict[str, Any]) -> str:
    """One ``<li>`` of the page; images, files and links are shown as links when they are URLs."""
    content = str(delivery["content"])
    text = html.escape(content)
    if delivery["msg_type"] != 0 and content.startswith(("http://", "https://")):
        text = f'<a href="{html.escape(content, quote=True)}">{text}</a>'
    return f"<li><small>{html.escape(delivery['at'])}</small> {text}</li>"


def _url_host(host: str) -> str:
    """Bracket an IPv6 literal for use in a URL."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _describe(exc: ValidationError) -> str:
    """Turn a pydantic error into one readable line: ``field: problem; field: problem``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _bad_request(message: str) -> web.Response:
    """A 400 answer with a JSON ``{"error"}`` body."""
    return web.json_response({"error": message}, status=400)


async def _json_body(request: web.Request) -> Any:
    """Return the request's JSON object body, or a 400 response explaining why there is none."""
    try:
        body = await request.json()
    except ValueError:
        return _bad_request("body must be JSON")
    if not isinstance(body, dict):
        return _bad_request("body must be a JSON object")
    return body


# ---------------------------------------------------------------------- command line


async def _run(args: argparse.Namespace) -> None:
    """Run a simulator until SIGTERM or SIGINT."""
    sim = BridgeSimulator(args.host, args.ws_port, args.http_port, args.record)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # platforms without signal handlers
            loop.add_signal_handler(sig, stop.set)
    try:
        # One line a person (or a launcher reading our stdout) can act on.
        print(f"IM bridge simulator: websocket {sim.ws_url}  control {sim.http_url}", flush=True)
        if args.ready_file is not None:
            # Written whole then renamed, so a launcher polling for it never reads half a file.
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ws_url": sim.ws_url, "http_url": sim.http_url}))
            tmp.replace(args.ready_file)
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m standins.im_bridge [--host H] [--ws-port N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m standins.im_bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--ws-port", type=int, default=6070, help="WebSocket port, 0 = any (default 6070)")
    parser.add_argument(
        "--http-port", type=int, default=6071, help="control API port, 0 = any (default 6071)"
    )
    parser.add_argument(
        "--record", type=Path, default=None, help="append every frame to this JSON-lines file"
    )
    parser.add_argument(
        "--ready-file", type=Path, default=None, help="write {ws_url, http_url} here once listening"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also log connections")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
