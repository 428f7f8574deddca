"""WeChat Work group robot stand-in: records webhook posts and answers like the robot does (SPEC §4).

``POST /cgi-bin/webhook/send?key=K`` takes ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (or
``text``) and answers ``{"errcode": 0, "errmsg": "ok"}``, or the robot's own refusals: a missing key
(93000), an unknown msgtype (40008), markdown over 4,096 bytes (40058), more than ``per_minute`` posts
a minute for one key (45009). Control API:

``POST /_control/errcode``
    ``{"errcode": N, "count"?: n}``: answer the next ``n`` posts (all, without ``count``) with ``N``; 0 resets.
``GET /_control/messages[?accepted=1]``
    Every post recorded, oldest first: ``{"seq", "key", "msgtype", "content", "body", "errcode", "at"}``.
``DELETE /_control/messages``
    Forget what was recorded.

Run it with ``python -m standins.webhook_recorder --port 6072``; tests use :class:`WebhookRecorder`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
from typing import Any

from aiohttp import web

from integrations.wechat import MAX_CONTENT_BYTES, MESSAGES_PER_MINUTE, RATE_LIMITED_ERRCODE, RateWindow

log = logging.getLogger("shop.standins.webhook")

WEBHOOK_PATH = "/cgi-bin/webhook/send"
ERRMSGS = {
    0: "ok",
    40008: "invalid message type",
    40035: "invalid parameter",
    40058: f"markdown.content exceed max length {MAX_CONTENT_BYTES}",
    RATE_LIMITED_ERRCODE: "api freq out of limit",
    93000: "invalid webhook url",
}


class WebhookRecorder:
    """In-process robot stand-in: ``await start()``, post to :attr:`url`, read :attr:`messages`, ``await stop()``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, key: str | None = None, per_minute: int | None = None
    ) -> None:
        """Nothing is bound until :meth:`start`; ``port`` 0 picks a free one.

        ``key``: when set, other keys are refused (93000). ``per_minute``: the robot's rate limit per key,
        None = no limit (tests post bursts).
        """
        self.host, self.port, self.key, self.per_minute = host, port, key, per_minute
        self.messages: list[dict[str, Any]] = []
        self._forced_errcode = 0
        self._forced_left: int | None = None
        self._windows: dict[str, RateWindow] = {}
        self._runner: web.AppRunner | None = None

    def url(self, key: str | None = None) -> str:
        """The webhook URL to configure as WECHAT_WEBHOOK."""
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}?key={key or self.key or 'test-robot-key'}"

    @property
    def control_url(self) -> str:
        """Base URL of the control API."""
        return f"http://{self.host}:{self.port}/_control"

    def set_errcode(self, errcode: int, count: int | None = None) -> None:
        """Answer the next ``count`` posts (all, when None) with ``errcode``; 0 answers normally again."""
        self._forced_errcode = errcode
        self._forced_left = None if errcode == 0 else count

    def accepted(self) -> list[dict[str, Any]]:
        """The posts answered with errcode 0."""
        return [m for m in self.messages if m["errcode"] == 0]

    async def start(self) -> None:
        """Bind and serve; afterwards :attr:`port` is the real port."""
        if self._runner is not None:
            raise RuntimeError("WebhookRecorder already started")
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._handle_post)
        app.router.add_post("/_control/errcode", self._handle_errcode)
        app.router.add_get("/_control/messages", self._handle_list)
        app.router.add_delete("/_control/messages", self._handle_clear)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving; the recorded messages stay readable."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _answer_for(self, key: str, body: Any) -> int:
        """The errcode the real robot would give (or the one forced through the control API)."""
        if self._forced_errcode and self._forced_left != 0:
            if self._forced_left is not None:
                self._forced_left -= 1
            return self._forced_errcode
        if not key or (self.key is not None and not hmac.compare_digest(key.encode(), self.key.encode())):
            return 93000
        if not isinstance(body, dict):
            return 40035
        msgtype = body.get("msgtype")
        if msgtype not in ("markdown", "text"):
            return 40008
        section = body.get(msgtype)
        content = section.get("content") if isinstance(section, dict) else None
        if not isinstance(content, str) or not content:
            return 40035
        if msgtype == "markdown" and len(content.encode()) > MAX_CONTENT_BYTES:
            return 40058
        if self.per_minute is not None:
            window = self._windows.setdefault(key, RateWindow(self.per_minute))
            if not window.allow(time.monotonic()):
                return RATE_LIMITED_ERRCODE
        return 0

    async def _handle_post(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        errcode = self._answer_for(key, body)
        msgtype = body.get("msgtype") if isinstance(body, dict) else None
        section = body.get(msgtype) if isinstance(body, dict) and isinstance(msgtype, str) else None
        self.messages.append({
            "seq": len(self.messages) + 1,
            "key": key,
            "msgtype": msgtype,
            "content": section.get("content") if isinstance(section, dict) else None,
            "body": body,
            "errcode": errcode,
            "at": time.time(),
        })
        log.info("webhook post #%d answered errcode %d", len(self.messages), errcode)
        return web.json_response({"errcode": errcode, "errmsg": ERRMSGS.get(errcode, "error")})

    async def _handle_errcode(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            errcode = int(body["errcode"])
            count = None if body.get("count") is None else int(body["count"])
        except (ValueError, TypeError, KeyError):
            return web.json_response({"error": 'expected {"errcode": int, "count"?: int}'}, status=400)
        self.set_errcode(errcode, count)
        return web.json_response({"errcode": errcode, "count": count})

    async def _handle_list(self, request: web.Request) -> web.Response:
        accepted = request.query.get("accepted") in ("1", "true")
        return web.json_response(self.accepted() if accepted else self.messages)

    async def _handle_clear(self, request: web.Request) -> web.Response:
        self.messages.clear()
        return web.json_response({"cleared": True})


async def _run(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    recorder = WebhookRecorder(args.host, args.port, key=args.key, per_minute=args.per_minute or None)
    await recorder.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # platforms without signal handlers
            loop.add_signal_handler(sig, stop.set)
    try:
        print(f"WeChat robot stand-in: webhook {recorder.url()}  control {recorder.control_url}", flush=True)
        await stop.wait()
    finally:
        await recorder.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m standins.webhook_recorder [--host H] [--port N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m standins.webhook_recorder", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6072, help="port, 0 = any (default 6072)")
    parser.add_argument("--key", default=None, help="the only robot key accepted (default: any)")
    parser.add_argument(
        "--per-minute", type=int, default=MESSAGES_PER_MINUTE,
        help=f"posts a minute per key before errcode 45009, 0 = no limit (default {MESSAGES_PER_MINUTE})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every post")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
