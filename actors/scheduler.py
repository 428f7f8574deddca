"""Scheduler: owns Tianwang tasks — trigger index, durable deadlines, priority execution, retries."""

from __future__ import annotations

import logging
from typing import Any

from thespian.actors import ActorAddress

from actors.base import ServiceActor, now
from actors.bridge import ThreadBridge
from core.task_index import ReadyQueue, TaskIndex
from core.tianwang import MAX_RETRIES
from integrations.tianwang_callback import CallbackDeliverer
from persistence import messages, retention, scheduling
from persistence.scheduling import TaskRef
from persistence.tasks import TaskRow
from protocol.messages import CustomerEvents, EventItem, SendNudge, SendOutcome, TasksChanged
from protocol.tianwang import FINISHED_STATUSES, TaskStatus

log = logging.getLogger("shop.scheduler")

REGISTER_CHUNK = 200  # tasks armed per transaction: bounds how long the write lock is held
MAX_RUNNING = 32  # actions in flight at once; the rest wait in the priority queue
IDLE_CONSUME_S = 0.5  # how long consumed marks of events that matched nothing wait to be written together
EVENT_GATHER_S = 0.001  # customer events are gathered this long, then matched in one transaction
SWEEP_GRACE_S = 2.0  # work older than this with no progress is re-driven by the sweep


class Scheduler(ServiceActor):
    """A leaf actor: its loop thread delivers callbacks; everything else runs in the actor thread."""

    kind = "scheduler"

    def on_configure(self) -> None:
        s = self.settings
        assert s is not None
        self.tz = s.SHOP_TIMEZONE
        self.callbacks = bool(s.TIANWANG_CALLBACK_URL)
        self.retry_base_s = s.TASK_RETRY_BASE_S
        self.index = TaskIndex()
        self.ready = ReadyQueue()
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
        self._adopt_many(scheduling.open_tasks())
        self._match(messages.unconsumed_events())
        self._after_change()
        self._expect_timer(scheduling.next_due())
        self.every(s.SWEEP_INTERVAL_S, "sweep")
        self.retention = retention.Sweep(s.DATA_DIR, retention.Limits.of(s))  # daily, one small step at a time
        self.wakeupAfter(self.retention.first_delay(now()), payload="retention")
        self.catch_up()

    # -- adopting tasks -------------------------------------------------------------------
    def _adopt_many(self, rows: list[TaskRow]) -> None:
        self._register_many([r for r in rows if r.status == TaskStatus.PENDING.value])
        running: list[str] = []
        for row in rows:
            if row.status == TaskStatus.WAITING.value:
                if row.triggered_at is not None:
                    self.ready.push(scheduling.ready_of(row))
                else:
                    self.index.index(scheduling.waiting_of(row))
            elif row.status == TaskStatus.RUNNING.value:
                self.running.add(row.task_id)
                running.append(row.task_id)
        self._settle_many(running)

    def _register_many(self, rows: list[TaskRow]) -> None:
        """pending → waiting, arming each task's durable timers; short transactions, so accepts never wait long."""
        for i in range(0, len(rows), REGISTER_CHUNK):
            moved, earliest = scheduling.register(rows[i:i + REGISTER_CHUNK], now(), self.tz, self.callbacks)
            self._expect_timer(earliest)
            for r in moved:
                self.index.index(scheduling.waiting_of(r))

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
        rows = scheduling.tasks_by_id(task_ids)
        for row in rows:
            if TaskStatus(row.status) in FINISHED_STATUSES:
                self.index.unindex(row.task_id)
                self.running.discard(row.task_id)
        self._adopt_many([r for r in rows if TaskStatus(r.status) not in FINISHED_STATUSES
                          and r.task_id not in self.index and r.task_id not in self.running])

    def _match(self, events: list[EventItem]) -> None:
        if not events:
            return
        # A task whose TasksChanged hint was lost must be armed before events are consumed, or an
        # event meant for it would be consumed with nothing to match.
        self._register_many(scheduling.pending_tasks())
        live = [(ev, self.index.candidates(ev)) for ev in events]
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
        matches = [(ev, self.index.fired_by(ev, found)) for ev, found in live if found]
        if not matches:
            return
        for ready in scheduling.trigger_by_events(matches, now()):
            self.index.unindex(ready.task_id)
            self.ready.push(ready)

    # -- execution ------------------------------------------------------------------------
    def _run_ready(self) -> bool:
        """Start the highest-priority triggered tasks, as many as there is room for, in one transaction."""
        picked = self.ready.pick(MAX_RUNNING - len(self.running), self.running)
        if not picked:
            return False
        started = scheduling.start(picked, now(), self.tz, self.callbacks)
        self.running.update(s.task_id for s in started)
        for s in started:
            log.info("task %s running (%s)", s.task_id, s.reason, extra=_ids(s))
        return bool(started)

    def _settle_many(self, task_ids: list[str]) -> None:
        """Look at running tasks' sends: complete those all delivered, retry or fail those refused."""
        if not task_ids:
            return
        settled = scheduling.settlement(task_ids)
        self.running.difference_update(settled.gone)
        t = now()
        if settled.done:
            scheduling.complete([d.task_id for d in settled.done], t, self.tz, self.callbacks)
            self.running.difference_update(d.task_id for d in settled.done)
            for d in settled.done:
                log.info("task %s completed: sent to the customer", d.task_id, extra=_ids(d))
        for r in settled.refused:
            outcome = scheduling.retry_or_fail(r, t, self.tz, self.callbacks, self.retry_base_s)
            if outcome.failed:
                self.running.discard(r.task_id)
                log.warning("task %s failed after %d retries: %s", r.task_id, MAX_RETRIES, r.error, extra=_ids(r))
            elif outcome.due is not None:
                log.info("task %s: send refused (%s); retry %d in %.1f s", r.task_id, r.error, r.retries + 1,
                         outcome.due - t, extra=_ids(r))
                self._expect_timer(outcome.due)

    # -- time -----------------------------------------------------------------------------
    def on_timer(self, name: str) -> None:
        if name == "retention":
            self.wakeupAfter(self.retention.step(now()), payload="retention")
            return
        if name == "catch-up":
            self._match(messages.unconsumed_events())
            self._after_change()
            return
        if name == "consumed":
            self.idle_armed = False
            ids, self.idle_consumed = self.idle_consumed, []
            scheduling.consume_unmatched(ids)
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
        self._expect_timer(scheduling.next_due())
        self._after_change()

    def _fire_due(self) -> None:
        nudge = False
        for fired in scheduling.fire_due(now(), self.tz, self.callbacks):
            if fired.ready is not None:
                self.ready.push(fired.ready)
            if (gone := fired.timed_out) is not None:
                self.index.unindex(gone.task_id)
                log.info("task %s timed out: no trigger within %g h", gone.task_id, gone.timeout_hours,
                         extra=_ids(gone))
            nudge = nudge or fired.requeued
        if nudge:
            self._nudge_gateway()

    def _sweep(self) -> None:
        """Re-drive whatever a lost message left behind."""
        t = now()
        self._register_many(scheduling.pending_tasks())
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
        return {"waiting": len(self.index), "ready": len(self.ready), "running": len(self.running),
                **(self.deliverer.counts if self.deliverer else {})}


def _ids(task: TaskRef) -> dict[str, str]:
    """What a task's log lines carry: its id and its customer's."""
    return {"task_id": task.task_id, "customer_id": task.customer_id}
