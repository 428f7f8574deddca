"""Dispatch: result e-mail and staff notifications from the outbox, in its own loop thread.

Mail rows are sent with their stable Message-ID and settled with an outcome for the customer's
conversation (mail_sent / mail_failed). Staff notifications are merged into as few WeChat Work
messages as the robot's limits allow and retried until delivered; without WECHAT_WEBHOOK they go
to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from thespian.actors import ActorAddress

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from integrations.mailer import MailError, build_result_mail, mailer_from_settings
from integrations.wechat import RateWindow, WebhookError, merge_notifications, post_markdown
from persistence import jobs, outbox
from persistence.db import atomic
from persistence.models import Conversation
from protocol.messages import JobNotice, WorkNudge
from protocol.settings import Settings

log = logging.getLogger("shop.dispatch")

MAIL_TRIES = 3  # temporary SMTP failures before the customer is asked for another address
MAIL_RETRY_S = 2.0
STAFF_RETRY_MAX_S = 60.0
MAIL_SUBJECT = "您的修图结果"
MAIL_BODY = "您好,附件是您的修图结果,请查收。如需调整请在聊天里告诉我们。\n\n—— 修图小店"


class DispatchLoop:
    """Runs in the Dispatch actor's loop thread; database work on one worker thread, in order."""

    def __init__(self, settings: Settings, post: Any) -> None:
        self.settings = settings
        self.post = post
        self.mailer = mailer_from_settings(settings)
        self.webhook = settings.WECHAT_WEBHOOK.get_secret_value() if settings.WECHAT_WEBHOOK else None
        self.window = RateWindow()
        self._wake = asyncio.Event()
        self.counts = {"mailed": 0, "mail_failed": 0, "staff_messages": 0, "staff_notes": 0}

    def wake(self) -> None:
        """From the actor (via call_soon_threadsafe): look at the outbox now."""
        self._wake.set()

    async def _db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def run(self) -> None:
        """Serve the outbox forever; the sweep interval bounds how long a lost nudge delays work."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._wake.clear()
                try:
                    await self._mail()
                    await self._staff(session)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatch pass failed; retried on the next wake-up")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.SWEEP_INTERVAL_S)

    async def _mail(self) -> None:
        for row in await self._db(outbox.pending, "mail", time.time(), 20):
            p = outbox.payload_of(row)
            try:
                msg = build_result_mail(p["to"], self.mailer.sender, MAIL_SUBJECT, MAIL_BODY, Path(p["attachment"]),
                                        p["message_id"])
                await self._db(self.mailer.send, msg)
            except MailError as exc:
                if exc.permanent or row.attempts + 1 >= MAIL_TRIES:
                    await self._outcome(row.key, p, False, str(exc))
                else:
                    await self._db(outbox.postpone, row.id, time.time(), time.time() + MAIL_RETRY_S * 2 ** row.attempts,
                                   str(exc))
                    self._wake.set()
                continue
            except (OSError, KeyError, TypeError) as exc:  # the result file is gone or the row is damaged
                await self._outcome(row.key, p, False, f"cannot build the mail: {type(exc).__name__}")
                continue
            await self._outcome(row.key, p, True, None)

    async def _outcome(self, key: str, p: dict[str, Any], ok: bool, error: str | None) -> None:
        event_id = await self._db(_mail_outcome, key, p, ok, error)
        self.counts["mailed" if ok else "mail_failed"] += 1
        if event_id is not None:
            self.post(("outcome", p["customer_id"], event_id))

    async def _staff(self, session: aiohttp.ClientSession) -> None:
        rows = await self._db(outbox.pending, "staff", time.time(), 200)
        if not rows:
            return
        notes = [_markdown(outbox.payload_of(r)) for r in rows]
        if self.webhook is None:
            for note in notes:
                log.warning("staff notification (no WECHAT_WEBHOOK): %s", note.replace("\n", " | "))
            await self._db(_deliver_all, [r.id for r in rows])
            self.counts["staff_notes"] += len(rows)
            return
        if not self.window.allow(time.time()):
            await asyncio.sleep(self.window.wait_s(time.time()))
            self._wake.set()
            return
        merged = merge_notifications(notes)
        # The robot takes one message now; what else is waiting is merged again on the next pass.
        first = merged[0]
        covered = _covered(notes, first)
        try:
            await post_markdown(session, self.webhook, first)
        except WebhookError as exc:
            delay = exc.retry_after_s or min(STAFF_RETRY_MAX_S, 2.0 * 2 ** rows[0].attempts)
            await self._db(_postpone_all, [r.id for r in rows[:covered]], time.time() + delay, str(exc))
            return
        await self._db(_deliver_all, [r.id for r in rows[:covered]])
        self.counts["staff_messages"] += 1
        self.counts["staff_notes"] += covered
        if covered < len(rows):
            self._wake.set()


def _covered(notes: list[str], message: str) -> int:
    """How many of notes (in order) the first merged message carries."""
    n = 0
    for note in notes:
        if note[:200] in message:
            n += 1
        else:
            break
    return max(n, 1)


def _markdown(p: dict[str, Any]) -> str:
    lines = [f"**{_EVENT_TITLES.get(p.get('event', ''), p.get('event', ''))}**", f"> 客户: {p.get('customer_id')}"]
    if p.get("job_id"):
        lines.append(f"> 任务: {p['job_id']}")
    lines.append(p.get("text", ""))
    return "\n".join(lines)


_EVENT_TITLES = {
    "render_failed": "渲染失败,需要人工",
    "qa_failed": "质检未通过,请人工检查",
    "payment_without_image": "客户付款但没有图片",
    "payment_manual": "付款待人工处理(自动修图已暂停)",
    "mail_failed": "邮件发送失败",
}


def _mail_outcome(key: str, p: dict[str, Any], ok: bool, error: str | None) -> int | None:
    t = time.time()
    with atomic():
        event_id = jobs.settle(key, "delivered" if ok else "failed", "mail_sent" if ok else "mail_failed",
                               p["customer_id"], p["job_id"], {"seq": p["seq"], "error": error or ""}, t, error=error)
        if event_id is not None:
            Conversation.update(email=p["to"], email_status="sent" if ok else "failed").where(
                Conversation.customer_id == p["customer_id"]).execute()
    return event_id


def _deliver_all(ids: list[int]) -> None:
    t = time.time()
    for row_id in ids:
        outbox.deliver(row_id, t)


def _postpone_all(ids: list[int], next_at: float, error: str) -> None:
    t = time.time()
    for row_id in ids:
        outbox.postpone(row_id, t, next_at, error)


class Dispatch(ServiceActor):
    """A leaf actor owning the mail and notification thread."""

    kind = "dispatch"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.bridge = ThreadBridge("dispatch")
        self.loop = DispatchLoop(self.settings, self.bridge.post)
        self.bridge.start(self.loop.run)
        self.catch_up()

    def on_timer(self, name: str) -> None:
        if name == "catch-up" and self.bridge is not None:
            self.bridge.call(self.loop.wake)

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkNudge):
            if self.bridge is not None:
                self.bridge.call(self.loop.wake)
        else:
            super().on_message(msg, sender)

    def on_bridge_items(self, items: list[Any]) -> None:
        for what, customer_id, event_id in items:
            if what == "outcome" and self.book is not None:
                self.tell(self.book.conversations, JobNotice(customer_id=customer_id, event_ids=[event_id]))

    def detail(self) -> dict[str, Any]:
        return dict(self.loop.counts) if self.bridge is not None else {}
