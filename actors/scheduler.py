"""Scheduler: owns Tianwang tasks — trigger index, durable deadlines, priority execution, retries."""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorAddress

from actors.base import ServiceActor, now
from actors.bridge import ThreadBridge
from core.tianwang import (
    MAX_RETRIES,
    CustomerEventView,
    action_parts,
    retry_delay,
    send_id,
    timer_key,
    trigger_matches,
)
from integrations.tianwang_callback import CallbackDeliverer
from persistence import messages, outbox, tasks, timers
from persistence.db import atomic
from persistence.models import Conversation, Task
from protocol.messages import CustomerEvents, EventItem, SendNudge, SendOutcome, TasksChanged
from protocol.tianwang import FINISHED_STATUSES, Action, TaskStatus, Trigger, TriggerType

OWNER = "scheduler"
MAX_RUNNING = 32  # actions in flight at once; the rest wait in the priority queue
SWEEP_GRACE_S = 2.0  # work older than this with no progress is re-driven by the sweep


@dataclass(frozen=True)
class Waiting:
    """A waiting task as the index keeps it."""

    task_id: str
    customer_id: str
    trigger: Trigger
    created_at: float


class Scheduler(ServiceActor):
    """A leaf actor: its loop thread delivers callbacks; everything else runs in the actor thread."""

    kind = "scheduler"

    def on_configure(self) -> None:
        s = self.settings
        assert s is not None
        self.tz = s.SHOP_TIMEZONE
        self.callbacks = bool(s.TIANWANG_CALLBACK_URL)
        self.waiting: dict[str, Waiting] = {}
        self.by_customer: dict[str, set[str]] = {}
        self.by_event: dict[str, set[str]] = {}
        self.ready: list[tuple[int, float, str]] = []
        self.running: set[str] = set()
        self.next_wake: float | None = None
        self.deliverer: CallbackDeliverer | None = None
        if s.TIANWANG_CALLBACK_URL:
            secret = s.TIANWANG_CALLBACK_SECRET.get_secret_value().encode() if s.TIANWANG_CALLBACK_SECRET else None
            self.deliverer = CallbackDeliverer(s.TIANWANG_CALLBACK_URL, secret, s.CALLBACK_RETRY_MAX_S)
            self.bridge = ThreadBridge("scheduler")
            self.bridge.start(self.deliverer.run)
        self._load_all()
        self.every(s.SWEEP_INTERVAL_S, "sweep")

    # -- loading and indexing -------------------------------------------------------------
    def _load_all(self) -> None:
        open_states = [TaskStatus.PENDING.value, TaskStatus.WAITING.value, TaskStatus.RUNNING.value]
        for row in Task.select().where(Task.status.in_(open_states)).order_by(Task.created_at):
            self._adopt(row)
        self._match(messages.unconsumed_events())
        self._after_change()

    def _adopt(self, row: Task) -> None:
        status = TaskStatus(row.status)
        if status is TaskStatus.PENDING:
            self._register(row)
        elif status is TaskStatus.WAITING:
            if row.triggered_at is not None:
                heapq.heappush(self.ready, (row.priority_rank, row.triggered_at, row.task_id))
            else:
                self._index(row)
        elif status is TaskStatus.RUNNING:
            self.running.add(row.task_id)
            self._settle(row.task_id)

    def _register(self, row: Task) -> None:
        t = now()
        with atomic():
            moved = tasks.transition(row.task_id, TaskStatus.WAITING, "trigger armed", t, self.tz, self.callbacks,
                                     event="register")
            if not moved:
                return
            if row.fire_at is not None:
                timers.arm(OWNER, timer_key(row.task_id, "fire"), row.fire_at, {"task_id": row.task_id, "what": "fire"})
            if row.timeout_at is not None:
                timers.arm(OWNER, timer_key(row.task_id, "timeout"), row.timeout_at,
                           {"task_id": row.task_id, "what": "timeout"})
        self._index(row)

    def _index(self, row: Task) -> None:
        trigger = Trigger.model_validate_json(row.trigger)
        if trigger.type is TriggerType.TIME_REACH:
            return  # its durable timer is the index
        w = Waiting(row.task_id, row.customer_id, trigger, row.created_at)
        self.waiting[w.task_id] = w
        self.by_customer.setdefault(w.customer_id, set()).add(w.task_id)
        if trigger.type is TriggerType.CUSTOM_EVENT and trigger.event:
            self.by_event.setdefault(trigger.event, set()).add(w.task_id)

    def _unindex(self, task_id: str) -> None:
        w = self.waiting.pop(task_id, None)
        if w is None:
            return
        self.by_customer.get(w.customer_id, set()).discard(task_id)
        if w.trigger.event:
            self.by_event.get(w.trigger.event, set()).discard(task_id)

    # -- messages -------------------------------------------------------------------------
    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, TasksChanged):
            for task_id in msg.task_ids:
                self._reload(task_id)
        elif isinstance(msg, CustomerEvents):
            self._match(msg.items)
        elif isinstance(msg, SendOutcome):
            for ref in msg.refs:
                self._settle(ref)
        else:
            super().on_message(msg, sender)
            return
        self._after_change()

    def _reload(self, task_id: str) -> None:
        row = Task.get_or_none(Task.task_id == task_id)
        if row is None:
            return
        if TaskStatus(row.status) in FINISHED_STATUSES:
            self._unindex(task_id)
            self.running.discard(task_id)
        elif task_id not in self.waiting and task_id not in self.running:
            self._adopt(row)

    def _match(self, events: list[EventItem]) -> None:
        if not events:
            return
        # A task whose TasksChanged hint was lost must be armed before events are consumed, or an
        # event meant for it would be consumed with nothing to match.
        self._adopt_pending()
        t = now()
        fired: list[Task] = []
        with atomic():
            for ev in events:
                if not messages.consume_event(ev.event_id):
                    continue
                view = CustomerEventView(kind=ev.kind, customer_id=ev.customer_id, text=ev.text, name=ev.name)
                if ev.kind == "custom":
                    candidates = set(self.by_event.get(ev.name, set()))
                    if ev.customer_id is not None:
                        candidates &= self.by_customer.get(ev.customer_id, set())
                else:
                    candidates = set(self.by_customer.get(ev.customer_id or "", set()))
                for task_id in sorted(candidates):
                    w = self.waiting[task_id]
                    if w.created_at > ev.at + 0.001 or not trigger_matches(w.trigger, w.customer_id, view):
                        continue
                    detail = f"{ev.kind} event {ev.event_id}" + (f": {ev.text[:100]}" if ev.text else "")
                    row = self._mark_triggered(task_id, t, detail)
                    if row is not None:
                        fired.append(row)
        for row in fired:
            self._unindex(row.task_id)
            heapq.heappush(self.ready, (row.priority_rank, row.triggered_at, row.task_id))

    def _mark_triggered(self, task_id: str, t: float, detail: str) -> Task | None:
        changed = (
            Task.update(triggered_at=t, trigger_detail=detail, updated_at=t)
            .where((Task.task_id == task_id) & (Task.status == TaskStatus.WAITING.value)
                   & (Task.triggered_at.is_null()))
            .execute()
        )
        if not changed:
            return None
        timers.disarm(timer_key(task_id, "timeout"))
        return Task.get(Task.task_id == task_id)

    # -- execution ------------------------------------------------------------------------
    def _run_ready(self) -> bool:
        nudge = False
        while self.ready and len(self.running) < MAX_RUNNING:
            _, _, task_id = heapq.heappop(self.ready)
            if task_id in self.running:
                continue
            t = now()
            with atomic():
                row = Task.get_or_none(Task.task_id == task_id)
                if row is None or row.status != TaskStatus.WAITING.value:
                    continue
                if not tasks.transition(task_id, TaskStatus.RUNNING, "triggered: " + (row.trigger_detail or ""), t,
                                        self.tz, self.callbacks, event="dispatch"):
                    continue
                self._queue_sends(row, t)
            self.running.add(task_id)
            nudge = True
        return nudge

    def _queue_sends(self, row: Task, t: float) -> None:
        conv = Conversation.get_or_none(Conversation.customer_id == row.customer_id)
        action = Action.model_validate_json(row.action)
        for part in action_parts(action):
            key = send_id(row.task_id, part.part)
            outbox.add(key=key, kind="im_send", ref=row.task_id, now=t, payload={
                "send_id": key,
                "acc_id": conv.acc_id if conv else "",
                "acc_type": conv.acc_type if conv else "",
                "customer_id": row.customer_id,
                "msg_type": int(part.msg_type),
                "content": part.content,
            })

    def _settle(self, task_id: str) -> None:
        """Look at a running task's sends and complete, retry or fail it."""
        row = Task.get_or_none(Task.task_id == task_id)
        if row is None or row.status != TaskStatus.RUNNING.value:
            self.running.discard(task_id)
            return
        sends = outbox.for_ref("im_send", task_id)
        states = {s.status for s in sends}
        t = now()
        if states <= {"delivered"}:
            with atomic():
                tasks.transition(task_id, TaskStatus.COMPLETED, "sent to the customer", t, self.tz, self.callbacks,
                                 event="sent")
            self.running.discard(task_id)
        elif "failed" in states and "pending" not in states:
            retry_key = timer_key(task_id, "retry")
            error = "; ".join(s.error or "send failed" for s in sends if s.status == "failed")
            with atomic():
                if timers.Timer.get_or_none(timers.Timer.key == retry_key) is not None:
                    return  # this failure already has its retry scheduled
                if row.retries >= MAX_RETRIES:
                    tasks.transition(task_id, TaskStatus.FAILED, f"gave up after {MAX_RETRIES} retries", t, self.tz,
                                     self.callbacks, error=error, event="send_failed")
                    self.running.discard(task_id)
                    return
                assert self.settings is not None
                due = t + retry_delay(row.retries, self.settings.TASK_RETRY_BASE_S)
                bump = Task.update(retries=Task.retries + 1, error=error, updated_at=t)
                bump.where(Task.task_id == task_id).execute()
                timers.arm(OWNER, retry_key, due, {"task_id": task_id, "what": "retry"})

    # -- time -----------------------------------------------------------------------------
    def on_timer(self, name: str) -> None:
        if name == "sweep":
            self._sweep()
        elif name == "timers":
            self.next_wake = None
        self._fire_due()
        self._after_change()

    def _fire_due(self) -> None:
        t = now()
        nudge = False
        for timer in timers.due(OWNER, t):
            payload = json.loads(timer.payload)
            task_id, what = payload["task_id"], payload["what"]
            with atomic():
                if what == "fire":
                    row = self._mark_triggered(task_id, t, "time reached")
                    if row is not None:
                        heapq.heappush(self.ready, (row.priority_rank, row.triggered_at, row.task_id))
                elif what == "timeout":
                    row = Task.get_or_none(Task.task_id == task_id)
                    if row is not None and row.triggered_at is None:
                        tasks.transition(task_id, TaskStatus.TIMEOUT, "no trigger in time", t, self.tz,
                                         self.callbacks, error=f"no trigger within {row.timeout_hours:g} h",
                                         event="timeout")
                        self._unindex(task_id)
                elif what == "retry":
                    row = Task.get_or_none(Task.task_id == task_id)
                    if row is not None and row.status == TaskStatus.RUNNING.value:
                        outbox.requeue_failed("im_send", task_id, t)
                        nudge = True
                timers.disarm(timer.key)
        if nudge:
            self._nudge_gateway()

    def _adopt_pending(self) -> None:
        for row in Task.select().where(Task.status == TaskStatus.PENDING.value).order_by(Task.created_at):
            self._adopt(row)

    def _sweep(self) -> None:
        """Re-drive whatever a lost message left behind."""
        t = now()
        self._adopt_pending()
        self._match(messages.unconsumed_events(older_than=t - SWEEP_GRACE_S))
        for task_id in list(self.running):
            self._settle(task_id)

    def _after_change(self) -> None:
        if self._run_ready():
            self._nudge_gateway()
        if self.deliverer is not None and self.bridge is not None:
            self.bridge.call(self.deliverer.wake)
        nxt = timers.next_due(OWNER)
        if nxt is not None and (self.next_wake is None or nxt < self.next_wake - 0.005):
            self.next_wake = nxt
            self.wakeupAfter(max(0.0, nxt - now()), payload="timers")

    def _nudge_gateway(self) -> None:
        if self.book is not None:
            self.tell(self.book.gateway, SendNudge())

    def detail(self) -> dict[str, Any]:
        return {"waiting": len(self.waiting), "ready": len(self.ready), "running": len(self.running),
                **(self.deliverer.counts if self.deliverer else {})}
