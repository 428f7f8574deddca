"""Hand-offs to designers (SPEC §3 workflow 3) through the designer dispatch API, in the Dispatch actor's loop thread.

Each hand-off becomes one task of the designer dispatch API: created under the hand-off's idempotency key (sent
as a header and written into the description, so a re-drive after a crash finds the task instead of making a
second one), assigned to the queue's suggestion or the online designer with the fewest open tasks, or queued
until one comes online; assigned tasks are watched until a designer completes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from integrations.tuhui import DispatchClient, DispatchError, DispatchRejected
from observability.json_logs import log_ids
from persistence import handoffs, jobs
from persistence.models import Conversation, Handoff
from protocol.dispatch import pick_designer, task_name

log = logging.getLogger("shop.dispatch")

HANDOFF_POLL_S = 2.0  # how soon a queued hand-off looks for a designer again, and an open one is re-checked
COMPLETION_POLL_S = 10.0  # how often an assigned task's status is read
HANDOFF_RETRY_MAX_S = 60.0
HANDOFF_TRIES_BEFORE_TELLING = 3  # failed tries of the dispatch API before the customer hears "queued"


class DesignerHandoffs:
    """The hand-off steps of the Dispatch loop; it lends them its database worker, outbox wake-up and counts."""

    def __init__(self, base_url: str, db: Callable[..., Awaitable[Any]], post: Any, wake: Callable[[], None],
                 counts: dict[str, int]) -> None:
        self.base_url = base_url
        self._db = db
        self.post = post
        self._wake = wake
        self.counts = counts

    async def advance_due(self, client: DispatchClient) -> bool:
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
        self._wake()  # its staff notification goes out on the next pass


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
