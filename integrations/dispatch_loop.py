"""The Dispatch actor's loop: hand-offs to designers, result e-mail and staff notifications.

Runs in the Dispatch actor's loop thread; hand-offs are moved by integrations/designer_handoffs.py. Mail rows
are sent with their stable Message-ID and settled with an outcome for the customer's conversation (mail_sent /
mail_failed). Staff notifications are merged into as few WeChat Work messages as the robot's limits allow and
retried until delivered; without WECHAT_WEBHOOK they go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp

from integrations.designer_handoffs import HANDOFF_POLL_S, DesignerHandoffs
from integrations.mailer import MailError, build_files_mail, build_result_mail, mailer_from_settings, split_by_size
from integrations.tuhui import DispatchClient
from integrations.wechat import MESSAGES_PER_MINUTE, RateWindow, WebhookError, merge_notifications, post_markdown
from observability.json_logs import ids_in, log_ids
from persistence import jobs, outbox
from persistence.connection import atomic
from persistence.models import Conversation
from protocol.settings import Settings

log = logging.getLogger("shop.dispatch")

MAIL_TRIES = 3  # temporary SMTP failures before the customer is asked for another address
MAIL_RETRY_S = 2.0
STAFF_RETRY_MAX_S = 60.0
STAFF_MIN_GAP_S = 60.0 / MESSAGES_PER_MINUTE  # the robot's 20 a minute, spread out
MAIL_SUBJECT = "您的修图结果"
MAIL_BODY = "您好,附件是您的修图结果,请查收。如需调整请在聊天里告诉我们。\n\n—— 修图小店"


class DispatchLoop:
    """Runs in the Dispatch actor's loop thread; database work on one worker thread, in order."""

    def __init__(self, settings: Settings, post: Any) -> None:
        self.settings = settings
        self.post = post
        self.dispatch_key = settings.TUHUI_DISPATCH_KEY.get_secret_value() if settings.TUHUI_DISPATCH_KEY else None
        self.mailer = mailer_from_settings(settings)
        self.webhook = settings.WECHAT_WEBHOOK.get_secret_value() if settings.WECHAT_WEBHOOK else None
        self.window = RateWindow()
        self.last_post = 0.0
        self._wake = asyncio.Event()
        self.counts = {"mailed": 0, "mail_failed": 0, "staff_messages": 0, "staff_notes": 0, "handoffs_assigned": 0,
                       "handoffs_queued": 0, "handoffs_completed": 0, "dispatch_errors": 0}
        self.handoffs = DesignerHandoffs(settings.public_base_url, self._db, post, self.wake, self.counts)

    def wake(self) -> None:
        """From the actor (via call_soon_threadsafe): look at the outbox now."""
        self._wake.set()

    async def _db(self, fn: Any, *args: Any) -> Any:
        # In the caller's context, so what the worker thread logs names the same hand-off or mail.
        return await asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, fn, *args)

    async def run(self) -> None:
        """Serve the outbox forever; the sweep interval bounds how long a lost nudge delays work."""
        async with aiohttp.ClientSession() as session:
            client = (DispatchClient(self.settings.TUHUI_DISPATCH_URL, self.dispatch_key, session)
                      if self.settings.TUHUI_DISPATCH_URL else None)
            while True:
                self._wake.clear()
                busy = False
                try:
                    if client is not None:
                        busy = await self.handoffs.advance_due(client)
                    await self._mail()
                    await self._staff(session)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatch pass failed; retried on the next wake-up")
                wait = HANDOFF_POLL_S if busy else self.settings.SWEEP_INTERVAL_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _mail(self) -> None:
        for row in await self._db(outbox.pending, "mail", time.time(), 20):
            p = outbox.payload_of(row)
            with log_ids(**ids_in(p)):  # the mailer's lines name the job and customer
                try:
                    if "attachments" in p:
                        await self._mail_order(row.key, p)
                    else:
                        msg = build_result_mail(p["to"], self.mailer.sender, MAIL_SUBJECT, MAIL_BODY,
                                                Path(p["attachment"]), p["message_id"])
                        await self._db(self.mailer.send, msg)
                except MailError as exc:
                    if exc.permanent or row.attempts + 1 >= MAIL_TRIES:
                        await self._outcome(row.key, p, False, str(exc))
                    else:
                        await self._db(outbox.postpone, row.id, time.time(),
                                       time.time() + MAIL_RETRY_S * 2 ** row.attempts, str(exc))
                        self._wake.set()
                    continue
                except (OSError, KeyError, TypeError) as exc:  # the result file is gone or the row is damaged
                    await self._outcome(row.key, p, False, f"cannot build the mail: {type(exc).__name__}")
                    continue
                await self._outcome(row.key, p, True, None)

    async def _mail_order(self, key: str, p: dict[str, Any]) -> None:
        """An order's results in one mail, or in numbered mails when together they pass the server's limit; each
        part sent is recorded, so a retry after a crash sends only the parts still to go."""
        files = [(path, f"第{a['number']}张{path.suffix}" if a["number"] else path.name)
                 for a in p["attachments"] for path in [Path(a["path"])]]
        limit = await self._db(self.mailer.size_limit)
        parts = split_by_size([f.stat().st_size for f, _ in files], limit)
        for n, part in enumerate(parts, start=1):
            if n in p.get("parts_sent", []):
                continue
            several = len(parts) > 1
            subject = f"{MAIL_SUBJECT}({n}/{len(parts)})" if several else MAIL_SUBJECT
            message_id = p["message_id"].replace("@", f".p{n}@") if several else p["message_id"]
            msg = build_files_mail(p["to"], self.mailer.sender, subject, MAIL_BODY, [files[i] for i in part],
                                   message_id)
            await self._db(self.mailer.send, msg)
            p["parts_sent"] = [*p.get("parts_sent", []), n]
            await self._db(outbox.replace_payload, key, p, time.time())

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
        # Paced as well as capped: a burst of events waits out the gap and leaves as one merged message
        # instead of spending the minute's 20 messages in its first seconds.
        gap = self.last_post + STAFF_MIN_GAP_S - time.time()
        if gap > 0 or not self.window.allow(time.time()):
            delay = max(gap, self.window.wait_s(time.time()))
            asyncio.get_running_loop().call_later(delay, self._wake.set)
            return
        self.last_post = time.time()
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
    "mail_failed": "邮件发送失败",
    "qa_failed": "质检没过,结果已发客户,请检查",
    "underpaid": "付款不够,还没开始做",
    "overpaid": "客户多付了,请退款",
    "dispatch_new": "新派单",
    "dispatch_queued": "派单排队中(没有设计师在线)",
    "dispatch_failing": "派单系统连不上",
}


def _mail_outcome(key: str, p: dict[str, Any], ok: bool, error: str | None) -> int | None:
    t = time.time()
    with atomic():
        outcome: dict[str, Any] = {"seq": p["seq"], "error": error or ""}
        kind, ref = "mail_sent" if ok else "mail_failed", p["job_id"]
        if "order_key" in p:  # an order's mail: its outcome goes to the order, naming the jobs it carried
            kind, ref = "order_" + kind, p["order_key"]
            outcome["jobs"] = [a["job_id"] for a in p["attachments"]]
        event_id = jobs.settle(key, "delivered" if ok else "failed", kind, p["customer_id"], ref, outcome, t,
                               error=error)
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
