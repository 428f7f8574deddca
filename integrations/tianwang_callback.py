"""Tianwang status callbacks: POSTed in order per task, retried with backoff until delivered.

Runs in the Scheduler actor's loop thread and reads its work from the outbox, so a restart
simply carries on where the last process stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from integrations.http_limits import AnswerTooLarge, read_capped
from persistence import outbox
from persistence.models import Outbox

log = logging.getLogger("shop.callbacks")

TIMEOUT_S = 10.0
IDLE_POLL_S = 5.0


def sign(secret: bytes, body: bytes) -> str:
    """X-Signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def backoff(attempts: int, cap: float) -> float:
    """Pause after the attempts-th failure: 1 s, 2 s, 4 s … capped."""
    return min(2.0 ** max(attempts - 1, 0), cap)


class CallbackDeliverer:
    """Delivers each task's oldest pending callback; the next waits until it is delivered."""

    def __init__(self, url: str, secret: bytes | None, retry_cap_s: float) -> None:
        self.url, self.secret, self.retry_cap_s = url, secret, retry_cap_s
        self.db = ThreadPoolExecutor(1, thread_name_prefix="callbacks-db")
        self._wake = asyncio.Event()
        self.counts = {"delivered": 0, "failed_tries": 0}

    def wake(self) -> None:
        """From the actor (via call_soon_threadsafe): new callbacks are queued."""
        self._wake.set()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def run(self) -> None:
        """Deliver forever."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wake.clear()
                heads: list[Outbox] = await self._db(outbox.first_pending_per_ref, "callback", 500)
                now = time.time()
                due = [h for h in heads if h.next_attempt_at <= now]
                if due:
                    await asyncio.gather(*(self._deliver(session, h) for h in due))
                    continue
                nxt = min((h.next_attempt_at for h in heads), default=now + IDLE_POLL_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, min(nxt - now, IDLE_POLL_S)))

    async def _deliver(self, session: aiohttp.ClientSession, row: Outbox) -> None:
        body = row.payload.encode()
        headers = {"Content-Type": "application/json", "X-Callback-Id": row.key}
        if self.secret:
            headers["X-Signature"] = sign(self.secret, body)
        try:
            async with session.post(self.url, data=body, headers=headers) as resp:
                with contextlib.suppress(AnswerTooLarge):  # the status decides; the body is only drained
                    await read_capped(resp)
                if 200 <= resp.status < 300:
                    await self._db(outbox.deliver, row.id, time.time())
                    self.counts["delivered"] += 1
                    return
                error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.counts["failed_tries"] += 1
        now = time.time()
        await self._db(outbox.postpone, row.id, now, now + backoff(row.attempts + 1, self.retry_cap_s), error)
