"""Dispatch: hand-offs to designers, result e-mail and staff notifications, in its own loop thread.

Hand-offs (SPEC §3 workflow 3) each become one task of the designer dispatch API: created under the
hand-off's idempotency key (sent as a header and written into the description, so a re-drive after a
crash finds the task instead of making a second one), assigned to the queue's suggestion or the online
designer with the fewest open tasks, or queued until one comes online; assigned tasks are watched until
a designer completes them. Mail rows are sent with their stable Message-ID and settled with an outcome
for the customer's conversation (mail_sent / mail_failed). Staff notifications are merged into as few
WeChat Work messages as the robot's limits allow and retried until delivered; without WECHAT_WEBHOOK
they go to the log.
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
from thespian.actors import ActorAddress

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from integrations.mailer import MailError, build_files_mail, build_result_mail, mailer_from_settings, split_by_size
from integrations.tuhui import DispatchClient, DispatchError, DispatchRejected
from integrations.wechat import MESSAGES_PER_MINUTE, RateWindow, WebhookError, merge_notifications, post_markdown
from observability.json_logs import ids_in, log_ids
from persistence import handoffs, jobs, outbox
from persistence.connection import atomic
from persistence.models import Conversation, Handoff
from protocol.dispatch import pick_designer, task_name
from protocol.messages import JobNotice, WorkNudge
from protocol.settings import Settings

log = logging.getLogger("shop.dispatch")

MAIL_TRIES = 3  # temporary SMTP failures before the customer is asked for another address
MAIL_RETRY_S = 2.0
STAFF_RETRY_MAX_S = 60.0
STAFF_MIN_GAP_S = 60.0 / MESSAGES_PER_MINUTE  # the robot's 20 a minute, spread out
MAIL_SUBJECT = "您的修图结果"
MAIL_BODY = "您好,附件是您的修图结果,请查收。如需调整请在聊天里告诉我们。\n\n—— 修图小店"
HANDOFF_POLL_S = 2.0  # how soon a queued hand-off looks for a designer again, and an open one is re-checked
COMPLETION_POLL_S = 10.0  # how often an assigned task's status is read
HANDOFF_RETRY_MAX_S = 60.0
HANDOFF_TRIES_BEFORE_TELLING = 3  # failed tries of the dispatch API before the customer hears "queued"


class DispatchLoop:
    """Runs in the Dispatch actor's loop thread; database work on one worker thread, in order."""

    def __init__(self, settings: Settings, post: Any) -> None:
        self.settings = settings
        self.post = post
        self.base_url = settings.public_base_url
        self.dispatch_key = settings.TUHUI_DISPATCH_KEY.get_secret_value() if settings.TUHUI_DISPATCH_KEY else None
        self.mailer = mailer_from_settings(settings)
        self.webhook = settings.WECHAT_WEBHOOK.get_secret_value() if settings.WECHAT_WEBHOOK else None
        self.window = RateWindow()
        self.last_post = 0.0
        self._wake = asyncio.Event()
        self.counts = {"mailed": 0, "mail_failed": 0, "staff_messages": 0, "staff_notes": 0, "handoffs_assigned": 0,
                       "handoffs_queued": 0, "handoffs_completed": 0, "dispatch_errors": 0}

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
                        busy = await self._handoffs(client)
                    await self._mail()
                    await self._staff(session)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatch pass failed; retried on the next wake-up")
                wait = HANDOFF_POLL_S if busy else self.settings.SWEEP_INTERVAL_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    # -- hand-offs --------------------------------------------------------------------------------
    async def _handoffs(self, client: DispatchClient) -> bool:
        """Move every due hand-off one step; whether any is still open (then the loop polls sooner)."""
        t = time.time()
        for row in await self._db(handoffs.in_status, "new", t) + await self._db(handoffs.in_status, "queued", t):
            with log_ids(customer_id=row.customer_id, job_id=row.job_id):
                await self._advance(client, row)
        for row in await self._db(handoffs.in_status, "assigned", t):
            with log_ids(customer_id=row.customer_id, job_id=row.job_id):
                await self._check_completed(client, row)
        return bool(await self._db(_any_open))

    async def _advance(self, client: DispatchClient, row: Handoff) -> None:
        """Create the row's task if it has none, then assign it, or queue it when no designer is online."""
        try:
            task_id = row.task_id
            if task_id is None:
                if row.attempts > 0:  # a try that may have created the task before it failed or was killed
                    task_id = await client.find_pending_by_key(row.key)
                if task_id is None:
                    task_id = await client.create_task(task_name(row.customer_id),
                                                       await self._db(_description, row, self.base_url), row.key)
                await self._db(handoffs.set_task, row.key, task_id, time.time())
            designer = pick_designer(await client.queue(), await self._db(handoffs.open_counts))
            if designer is None:
                await self._queued(row, task_id, "现在没有设计师在线,任务已排队,有人上线自动派给他")
                return
            await client.assign(task_id, designer, row.reason[:500])
        except DispatchError as exc:
            await self._dispatch_failed(row, exc)
            return
        event_id = await self._db(handoffs.mark_assigned, row.key, task_id, designer,
                                  f"已派给 **{designer}**(任务 {task_id}):{row.reason}", time.time())
        self.counts["handoffs_assigned"] += 1
        self._told(row, event_id)

    async def _queued(self, row: Handoff, task_id: str | None, why: str) -> None:
        if row.status == "new":
            event_id = await self._db(handoffs.mark_queued, row.key,
                                      f"{why}(任务 {task_id or '待创建'}):{row.reason}", time.time())
            self.counts["handoffs_queued"] += 1
            self._told(row, event_id)
        else:
            await self._db(_recheck, row.key, time.time() + HANDOFF_POLL_S)

    async def _dispatch_failed(self, row: Handoff, exc: DispatchError) -> None:
        self.counts["dispatch_errors"] += 1
        offline_designer = isinstance(exc, DispatchRejected) and row.task_id is not None
        delay = HANDOFF_POLL_S if offline_designer else min(HANDOFF_RETRY_MAX_S, 2.0 * 2 ** row.attempts)
        tries = await self._db(handoffs.postpone, row.key, time.time(), delay, str(exc))
        log.warning("hand-off %s: dispatch API %s (try %d, next in %.0f s)", row.key, exc, tries, delay)
        if tries >= HANDOFF_TRIES_BEFORE_TELLING and not offline_designer:
            # The customer should not wait in silence while the dispatch API is down: tell them and staff.
            await self._db(handoffs.warn_once, row.key, "dispatch_failing",
                           f"派单系统连不上({type(exc).__name__}),还在重试,请人工留意:{row.reason}", time.time())
            if row.status == "new":
                await self._queued(row, row.task_id, "派单系统暂时连不上,已排队重试")

    async def _check_completed(self, client: DispatchClient, row: Handoff) -> None:
        try:
            task = await client.task(row.task_id)
        except DispatchError as exc:
            log.warning("hand-off %s: cannot read task %s: %s", row.key, row.task_id, exc)
            await self._db(_recheck, row.key, time.time() + COMPLETION_POLL_S)
            return
        if task.status != "completed":
            await self._db(_recheck, row.key, time.time() + COMPLETION_POLL_S)
            return
        event_id = await self._db(handoffs.mark_completed, row.key, task.notes or "", time.time())
        self.counts["handoffs_completed"] += 1
        self._told(row, event_id)

    def _told(self, row: Handoff, event_id: int | None) -> None:
        if event_id is not None:
            self.post(("outcome", row.customer_id, event_id))
        self._wake.set()  # its staff notification goes out on the next pass

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


def _any_open() -> bool:
    return Handoff.select().where(Handoff.status.in_(handoffs.OPEN)).exists()


def _recheck(key: str, at: float) -> None:
    Handoff.update(next_at=at).where(Handoff.key == key).execute()


def _description(row: Handoff, base_url: str) -> str:
    """What the designer reads: the reason, the customer, the image (and the result to check), and the key."""
    conv = Conversation.get_or_none(Conversation.customer_id == row.customer_id)
    job = jobs.load_job(row.job_id) if row.job_id else None
    lines = [f"原因:{row.reason}", f"客户:{conv.name if conv and conv.name else ''}({row.customer_id})"]
    if job is not None:
        lines.append(f"图片单:{job.job_id},{job.operation.value},{job.price or '未报价'}元,"
                     f"{'已付款 ' + job.order_id if job.paid else '未付款'}")
    image = row.image_url or (conv.last_image_url if conv else "")
    if image:
        lines.append(f"客户图片:{image}")
    if job is not None and job.result_url:
        lines.append(f"自动处理结果:{jobs.absolute(base_url, job.result_url)}")
    lines.append(f"[key:{row.key}]")
    return "\n".join(lines)


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
