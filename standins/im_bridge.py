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
``POST /customer/photo``
    Multipart form (``customer_id``, ``name``?, ``file``) or the raw image with ``Content-Type: image/*``
    and ``?customer_id=&name=``: the image is stored, served at ``GET /uploads/{id}.{ext}`` and posted
    as an ``image`` message whose content is its absolute URL → ``{"msg_id", "url"}``. Not an image
    (JPEG, PNG, GIF, WebP, BMP, TIFF): 400; over 25 MB: 413.
``POST /customer/pay``
    ``{"customer_id", "name"?, "amount"?, "order_id"?}`` → ``{"msg_id", "order_id"}``: a ``payment``
    message ``{"order_id": given or "SIM-<n>", "amount": given or 0}``.
``GET /chat?customer_id=X[&after=N]``
    One customer's conversation, both directions in order: ``{"seq", "from": "customer" | "shop",
    "customer_id", "kind", "content", "at", ...}``; shop events also carry ``msg_type``.
``GET /chat/events?customer_id=X[&after=N]``
    The same as Server-Sent Events (``id`` = seq, honours ``Last-Event-ID``), then live; ``status``
    events say whether the system is connected.
``GET /`` (HTML), ``GET /chat.js``
    A phone-friendly page to play a customer from a browser: chat log, text, photo, pay. Without
    JavaScript its forms post to ``POST /`` (``action`` = ``say`` | ``photo`` | ``pay``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import io
import json
import logging
import re
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from string import Template
from typing import Annotated, Any, TextIO
from urllib.parse import urlencode

from aiohttp import BodyPartReader, web
from PIL import Image, UnidentifiedImageError
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
    MsgType,
    SendFailedFrame,
    SendFrame,
    SentFrame,
)

__all__ = [
    "BridgeSimulator",
    "CustomerMessageRequest",
    "CustomerPayRequest",
    "CustomerPhotoRequest",
    "OrderContent",
    "main",
]

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

# A phone photo is a few MB; 25 MB leaves room for the odd uncompressed scan.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_UPLOAD_LIMIT_TEXT = "25 MB"
# Text fields of a form are ids and names; anything longer is a mistake, not data.
_FIELD_LIMIT = 4096
_CHUNK = 64 * 1024
# A comment line this often lets an event stream notice a browser that went away.
SSE_KEEPALIVE_S = 15.0

# Pillow format → (file extension, Content-Type) of the images a customer may send. MPO is what
# many phone cameras write: a JPEG with extra frames, which every JPEG reader shows.
_IMAGE_TYPES: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
_CONTENT_TYPES = dict(_IMAGE_TYPES.values())
# Pillow has no MPO opener of its own: its JPEG opener returns MPO images.
_OPENERS = [f for f in _IMAGE_TYPES if f != "MPO"]
_UPLOAD_NAME = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|gif|webp|bmp|tiff)")


def _now_iso() -> str:
    """Return the current time as ISO 8601 with the shop's +08:00 offset."""
    return datetime.now(SHOP_TZ).isoformat(timespec="milliseconds")


class OrderContent(BaseModel):
    """The ``content`` of an ``order`` or ``payment`` message."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128)
    # Strict: a bool or a string here is a caller mistake worth a 400, not something to coerce.
    amount: Annotated[StrictInt | StrictFloat, Field(ge=0)]


class _CustomerRequest(BaseModel):
    """Who a control request speaks for."""

    # Unknown keys are refused so a typo ("customer" for "customer_id") is a clear 400.
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=128)


class CustomerPhotoRequest(_CustomerRequest):
    """The text fields of ``POST /customer/photo``; the image itself travels beside them."""


class CustomerPayRequest(_CustomerRequest):
    """Body of ``POST /customer/pay``: the customer pays (a payment notice reaches the system)."""

    amount: Annotated[StrictInt | StrictFloat, Field(ge=0)] = 0
    order_id: str | None = Field(default=None, min_length=1, max_length=128)


class CustomerMessageRequest(_CustomerRequest):
    """Body of ``POST /customer/message``: one thing a customer (or shop staff) typed."""

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


class _Refusal(Exception):
    """A control request the simulator will not serve: an HTTP status and a reason."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status and the reason the caller will read."""
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Form:
    """A posted form: its text fields and, if one was sent, the bytes of its ``file`` part."""

    fields: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None


# What an event-stream listener is told: a chat event, the connection state, or None = stream ends.
_Notice = tuple[str, dict[str, Any]] | None


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
        uploads_dir: Path | None = None,
    ) -> None:
        """Configure the simulator; nothing is bound until :meth:`start`.

        ``ws_port`` / ``http_port`` of 0 pick free ports; after :meth:`start` the attributes hold
        the real ones. ``record_path``, when given, receives one JSON line per frame (appended).
        ``resend_after`` is how long an unacknowledged message waits before it is pushed again.
        ``uploads_dir`` keeps customers' photos; None = a temporary folder removed by :meth:`stop`
        (after :meth:`start` the attribute holds the real folder either way).
        """
        self.host = host
        self.ws_port = ws_port
        self.http_port = http_port
        self.record_path = record_path
        self.resend_after = resend_after
        self.uploads_dir = uploads_dir
        self._own_uploads_dir = uploads_dir is None

        self._pending: dict[str, _Pending] = {}  # insertion order = original order, for replays
        self._acked: set[str] = set()
        self._seq = 0
        self._run = secrets.token_hex(3)
        self._deliveries: list[dict[str, Any]] = []
        self._delivered_ids: set[str] = set()
        self._frames: list[dict[str, Any]] = []
        self._fail_remaining = 0
        self._fail_error = DEFAULT_FAIL_ERROR
        self._order_seq = 0
        self._chat: list[dict[str, Any]] = []  # both directions, every customer; seq = index + 1
        self._listeners: set[asyncio.Queue[_Notice]] = set()
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
        if self._own_uploads_dir:
            self.uploads_dir = Path(tempfile.mkdtemp(prefix="im-bridge-uploads-"))
        else:
            assert self.uploads_dir is not None
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._ws_server = await serve(
                self._handle_connection,
                self.host,
                self.ws_port,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
            )
            self.ws_port = self._ws_server.sockets[0].getsockname()[1]

            # Open event streams are ended by stop(); the short timeout only bounds a stuck one.
            self._runner = web.AppRunner(self._make_app(), shutdown_timeout=2.0)
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
        for listener in self._listeners:
            listener.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None
        if self._own_uploads_dir and self.uploads_dir is not None:
            shutil.rmtree(self.uploads_dir, ignore_errors=True)
            self.uploads_dir = None

    @property
    def ws_url(self) -> str:
        """The URL the system connects to (``IM_BRIDGE_URL``)."""
        return f"ws://{_url_host(self.host)}:{self.ws_port}"

    @property
    def http_url(self) -> str:
        """The base URL of the control API and the browser page."""
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def public_http_url(self) -> str:
        """The control API's base URL as the system should fetch uploads from it.

        A wildcard bind address is not somewhere to connect to, so it becomes loopback.
        """
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{_url_host(host)}:{self.http_port}"

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
        self._add_chat(
            {
                "from": "customer",
                "customer_id": request.customer_id,
                "name": request.name,
                "msg_id": msg_id,
                "kind": request.kind.value,
                "content": request.content,
                "at": frame.ts,
            }
        )
        async with self._push_lock:
            await self._push(msg_id)
        return msg_id

    async def post_customer_photo(self, request: CustomerPhotoRequest, data: bytes) -> tuple[str, str]:
        """Store ``data`` as an upload and post it as the customer's ``image`` message.

        Returns ``(msg_id, url)``; raises ``ValueError`` saying why if ``data`` is not an image
        the simulator accepts, or is larger than ``MAX_UPLOAD_BYTES``.
        """
        if len(data) > MAX_UPLOAD_BYTES:
            raise ValueError(f"the image is larger than the {_UPLOAD_LIMIT_TEXT} limit")
        url = await asyncio.to_thread(self._save_upload, data)
        message = CustomerMessageRequest(
            customer_id=request.customer_id, name=request.name, kind=MessageKind.IMAGE, content=url
        )
        return await self.post_customer_message(message), url

    async def post_customer_payment(self, request: CustomerPayRequest) -> tuple[str, str]:
        """Post the customer's ``payment`` message; returns ``(msg_id, order_id)``."""
        if request.order_id is None:
            self._order_seq += 1
            order_id = f"SIM-{self._order_seq}"
        else:
            order_id = request.order_id
        message = CustomerMessageRequest(
            customer_id=request.customer_id,
            name=request.name,
            kind=MessageKind.PAYMENT,
            content={"order_id": order_id, "amount": request.amount},
        )
        return await self.post_customer_message(message), order_id

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

    def chat(self, customer_id: str, after: int = 0) -> list[dict[str, Any]]:
        """One customer's conversation, both directions in order, from sequence number ``after`` on."""
        return [e for e in self._chat[after:] if e["customer_id"] == customer_id]

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
        self._notify(("status", self._status()))
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
                self._notify(("status", self._status()))
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
            delivery = {
                "send_id": frame.send_id,
                "customer_id": frame.customer_id,
                "acc_id": frame.acc_id,
                "msg_type": int(frame.msg_type),
                "content": frame.content,
                "at": _now_iso(),
            }
            self._deliveries.append(delivery)
            self._add_chat({"from": "shop", "kind": MsgType(frame.msg_type).name.lower(), **delivery})
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

    def _add_chat(self, event: dict[str, Any]) -> None:
        """Append one event to the conversations and tell every open event stream."""
        event["seq"] = len(self._chat) + 1
        self._chat.append(event)
        self._notify(("chat", event))

    def _notify(self, notice: _Notice) -> None:
        """Queue a notice for every open event stream."""
        for listener in self._listeners:
            listener.put_nowait(notice)

    def _status(self) -> dict[str, Any]:
        """What a ``status`` event says."""
        return {"connected": self._ws is not None}

    def _save_upload(self, data: bytes) -> str:
        """Check that ``data`` is an accepted image, store it and return its absolute URL."""
        ext = _image_extension(data)
        assert self.uploads_dir is not None, "start() first"
        name = f"{uuid.uuid4().hex}.{ext}"
        tmp = self.uploads_dir / f".{name}.part"
        tmp.write_bytes(data)
        tmp.replace(self.uploads_dir / name)  # never served half-written
        return f"{self.public_http_url}/uploads/{name}"

    def _next_msg_id(self) -> str:
        """Return a fresh ``sim-<run>-<n>`` id, skipping any a caller already chose by hand.

        The run part differs at every start: a restarted simulator must not reuse ids the system has
        already stored, or it would take new messages for re-sent ones and drop them.
        """
        while True:
            self._seq += 1
            msg_id = f"sim-{self._run}-{self._seq}"
            if msg_id not in self._pending and msg_id not in self._acked:
                return msg_id

    # ------------------------------------------------------------------ HTTP control API

    def _make_app(self) -> web.Application:
        """Build the aiohttp application of the control API."""
        app = web.Application()
        app.router.add_post("/customer/message", self._http_customer_message)
        app.router.add_post("/customer/photo", self._http_customer_photo)
        app.router.add_post("/customer/pay", self._http_customer_pay)
        app.router.add_get("/uploads/{name}", self._http_upload)
        app.router.add_get("/deliveries", self._http_deliveries)
        app.router.add_get("/chat", self._http_chat)
        app.router.add_get("/chat/events", self._http_chat_events)
        app.router.add_get("/stats", self._http_stats)
        app.router.add_post("/fail_sends", self._http_fail_sends)
        app.router.add_get("/frames", self._http_frames)
        app.router.add_get("/", self._http_page)
        app.router.add_post("/", self._http_page_post)
        app.router.add_get("/chat.js", self._http_chat_js)
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

    async def _http_customer_photo(self, request: web.Request) -> web.Response:
        """``POST /customer/photo``: store an image, post it as the customer → ``{"msg_id", "url"}``."""
        try:
            if request.content_type == "multipart/form-data":
                form = await _read_form(request)
                fields, data = {**request.query, **form.fields}, form.file
                if data is None:
                    raise _Refusal(400, "the form has no 'file' field with the image")
                photo = _photo_request(fields)
            elif request.content_type.startswith("image/"):
                photo = _photo_request(request.query)
                data = await _read_body(request)
            else:
                raise _Refusal(
                    400,
                    "send a multipart/form-data form with customer_id and a 'file' field, "
                    "or the raw image with Content-Type image/* and ?customer_id=",
                )
            msg_id, url = await self.post_customer_photo(photo, data)
        except _Refusal as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
        except ValueError as exc:
            return _bad_request(str(exc))
        return web.json_response({"msg_id": msg_id, "url": url})

    async def _http_customer_pay(self, request: web.Request) -> web.Response:
        """``POST /customer/pay``: post a payment notice → ``{"msg_id", "order_id"}``."""
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            pay = CustomerPayRequest.model_validate(body)
        except ValidationError as exc:
            return _bad_request(_describe(exc))
        msg_id, order_id = await self.post_customer_payment(pay)
        return web.json_response({"msg_id": msg_id, "order_id": order_id})

    async def _http_upload(self, request: web.Request) -> web.StreamResponse:
        """``GET /uploads/{id}.{ext}``: a photo a customer sent."""
        name = request.match_info["name"]
        path = self.uploads_dir / name if self.uploads_dir is not None else None
        if path is None or not _UPLOAD_NAME.fullmatch(name) or not path.is_file():
            raise web.HTTPNotFound(text="no such upload")
        content_type = _CONTENT_TYPES[name.rsplit(".", 1)[1]]
        return web.FileResponse(path, headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"})

    async def _http_deliveries(self, request: web.Request) -> web.Response:
        """``GET /deliveries[?customer_id=X]``: what the customer(s) saw, in order."""
        return web.json_response(self.deliveries(request.query.get("customer_id")))

    async def _http_chat(self, request: web.Request) -> web.Response:
        """``GET /chat?customer_id=X[&after=N]``: one customer's conversation, both directions."""
        try:
            customer_id, after = _chat_query(request)
        except _Refusal as exc:
            return _bad_request(exc.message)
        return web.json_response(self.chat(customer_id, after))

    async def _http_chat_events(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat/events?customer_id=X``: the conversation as Server-Sent Events, then live."""
        try:
            customer_id, after = _chat_query(request)
        except _Refusal as exc:
            return _bad_request(exc.message)
        listener: asyncio.Queue[_Notice] = asyncio.Queue()
        # Listen before taking the history, with no await between, so no event falls in a gap.
        self._listeners.add(listener)
        history = self.chat(customer_id, after)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            await _write_event(response, "status", self._status())
            for event in history:
                await _write_event(response, "", event, event["seq"])
            last = history[-1]["seq"] if history else after
            while True:
                try:
                    notice = await asyncio.wait_for(listener.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if notice is None:
                    break  # the simulator is stopping
                kind, data = notice
                if kind == "status":
                    await _write_event(response, "status", data)
                elif data["customer_id"] == customer_id and data["seq"] > last:
                    last = data["seq"]
                    await _write_event(response, "", data, last)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self._listeners.discard(listener)
        return response

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
        """``GET /``: the page to play a customer from a browser, with the conversation so far."""
        customer_id = request.query.get("customer_id", "customer_web")
        name = request.query.get("name", "")
        events = self.chat(customer_id)
        base = self.public_http_url
        attr = {k: html.escape(v, quote=True) for k, v in {"customer_id": customer_id, "name": name}.items()}
        page = _PAGE.substitute(
            attr,
            status="connected" if self._ws is not None else "not connected",
            status_class="on" if self._ws is not None else "off",
            last=events[-1]["seq"] if events else 0,
            base=html.escape(base, quote=True),
            items="\n".join(_chat_item(e, base) for e in events) or _EMPTY_ITEM,
        )
        return web.Response(text=page, content_type="text/html")

    async def _http_chat_js(self, request: web.Request) -> web.Response:
        """``GET /chat.js``: the page's live part (event stream, forms without reloads)."""
        return web.Response(text=_CHAT_JS, content_type="text/javascript")

    async def _http_page_post(self, request: web.Request) -> web.Response:
        """``POST /`` (form): say, send a photo or pay as that customer, then show the page again.

        This is the page without JavaScript; with it, the page calls the JSON API instead.
        """
        try:
            form = await _read_form(request)
            who = {"customer_id": form.fields.get("customer_id", "").strip(), "name": form.fields.get("name", "")}
            action = form.fields.get("action", "say")
            if action == "photo":
                if not form.file:
                    raise _Refusal(400, "choose a photo first")
                await self.post_customer_photo(CustomerPhotoRequest.model_validate(who), form.file)
            elif action == "pay":
                amount = _parse_amount(form.fields.get("amount", ""))
                await self.post_customer_payment(CustomerPayRequest.model_validate({**who, "amount": amount}))
            else:
                text = form.fields.get("text", "")
                await self.post_customer_message(CustomerMessageRequest(**who, kind=MessageKind.TEXT, content=text))
        except ValidationError as exc:
            return web.Response(text=f"bad input: {_describe(exc)}", status=400)
        except _Refusal as exc:
            return web.Response(text=exc.message, status=exc.status)
        except ValueError as exc:
            return web.Response(text=str(exc), status=400)
        # Post/redirect/get, so a browser refresh does not send the message again.
        raise web.HTTPSeeOther("/?" + urlencode(who))


async def _read_limited(read: Callable[[], Awaitable[bytes]], limit: int, too_large: str) -> bytes:
    """Collect chunks from ``read`` until it returns ``b""``; a 413 refusal past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await read():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_body(request: web.Request) -> bytes:
    """The raw request body, at most ``MAX_UPLOAD_BYTES``."""
    too_large = f"the image is larger than the {_UPLOAD_LIMIT_TEXT} limit"
    if (request.content_length or 0) > MAX_UPLOAD_BYTES:
        raise _Refusal(413, too_large)  # said so up front: no need to read it
    return await _read_limited(lambda: request.content.read(_CHUNK), MAX_UPLOAD_BYTES, too_large)


async def _read_form(request: web.Request) -> _Form:
    """Read a urlencoded or multipart form, streaming the ``file`` part up to ``MAX_UPLOAD_BYTES``.

    aiohttp's own ``post()`` keeps the whole body under a 1 MB cap; photos need more than that.
    """
    if request.content_type != "multipart/form-data":
        posted = await request.post()
        return _Form({k: v for k, v in posted.items() if isinstance(v, str)})
    form = _Form()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _Refusal(400, "nested multipart forms are not supported")
            if part.name == "file":
                too_large = f"the image is larger than the {_UPLOAD_LIMIT_TEXT} limit"
                form.file = await _read_limited(lambda p=part: p.read_chunk(_CHUNK), MAX_UPLOAD_BYTES, too_large)
            elif part.name:
                too_long = f"form field {part.name!r} is longer than {_FIELD_LIMIT} bytes"
                raw = await _read_limited(lambda p=part: p.read_chunk(_CHUNK), _FIELD_LIMIT, too_long)
                form.fields[part.name] = raw.decode("utf-8", "replace")
    except ValueError as exc:
        # aiohttp's multipart parser reports a malformed body (no boundary, cut short) this way.
        raise _Refusal(400, f"malformed multipart body: {exc}") from exc
    return form


def _photo_request(fields: Mapping[str, str]) -> CustomerPhotoRequest:
    """Build the photo request from form or query fields; a 400 refusal saying what is wrong."""
    try:
        return CustomerPhotoRequest.model_validate({k: fields[k] for k in ("customer_id", "name") if k in fields})
    except ValidationError as exc:
        raise _Refusal(400, _describe(exc)) from exc


def _image_extension(data: bytes) -> str:
    """The file extension for ``data`` if it is an image a customer may send; else ValueError why not."""
    if not data:
        raise ValueError("the file is empty, not an image")
    accepted = "JPEG, PNG, GIF, WebP, BMP or TIFF"
    try:
        with Image.open(io.BytesIO(data), formats=_OPENERS) as image:
            image_format = image.format
            image.verify()  # catches a truncated or corrupt file, not just a right-looking header
    except Image.DecompressionBombError as exc:
        raise ValueError(f"the image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"the file is not an image: not a {accepted} picture") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"the image is damaged and cannot be read: {exc}") from exc
    if image_format not in _IMAGE_TYPES:
        raise ValueError(f"the file is not an image: not a {accepted} picture")
    return _IMAGE_TYPES[image_format][0]


def _parse_amount(text: str) -> int | float:
    """A form's amount: empty is 0; otherwise a number ≥ 0 (whole numbers stay ints)."""
    if not text.strip():
        return 0
    try:
        amount = float(text)
    except ValueError:
        raise ValueError(f"amount must be a number, not {text!r}") from None
    if not amount >= 0 or amount == float("inf"):
        raise ValueError(f"amount must be a number ≥ 0, not {text!r}")
    return int(amount) if amount.is_integer() else amount


def _chat_query(request: web.Request) -> tuple[str, int]:
    """``customer_id`` and where to start (``Last-Event-ID`` wins over ``after``) of a chat request."""
    customer_id = request.query.get("customer_id", "")
    if not customer_id:
        raise _Refusal(400, "customer_id is required")
    after = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not after.isdigit():
        raise _Refusal(400, f"after must be a sequence number ≥ 0, not {after!r}")
    return customer_id, int(after)


async def _write_event(response: web.StreamResponse, event: str, data: dict[str, Any], event_id: int = 0) -> None:
    """Write one Server-Sent Event; ``json.dumps`` never emits a newline, so one data line suffices."""
    lines = [f"event: {event}"] if event else []
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False))
    await response.write(("\n".join(lines) + "\n\n").encode())


def _browser_url(text: str, base: str) -> str | None:
    """Where a browser loads ``text`` from: our own uploads by path (the page may be opened from
    another machine), other http(s) URLs as they are, anything else (``javascript:``…) not at all."""
    if text.startswith(f"{base}/uploads/"):
        return text[len(base) :]
    return text if re.match(r"https?://", text, re.IGNORECASE) else None


def _chat_item(event: dict[str, Any], base: str) -> str:
    """One ``<li>`` of the conversation; ``chat.js`` builds the same markup for live events."""
    kind = event["kind"]
    content = event["content"]
    if kind in ("order", "payment") and isinstance(content, Mapping):
        label = "付款 / Payment" if kind == "payment" else "订单 / Order"
        body = html.escape(f"{label}: {content.get('amount')} · {content.get('order_id')}")
    else:
        text = str(content)
        url = None if kind == "text" else _browser_url(text, base)
        if url is None:
            body = html.escape(text)
        else:
            href = html.escape(url, quote=True)
            alt = html.escape(text, quote=True)
            inner = f'<img src="{href}" alt="{alt}">' if kind == "image" else html.escape(text)
            body = f'<a href="{href}" target="_blank" rel="noopener">{inner}</a>'
    side = "customer" if event["from"] == "customer" else "shop"
    meta = html.escape(f"{event['at'][11:19]} · {kind}")
    return f'<li class="{side}" data-seq="{event["seq"]}">{body}<small>{meta}</small></li>'


_EMPTY_ITEM = '<li id="empty"><i>还没有消息 / nothing yet</i></li>'

# string.Template, not str.format: the CSS is full of braces.
_PAGE = Template("""<!doctype html>
<html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IM bridge simulator · $customer_id</title>
<style>
* { box-sizing: border-box }
body { font-family: system-ui, sans-serif; margin: 0; background: #ededed; display: flex;
       flex-direction: column; height: 100vh; height: 100dvh }
header, footer { background: #fff; padding: .4em .6em }
form { display: flex; flex-wrap: wrap; gap: .4em; align-items: center; margin: .3em 0 }
label { display: flex; gap: .3em; align-items: center; flex: 1 }
input, button { font-size: 1rem; padding: .35em; min-width: 0 }
input[name=text], label input { flex: 1 }
#log { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .6em }
#log li { width: fit-content; max-width: 80%; margin: .35em 0; padding: .45em .65em; border-radius: .6em;
          background: #fff; overflow-wrap: anywhere }
#log li.customer { margin-left: auto; background: #a9e87b }
#log img { display: block; max-width: 100%; max-height: 45vh }
#log small { display: block; color: #666; font-size: .72em; margin-top: .2em }
.on { color: #080 } .off { color: #b00 } #note { color: #b00 }
</style></head>
<body>
<header>
<form id="who" method="get" action="/">
  <label>顾客 / Customer <input name="customer_id" value="$customer_id" required></label>
  <label>昵称 / Name <input name="name" value="$name"></label>
  <button>切换 / Switch</button>
</form>
<div>店铺系统 / Shop system: <span id="status" class="$status_class">$status</span>
  <span id="note" role="alert"></span></div>
</header>
<ul id="log" data-customer="$customer_id" data-name="$name" data-last="$last" data-base="$base">
$items
</ul>
<footer>
<form id="say" method="post" action="/">
  <input type="hidden" name="customer_id" value="$customer_id"><input type="hidden" name="name" value="$name">
  <input name="text" placeholder="输入消息 / Type a message" autocomplete="off" required>
  <button>发送 / Send</button>
</form>
<form id="photo" method="post" action="/" enctype="multipart/form-data">
  <input type="hidden" name="customer_id" value="$customer_id"><input type="hidden" name="name" value="$name">
  <input type="hidden" name="action" value="photo">
  <input type="file" name="file" accept="image/*" required>
  <button>发图 / Send photo</button>
</form>
<form id="pay" method="post" action="/">
  <input type="hidden" name="customer_id" value="$customer_id"><input type="hidden" name="name" value="$name">
  <input type="hidden" name="action" value="pay">
  <label>金额 / Amount <input name="amount" type="number" min="0" step="0.01" value="0" inputmode="decimal"></label>
  <button>付款 / Pay</button>
</form>
</footer>
<script src="/chat.js" defer></script>
</body></html>
""")

# Builds every message with createElement / textContent, never innerHTML: message content is data.
_CHAT_JS = r""""use strict";
(() => {
  const log = document.getElementById("log");
  const note = document.getElementById("note");
  const status = document.getElementById("status");
  const { customer, name, base } = log.dataset;
  let last = Number(log.dataset.last) || 0;

  const el = (tag, props, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };

  // Same rule as the server: our uploads by path, other http(s) URLs as they are, nothing else.
  const browserUrl = (text) => {
    if (text.startsWith(base + "/uploads/")) return text.slice(base.length);
    return /^https?:\/\//i.test(text) ? text : null;
  };

  const body = (ev) => {
    const c = ev.content;
    if ((ev.kind === "order" || ev.kind === "payment") && c && typeof c === "object") {
      return (ev.kind === "payment" ? "付款 / Payment" : "订单 / Order") + `: ${c.amount} · ${c.order_id}`;
    }
    const text = String(c);
    const url = ev.kind === "text" ? null : browserUrl(text);
    if (url === null) return text;
    const inner = ev.kind === "image" ? el("img", { src: url, alt: text }) : text;
    return el("a", { href: url, target: "_blank", rel: "noopener" }, inner);
  };

  const show = (ev) => {
    if (ev.seq <= last) return;
    last = ev.seq;
    document.getElementById("empty")?.remove();
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
    const item = el("li", { className: ev.from === "customer" ? "customer" : "shop" },
                    body(ev), el("small", {}, `${ev.at.slice(11, 19)} · ${ev.kind}`));
    item.dataset.seq = ev.seq;
    log.append(item);
    if (atBottom) log.scrollTop = log.scrollHeight;
  };

  const setStatus = (connected) => {
    status.textContent = connected === null ? "simulator unreachable" : connected ? "connected" : "not connected";
    status.className = connected ? "on" : "off";
  };

  const events = new EventSource(`/chat/events?customer_id=${encodeURIComponent(customer)}&after=${last}`);
  events.onmessage = (e) => show(JSON.parse(e.data));
  events.addEventListener("status", (e) => setStatus(JSON.parse(e.data).connected));
  events.onerror = () => setStatus(null);  // EventSource reconnects by itself

  const who = { customer_id: customer, name };
  const postJson = (path, data) => fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
  });

  const handle = (id, send, reset) => {
    const form = document.getElementById(id);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      note.textContent = "";
      try {
        const resp = await send(form);
        if (!resp.ok) {
          const answer = await resp.json().catch(() => ({}));
          note.textContent = answer.error || `HTTP ${resp.status}`;
        } else if (reset) {
          form.reset();
        }
      } catch (err) {
        note.textContent = String(err);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  };

  handle("say", (f) => postJson("/customer/message", { ...who, kind: "text", content: f.elements.text.value }), true);
  const photo = handle("photo", (f) => fetch("/customer/photo", { method: "POST", body: new FormData(f) }), true);
  photo.elements.file.addEventListener("change", () => photo.elements.file.files.length && photo.requestSubmit());
  handle("pay", (f) => postJson("/customer/pay", { ...who, amount: Number(f.elements.amount.value || 0) }), false);
  log.scrollTop = log.scrollHeight;
})();
"""


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
    sim = BridgeSimulator(args.host, args.ws_port, args.http_port, args.record, uploads_dir=args.uploads)
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
    parser.add_argument(
        "--uploads",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep customers' photos here (default: a temporary folder, removed on exit)",
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
