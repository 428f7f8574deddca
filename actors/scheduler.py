"""Scheduler: owns Tianwang tasks — trigger index, durable deadlines, priority execution, retries."""

from __future__ import annotations

import heapq
import json
import logging
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
from persistence.connection import atomic
from persistence.models import Conversation, Task
from persistence.tasks import TaskRow
from protocol.messages import CustomerEvents, EventItem, SendNudge, SendOutcome, TasksChanged
from protocol.tianwang import FINISHED_STATUSES, Action, TaskStatus, Trigger, TriggerType

log = logging.getLogger("shop.scheduler")

OWNER = "scheduler"
REGISTER_CHUNK = 200  # tasks armed per transaction: bounds how long the write lock is held
MAX_RUNNING = 32  # actions in flight at once; the rest wait in the priority queue
IDLE_CONSUME_S = 0.5  # how long consumed marks of events that matched nothing wait to be written together
EVENT_GATHER_S = 0.001  # customer events are gathered this long, then matched in one transaction
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
        self.events: list[EventItem] = []
        self.events_armed = False
        self.idle_consumed: list[tuple[int, float]] = []  # (event id, when it was matched)
        self.idle_armed = False
        self.deliverer: CallbackDeliverer | None = None
        if s.TIANWANG_CALLBACK_URL:
            secret = s.TIANWANG_CALLBACK_SECRET.get_secret_value().encode() if s.TIANWANG_CALLBACK_SECRET else None
            self.deliverer = CallbackDeliverer(s.TIANWANG_CALLBACK_URL, secret, s.CALLBACK_RETRY_MAX_S)
            self.bridge = ThreadBridge("scheduler")
            self.bridge.start(self.deliverer.run)
        self._load_all()
        self._expect_timer(timers.next_due(OWNER))
        self.every(s.SWEEP_INTERVAL_S, "sweep")
        self.catch_up()

    # -- loading and indexing -------------------------------------------------------------
    def _load_all(self) -> None:
        open_states = [TaskStatus.PENDING.value, TaskStatus.WAITING.value, TaskStatus.RUNNING.value]
        self._adopt_many(tasks.task_rows(Task.select().where(Task.status.in_(open_states)).order_by(Task.created_at)))
        self._match(messages.unconsumed_events())
        self._after_change()

    def _adopt_many(self, rows: list[TaskRow]) -> None:
        self._register_many([r for r in rows if r.status == TaskStatus.PENDING.value])
        running = []
        for row in rows:
            if row.status == TaskStatus.WAITING.value:
                if row.triggered_at is not None:
                    heapq.heappush(self.ready, (row.priority_rank, row.triggered_at, row.task_id))
                else:
                    self._index(row)
            elif row.status == TaskStatus.RUNNING.value:
                self.running.add(row.task_id)
                running.append(row.task_id)
        self._settle_many(running)

    def _register_many(self, rows: list[TaskRow]) -> None:
        """pending → waiting, arming each task's durable timers; short transactions, so accepts never wait long."""
        for i in range(0, len(rows), REGISTER_CHUNK):
            self._register_chunk(rows[i:i + REGISTER_CHUNK])

    def _register_chunk(self, rows: list[TaskRow]) -> None:
        if not rows:
            return
        t = now()
        with atomic():
            moved = set(tasks.transition_many([r.task_id for r in rows], TaskStatus.WAITING, "trigger armed", t,
                                              self.tz, self.callbacks, event="register"))
            entries = []
            for r in rows:
                if r.task_id not in moved:
                    continue
                if r.fire_at is not None:
                    entries.append((timer_key(r.task_id, "fire"), r.fire_at, {"task_id": r.task_id, "what": "fire"}))
                if r.timeout_at is not None:
                    entries.append((timer_key(r.task_id, "timeout"), r.timeout_at,
                                    {"task_id": r.task_id, "what": "timeout"}))
            timers.arm_many(OWNER, entries)
        self._expect_timer(min((due for _, due, _ in entries), default=None))
        for r in rows:
            if r.task_id in moved:
                self._index(r)

    def _index(self, row: TaskRow) -> None:
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
            self._reload(msg.task_ids)
        elif isinstance(msg, CustomerEvents):
            # Events from many conversations arrive one message each: gather them for a moment and
            # match them in one transaction.
            self.events.extend(msg.items)
            if not self.events_armed:
                self.events_armed = True
                self.wakeupAfter(EVENT_GATHER_S, payload="events")
            return
        elif isinstance(msg, SendOutcome):
            self._settle_many(msg.refs)
        else:
            super().on_message(msg, sender)
            return
        self._after_change()

    def _reload(self, task_ids: list[str]) -> None:
        rows = tasks.task_rows(Task.select().where(Task.task_id.in_(task_ids)))
        for row in rows:
            if TaskStatus(row.status) in FINISHED_STATUSES:
                self._unindex(row.task_id)
                self.running.discard(row.task_id)
        self._adopt_many([r for r in rows if TaskStatus(r.status) not in FINISHED_STATUSES
                          and r.task_id not in self.waiting and r.task_id not in self.running])

    def _candidates(self, ev: EventItem) -> set[str]:
        if ev.kind == "custom":
            found = set(self.by_event.get(ev.name, set()))
            if ev.customer_id is not None:
                found &= self.by_customer.get(ev.customer_id, set())
            return found
        return set(self.by_customer.get(ev.customer_id or "", set()))

    def _match(self, events: list[EventItem]) -> None:
        if not events:
            return
        # A task whose TasksChanged hint was lost must be armed before events are consumed, or an
        # event meant for it would be consumed with nothing to match.
        self._adopt_pending()
        live = [(ev, self._candidates(ev)) for ev in events]
        # Most customer messages concern no waiting task: their consumed marks are written later in
        # one batch. Losing that batch in a crash is harmless, since re-matching an event can never
        # fire a task received after it.
        seen_at = now()
        idle = [(ev.event_id, seen_at) for ev, found in live if not found]
        if idle:
            self.idle_consumed.extend(idle)
            if not self.idle_armed:
                self.idle_armed = True
                self.wakeupAfter(IDLE_CONSUME_S, payload="consumed")
        live = [(ev, found) for ev, found in live if found]
        if not live:
            return
        t = now()
        fired: list[Task] = []
        with atomic():
            for ev, found in live:
                if not messages.consume_event(ev.event_id):
                    continue
                view = CustomerEventView(kind=ev.kind, customer_id=ev.customer_id, text=ev.text, name=ev.name)
                for task_id in sorted(found):
                    w = self.waiting.get(task_id)
                    if w is None or w.created_at > ev.at + 0.001 or not trigger_matches(w.trigger, w.customer_id, view):
                        continue
                    detail = f"{ev.kind} event {ev.event_id}" + (f": {ev.text[:100]}" if ev.text else "")
                    row = self._mark_triggered(task_id, t, detail)
                    if row is not None:
                        fired.append(row)
                        self._unindex(task_id)
        for row in fired:
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
        """Start the highest-priority triggered tasks, as many as there is room for, in one transaction."""
        picked: list[str] = []
        while self.ready and len(self.running) + len(picked) < MAX_RUNNING:
            _, _, task_id = heapq.heappop(self.ready)
            if task_id not in self.running and task_id not in picked:
                picked.append(task_id)
        if not picked:
            return False
        t = now()
        with atomic():
            rows = {r.task_id: r for r in Task.select().where(Task.task_id.in_(picked)
                                                              & (Task.status == TaskStatus.WAITING.value))}
            reasons = {i: "triggered: " + (r.trigger_detail or "") for i, r in rows.items()}
            moved = tasks.transition_many(list(rows), TaskStatus.RUNNING, reasons, t, self.tz, self.callbacks,
                                          event="dispatch")
            started = set(moved)
            self._queue_sends([rows[i] for i in picked if i in started], t)  # priority order is send order
        self.running.update(moved)
        for task_id in moved:
            log.info("task %s running (%s)", task_id, reasons[task_id], extra=_ids(rows[task_id]))
        return bool(moved)

    def _queue_sends(self, rows: list[Task], t: float) -> None:
        customers = {r.customer_id for r in rows}
        accounts = {c.customer_id: (c.acc_id, c.acc_type) for c in
                    Conversation.select(Conversation.customer_id, Conversation.acc_id, Conversation.acc_type)
                    .where(Conversation.customer_id.in_(list(customers)))}
        for row in rows:
            acc_id, acc_type = accounts.get(row.customer_id, ("", ""))
            for part in action_parts(Action.model_validate_json(row.action)):
                key = send_id(row.task_id, part.part)
                outbox.add(key=key, kind="im_send", ref=row.task_id, now=t, payload={
                    "send_id": key, "acc_id": acc_id, "acc_type": acc_type, "customer_id": row.customer_id,
                    "msg_type": int(part.msg_type), "content": part.content,
                })

    def _settle_many(self, task_ids: list[str]) -> None:
        """Look at running tasks' sends: complete those all delivered, retry or fail those refused."""
        if not task_ids:
            return
        rows = {r.task_id: r for r in Task.select().where(Task.task_id.in_(task_ids))}
        for task_id in task_ids:
            if task_id not in rows or rows[task_id].status != TaskStatus.RUNNING.value:
                self.running.discard(task_id)
        live = [i for i in task_ids if i in rows and rows[i].status == TaskStatus.RUNNING.value]
        sends = outbox.by_ref("im_send", live)
        done = [i for i in live if {s.status for s in sends.get(i, [])} <= {"delivered"}]
        refused = [i for i in live if i not in done and "failed" in {s.status for s in sends.get(i, [])}
                   and "pending" not in {s.status for s in sends.get(i, [])}]
        t = now()
        if done:
            with atomic():
                tasks.transition_many(done, TaskStatus.COMPLETED, "sent to the customer", t, self.tz, self.callbacks,
                                      event="sent")
            self.running.difference_update(done)
            for task_id in done:
                log.info("task %s completed: sent to the customer", task_id, extra=_ids(rows[task_id]))
        for task_id in refused:
            self._retry_or_fail(rows[task_id], sends[task_id], t)

    def _retry_or_fail(self, row: Task, sends: list[Any], t: float) -> None:
        task_id = row.task_id
        retry_key = timer_key(task_id, "retry")
        error = "; ".join(s.error or "send failed" for s in sends if s.status == "failed")
        with atomic():
            if timers.Timer.get_or_none(timers.Timer.key == retry_key) is not None:
                return  # this failure already has its retry scheduled
            if row.retries >= MAX_RETRIES:
                tasks.transition(task_id, TaskStatus.FAILED, f"gave up after {MAX_RETRIES} retries", t, self.tz,
                                 self.callbacks, error=error, event="send_failed")
                self.running.discard(task_id)
                log.warning("task %s failed after %d retries: %s", task_id, MAX_RETRIES, error, extra=_ids(row))
                return
            assert self.settings is not None
            due = t + retry_delay(row.retries, self.settings.TASK_RETRY_BASE_S)
            bump = Task.update(retries=Task.retries + 1, error=error, updated_at=t)
            bump.where(Task.task_id == task_id).execute()
            timers.arm(OWNER, retry_key, due, {"task_id": task_id, "what": "retry"})
        log.info("task %s: send refused (%s); retry %d in %.1f s", task_id, error, row.retries + 1, due - t,
                 extra=_ids(row))
        self._expect_timer(due)

    # -- time -----------------------------------------------------------------------------
    def on_timer(self, name: str) -> None:
        if name == "catch-up":
            self._match(messages.unconsumed_events())
            self._after_change()
            return
        if name == "consumed":
            self.idle_armed = False
            ids, self.idle_consumed = self.idle_consumed, []
            with atomic():
                messages.consume_events(ids)
            return
        if name == "events":  # the hot path: match and dispatch, no timer queries
            self.events_armed = False
            events, self.events = self.events, []
            self._match(events)
            self._after_change()
            return
        if name == "sweep":
            self._sweep()
        elif name == "timers":
            self.next_wake = None
        self._fire_due()
        self._expect_timer(timers.next_due(OWNER))
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
                        log.info("task %s timed out: no trigger within %g h", task_id, row.timeout_hours,
                                 extra=_ids(row))
                elif what == "retry":
                    row = Task.get_or_none(Task.task_id == task_id)
                    if row is not None and row.status == TaskStatus.RUNNING.value:
                        outbox.requeue_failed("im_send", task_id, t)
                        nudge = True
                timers.disarm(timer.key)
        if nudge:
            self._nudge_gateway()

    def _adopt_pending(self) -> None:
        if not Task.select().where(Task.status == TaskStatus.PENDING.value).exists():
            return
        self._register_many(tasks.task_rows(Task.select().where(Task.status == TaskStatus.PENDING.value)
                                            .order_by(Task.created_at)))

    def _sweep(self) -> None:
        """Re-drive whatever a lost message left behind."""
        t = now()
        self._adopt_pending()
        self._match(messages.unconsumed_events(older_than=t - SWEEP_GRACE_S))
        self._settle_many(list(self.running))

    def _after_change(self) -> None:
        if self._run_ready():
            self._nudge_gateway()
        if self.deliverer is not None and self.bridge is not None:
            self.bridge.call(self.deliverer.wake)

    def _expect_timer(self, due: float | None) -> None:
        """Make sure a wakeup comes by due (timers are armed only here, so no query is needed)."""
        if due is not None and (self.next_wake is None or due < self.next_wake - 0.005):
            self.next_wake = due
            self.wakeupAfter(max(0.0, due - now()), payload="timers")

    def _nudge_gateway(self) -> None:
        if self.book is not None:
            self.tell(self.book.gateway, SendNudge())

    def detail(self) -> dict[str, Any]:
        return {"waiting": len(self.waiting), "ready": len(self.ready), "running": len(self.running),
                **(self.deliverer.counts if self.deliverer else {})}


def _ids(row: Task) -> dict[str, str]:
    """What a task's log lines carry: its id and its customer's."""
    return {"task_id": row.task_id, "customer_id": row.customer_id}
