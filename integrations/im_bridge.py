"""The IM bridge client (SPEC §5): one WebSocket, reconnecting with backoff, persist-then-ack.

Runs in the Gateway actor's loop thread. Database work runs on one worker thread so frames
are stored in arrival order; results reach the actor through `post`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import websockets
from pydantic import ValidationError
from websockets.frames import CloseCode

from integrations.phrasing import Phrased
from persistence import messages, outbox
from protocol.im import (
    MAX_FRAME_BYTES,
    AckFrame,
    MessageFrame,
    SendFailedFrame,
    SendFrame,
    SentFrame,
    inbound_frame,
)

log = logging.getLogger("shop.gateway")


class _WithoutConnection(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' connections add themselves to each record they log (extra={"websocket": …}); in an actor the
    record is pickled to Thespian's logging process, and a connection does not pickle (with LOG_LEVEL=DEBUG the
    gateway failed on its first record). The records go on without it."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.pop("extra", None)
        return msg, kwargs


WS_LOGGER = _WithoutConnection(logging.getLogger("websockets.client"), {})

INFLIGHT_RESEND_S = 30.0  # a send the bridge has not answered for this long is sent again (same send_id)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 10.0
PHRASING_AT_ONCE = 4

# (customer_id, fixed reply) → the words to send; blocking, run on the phrasing threads.
PhraseFn = Callable[[str, str], Phrased]


class BridgeClient:
    """Connects to the bridge, stores and acks inbound messages, sends the outbox's im_send rows."""

    def __init__(self, url: str, post: Callable[[Any], None], phrase: PhraseFn | None = None,
                 phrase_limit_s: float = 4.0) -> None:
        """``phrase``: rewords replies flagged ``rephrase`` before their first send, within ``phrase_limit_s``."""
        self.url = url
        self.post = post
        self.db = ThreadPoolExecutor(1, thread_name_prefix="gateway-db")
        self.phrase, self.phrase_limit_s = phrase, phrase_limit_s
        self.phrasers = ThreadPoolExecutor(PHRASING_AT_ONCE, thread_name_prefix="gateway-phrase")
        self.phrasing: dict[str, str] = {}  # customer → key of the reply being phrased
        self.ws: Any = None
        self.inflight: dict[str, float] = {}
        self._flush = asyncio.Event()
        self._arrived: list[MessageFrame | SentFrame | SendFailedFrame] = []
        self._work = asyncio.Event()
        self.connected_since: float | None = None
        self.counts = {"received": 0, "duplicates": 0, "sent": 0, "settled": 0, "connects": 0, "oversize_frames": 0,
                       "phrased": 0, "phrase_fallbacks": 0}

    def request_flush(self) -> None:
        """From the actor (via call_soon_threadsafe): look at the outbox now."""
        self._flush.set()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def run(self) -> None:
        """Connect, serve, reconnect with jittered exponential backoff; forever."""
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with websockets.connect(self.url, ping_interval=10, ping_timeout=10, max_size=MAX_FRAME_BYTES,
                                              open_timeout=5, logger=WS_LOGGER) as ws:
                    self.ws, backoff = ws, BACKOFF_MIN_S
                    self.connected_since = time.time()
                    self.counts["connects"] += 1
                    self.inflight.clear()
                    log.info("connected to the IM bridge")
                    self._arrived.clear()
                    sender = asyncio.create_task(self._sender())
                    storer = asyncio.create_task(self._storer(ws))
                    try:
                        async for raw in ws:
                            self._on_frame(raw)
                    finally:
                        sender.cancel()
                        storer.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if getattr(getattr(exc, "sent", None), "code", None) == CloseCode.MESSAGE_TOO_BIG:
                    self.counts["oversize_frames"] += 1
                    log.error("the IM bridge sent a frame over the %d-byte limit: the connection was closed "
                              "(1009) and is opened again; the bridge must not send such a frame again",
                              MAX_FRAME_BYTES)
                else:
                    log.warning("IM bridge connection lost or refused (%s); retrying in %.1fs",
                                type(exc).__name__, backoff)
            self.ws, self.connected_since = None, None
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _sender(self) -> None:
        while True:
            self._flush.clear()
            await self._send_pending()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush.wait(), timeout=INFLIGHT_RESEND_S / 3)

    async def _send_pending(self) -> None:
        now = time.time()
        fresh = frozenset(k for k, at in self.inflight.items() if now - at < INFLIGHT_RESEND_S)
        rows = await self._db(outbox.pending, "im_send", now, 200, fresh)
        held = set(self.phrasing)  # a customer's later sends wait for the reply being phrased: order is kept
        for row in rows:
            if self.ws is None:
                return
            payload = json.loads(row.payload)
            customer = payload.get("customer_id", "")
            if customer in held:
                continue
            if payload.get("rephrase") and self.phrase is not None:
                held.add(customer)
                self.phrasing[customer] = row.key
                asyncio.create_task(self._phrase_then_send(row.key, payload))
                continue
            await self._send(row.key, payload, now)
        if len(rows) == 200:
            self._flush.set()

    async def _send(self, key: str, payload: dict[str, Any], now: float) -> None:
        await self.ws.send(SendFrame(**payload).model_dump_json())
        self.inflight[key] = now
        self.counts["sent"] += 1

    async def _phrase_then_send(self, key: str, payload: dict[str, Any]) -> None:
        """Reword, store the words (a resend after a crash repeats them), then send."""
        assert self.phrase is not None
        fixed, customer = payload["content"], payload["customer_id"]
        try:
            try:
                phrased = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    self.phrasers, self.phrase, customer, fixed), self.phrase_limit_s)
            except Exception as exc:  # the time limit, or anything the phrasing thread ran into
                log.warning("send %s: phrasing gave up (%s); the fixed reply goes out", key, type(exc).__name__,
                            extra={"send_id": key, "customer_id": customer})
                phrased = Phrased(fixed, f"fixed: {type(exc).__name__}")
            self.counts["phrased" if phrased.source == "model" else "phrase_fallbacks"] += 1
            worded = {k: v for k, v in payload.items() if k != "rephrase"}
            worded.update(content=phrased.text, fixed=fixed, worded_by=phrased.source)
            now = time.time()
            if await self._db(outbox.replace_payload, key, worded, now) and self.ws is not None:
                await self._send(key, worded, now)
        except Exception as exc:  # the connection dropped: the stored words go out after reconnecting
            log.warning("send %s: not sent after phrasing (%s)", key, type(exc).__name__,
                        extra={"send_id": key, "customer_id": customer})
        finally:
            self.phrasing.pop(customer, None)
            self._flush.set()

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = inbound_frame.validate_json(raw)
        except ValidationError as exc:
            log.warning("ignored a malformed bridge frame: %s", str(exc).splitlines()[0])
            return
        self._arrived.append(frame)
        self._work.set()

    async def _storer(self, ws: Any) -> None:
        """Group commit: every frame that arrived while the last batch was stored goes in the next one."""
        while True:
            await self._work.wait()
            self._work.clear()
            batch, self._arrived = self._arrived, []
            inbound = [f for f in batch if isinstance(f, MessageFrame)]
            answers = [(f.send_id, "delivered" if isinstance(f, SentFrame) else "failed",
                        None if isinstance(f, SentFrame) else (f.error or "send failed"))
                       for f in batch if isinstance(f, SentFrame | SendFailedFrame)]
            if inbound:
                stored = await self._db(messages.store_inbound, inbound, time.time())
                # Acknowledged only now that the messages are on disk.
                for frame in inbound:
                    await ws.send(AckFrame(msg_id=frame.msg_id).model_dump_json())
                for item, created in stored:
                    self.counts["received" if created else "duplicates"] += 1
                    if created:
                        self.post(("route", item))
            if answers:
                for row in await self._db(outbox.settle_many, answers, time.time()):
                    self.counts["settled"] += 1
                    self.post(("settled", row.ref))
                for key, outcome, error in answers:
                    self.inflight.pop(key, None)
                    if outcome == "failed":
                        log.warning("send %s: the bridge could not deliver it: %s", key, error, extra={"send_id": key})

    def detail(self) -> dict[str, Any]:
        """Figures for the health report."""
        return {"connected": self.ws is not None, "inflight": len(self.inflight), **self.counts}
