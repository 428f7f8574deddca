"""The scheduler's transactions: arming tasks, triggering them, starting their sends, settling, retrying and firing
their durable timers. Each takes plain values and returns what the scheduler keeps in memory or logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.task_index import ReadyTask, Waiting
from core.tianwang import MAX_RETRIES, action_parts, retry_delay, send_id, timer_key
from persistence import messages, outbox, tasks, timers
from persistence.connection import atomic
from persistence.models import Conversation, Task, TaskTransition, Timer
from persistence.tasks import TaskRow
from protocol.messages import EventItem
from protocol.tianwang import Action, TaskStatus, Trigger

OWNER = "scheduler"  # the owner of the task timers
WORDS_SEP = ": "  # a trigger's detail quotes the customer's words after this: "customer_reply event 12: 好的"
TRIGGERED = "triggered: "  # how a task's move to running names its trigger in the history


@dataclass(frozen=True)
class TaskRef:
    """A task a transaction acted on: what the scheduler's log lines name."""

    task_id: str
    customer_id: str


@dataclass(frozen=True)
class Started(TaskRef):
    """A task moved to running, and why."""

    reason: str


@dataclass(frozen=True)
class Refused(TaskRef):
    """A running task whose sends were refused: its retries so far and the sends' errors."""

    retries: int
    error: str


@dataclass(frozen=True)
class TimedOut(TaskRef):
    """A waiting task that timed out before any trigger."""

    timeout_hours: float


@dataclass(frozen=True)
class Settlement:
    """Where a scheduler's running tasks stand: no longer running, all sent, or refused."""

    gone: list[str] = field(default_factory=list)
    done: list[TaskRef] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


@dataclass(frozen=True)
class RetryOutcome:
    """What retry_or_fail did: nothing (the failure's retry was already set), gave up, or set a retry due at due."""

    failed: bool = False
    due: float | None = None


@dataclass(frozen=True)
class Fired:
    """What one due timer did: a time_reach task triggered, a task timed out, or refused sends requeued."""

    ready: ReadyTask | None = None
    timed_out: TimedOut | None = None
    requeued: bool = False


def waiting_of(row: TaskRow) -> Waiting:
    """A stored task as the trigger index keeps it."""
    return Waiting(row.task_id, row.customer_id, Trigger.model_validate_json(row.trigger), row.created_at)


def ready_of(row: TaskRow | Task) -> ReadyTask:
    """A triggered task as the ready queue keeps it."""
    return ReadyTask(row.priority_rank, row.triggered_at, row.task_id)


def open_tasks() -> list[TaskRow]:
    """Every task not finished yet (pending, waiting, running), oldest first."""
    open_states = [TaskStatus.PENDING.value, TaskStatus.WAITING.value, TaskStatus.RUNNING.value]
    return tasks.task_rows(Task.select().where(Task.status.in_(open_states)).order_by(Task.created_at))


def tasks_by_id(task_ids: list[str]) -> list[TaskRow]:
    """These tasks as stored now."""
    return tasks.task_rows(Task.select().where(Task.task_id.in_(task_ids)))


def pending_tasks() -> list[TaskRow]:
    """Pending tasks (received, not armed yet), oldest first."""
    if not Task.select().where(Task.status == TaskStatus.PENDING.value).exists():
        return []
    return tasks.task_rows(Task.select().where(Task.status == TaskStatus.PENDING.value).order_by(Task.created_at))


def next_due() -> float | None:
    """When the scheduler's earliest timer is due."""
    return timers.next_due(OWNER)


def register(rows: list[TaskRow], now: float, tz: str, callbacks: bool) -> tuple[list[TaskRow], float | None]:
    """pending → waiting, arming each task's durable timers, in one transaction; the rows that moved (in the
    given order) and the earliest timer armed."""
    if not rows:
        return [], None
    with atomic():
        moved = set(tasks.transition_many([r.task_id for r in rows], TaskStatus.WAITING, "trigger armed", now,
                                          tz, callbacks, event="register"))
        entries: list[tuple[str, float, dict[str, Any]]] = []
        for r in rows:
            if r.task_id not in moved:
                continue
            if r.fire_at is not None:
                entries.append((timer_key(r.task_id, "fire"), r.fire_at, {"task_id": r.task_id, "what": "fire"}))
            if r.timeout_at is not None:
                entries.append((timer_key(r.task_id, "timeout"), r.timeout_at,
                                {"task_id": r.task_id, "what": "timeout"}))
        timers.arm_many(OWNER, entries)
    return [r for r in rows if r.task_id in moved], min((due for _, due, _ in entries), default=None)


def trigger_by_events(matches: list[tuple[EventItem, list[str]]], now: float) -> list[ReadyTask]:
    """Consume each event and trigger the waiting tasks it fires, in one transaction; the tasks triggered.

    An event already consumed (by another scheduler, or a matching run before a crash) fires nothing.
    """
    fired: list[ReadyTask] = []
    taken: set[str] = set()  # a task fires once, on the first event of the batch that triggers it
    with atomic():
        for ev, task_ids in matches:
            if not messages.consume_event(ev.event_id):
                continue
            detail = f"{ev.kind} event {ev.event_id}" + (f"{WORDS_SEP}{ev.text[:100]}" if ev.text else "")
            for task_id in task_ids:
                if task_id in taken:
                    continue
                ready = _mark_triggered(task_id, now, detail)
                if ready is not None:
                    fired.append(ready)
                    taken.add(task_id)
    return fired


def consume_unmatched(seen: list[tuple[int, float]]) -> None:
    """Mark events that matched no waiting task consumed, each with when it was matched, in one transaction."""
    with atomic():
        messages.consume_events(seen)


def _mark_triggered(task_id: str, now: float, detail: str) -> ReadyTask | None:
    changed = (
        Task.update(triggered_at=now, trigger_detail=detail, updated_at=now)
        .where((Task.task_id == task_id) & (Task.status == TaskStatus.WAITING.value)
               & (Task.triggered_at.is_null()))
        .execute()
    )
    if not changed:
        return None
    timers.disarm(timer_key(task_id, "timeout"))
    return ready_of(Task.get(Task.task_id == task_id))


def start(picked: list[str], now: float, tz: str, callbacks: bool) -> list[Started]:
    """waiting → running for the picked triggered tasks, queueing their sends, in one transaction; those that
    moved (a task cancelled meanwhile does not)."""
    with atomic():
        rows = {r.task_id: r for r in Task.select().where(Task.task_id.in_(picked)
                                                          & (Task.status == TaskStatus.WAITING.value))}
        reasons = {i: TRIGGERED + (r.trigger_detail or "") for i, r in rows.items()}
        moved = tasks.transition_many(list(rows), TaskStatus.RUNNING, reasons, now, tz, callbacks, event="dispatch")
        started = set(moved)
        _queue_sends([rows[i] for i in picked if i in started], now)  # priority order is send order
    return [Started(i, rows[i].customer_id, reasons[i]) for i in moved]


def _queue_sends(rows: list[Task], now: float) -> None:
    customers = {r.customer_id for r in rows}
    accounts = {c.customer_id: (c.acc_id, c.acc_type) for c in
                Conversation.select(Conversation.customer_id, Conversation.acc_id, Conversation.acc_type)
                .where(Conversation.customer_id.in_(list(customers)))}
    for row in rows:
        acc_id, acc_type = accounts.get(row.customer_id, ("", ""))
        for part in action_parts(Action.model_validate_json(row.action)):
            key = send_id(row.task_id, part.part)
            outbox.add(key=key, kind="im_send", ref=row.task_id, now=now, payload={
                "send_id": key, "acc_id": acc_id, "acc_type": acc_type, "customer_id": row.customer_id,
                "msg_type": int(part.msg_type), "content": part.content,
            })


def settlement(task_ids: list[str]) -> Settlement:
    """Look at running tasks' sends (reads only): those no longer running, those all delivered, those refused
    (a send failed, none pending)."""
    rows = {r.task_id: r for r in Task.select().where(Task.task_id.in_(task_ids))}
    live = [i for i in task_ids if i in rows and rows[i].status == TaskStatus.RUNNING.value]
    gone = [i for i in task_ids if i not in rows or rows[i].status != TaskStatus.RUNNING.value]
    sends = outbox.by_ref("im_send", live)
    done = [i for i in live if {s.status for s in sends.get(i, [])} <= {"delivered"}]
    refused = [i for i in live if i not in done and "failed" in {s.status for s in sends.get(i, [])}
               and "pending" not in {s.status for s in sends.get(i, [])}]
    return Settlement(
        gone=gone,
        done=[TaskRef(i, rows[i].customer_id) for i in done],
        refused=[Refused(i, rows[i].customer_id, rows[i].retries,
                         "; ".join(s.error or "send failed" for s in sends[i] if s.status == "failed"))
                 for i in refused],
    )


def complete(task_ids: list[str], now: float, tz: str, callbacks: bool) -> None:
    """running → completed for tasks whose sends were all delivered, in one transaction."""
    with atomic():
        tasks.transition_many(task_ids, TaskStatus.COMPLETED, "sent to the customer", now, tz, callbacks,
                              event="sent")


def retry_or_fail(task: Refused, now: float, tz: str, callbacks: bool, base_s: float) -> RetryOutcome:
    """A refused task: fail it after MAX_RETRIES, else count the retry and arm its timer, in one transaction."""
    retry_key = timer_key(task.task_id, "retry")
    with atomic():
        if Timer.get_or_none(Timer.key == retry_key) is not None:
            return RetryOutcome()  # this failure already has its retry scheduled
        if task.retries >= MAX_RETRIES:
            tasks.transition(task.task_id, TaskStatus.FAILED, f"gave up after {MAX_RETRIES} retries", now, tz,
                             callbacks, error=task.error, event="send_failed")
            return RetryOutcome(failed=True)
        due = now + retry_delay(task.retries, base_s)
        bump = Task.update(retries=Task.retries + 1, error=task.error, updated_at=now)
        bump.where(Task.task_id == task.task_id).execute()
        timers.arm(OWNER, retry_key, due, {"task_id": task.task_id, "what": "retry"})
    return RetryOutcome(due=due)


def fire_due(now: float, tz: str, callbacks: bool) -> Iterator[Fired]:
    """Fire the scheduler's timers due at now, one transaction each, yielding what each did once committed."""
    for timer in timers.due(OWNER, now):
        payload = json.loads(timer.payload)
        task_id, what = payload["task_id"], payload["what"]
        fired = Fired()
        with atomic():
            if what == "fire":
                fired = Fired(ready=_mark_triggered(task_id, now, "time reached"))
            elif what == "timeout":
                row = Task.get_or_none(Task.task_id == task_id)
                if row is not None and row.triggered_at is None:
                    tasks.transition(task_id, TaskStatus.TIMEOUT, "no trigger in time", now, tz, callbacks,
                                     error=f"no trigger within {row.timeout_hours:g} h", event="timeout")
                    fired = Fired(timed_out=TimedOut(task_id, row.customer_id, row.timeout_hours))
            elif what == "retry":
                row = Task.get_or_none(Task.task_id == task_id)
                if row is not None and row.status == TaskStatus.RUNNING.value:
                    outbox.requeue_failed("im_send", task_id, now)
                    fired = Fired(requeued=True)
            timers.disarm(timer.key)
        yield fired


def without_words(detail: str) -> str:
    """A trigger's detail, or the history reason that names it, without the customer's words it quotes."""
    prefix = TRIGGERED if detail.startswith(TRIGGERED) else ""
    event, _, _ = detail.removeprefix(prefix).partition(WORDS_SEP)
    return prefix + event


def forget_words(task_ids: list[str]) -> int:
    """Drop the customer's words from these tasks' trigger details and history; how many tasks quoted any."""
    quoted = list(Task.select(Task.task_id, Task.trigger_detail).where(
        Task.task_id.in_(task_ids) & Task.trigger_detail.contains(WORDS_SEP)))
    for task in quoted:
        detail = without_words(task.trigger_detail)
        Task.update(trigger_detail=detail).where(Task.task_id == task.task_id).execute()
        TaskTransition.update(reason=TRIGGERED + detail).where(
            (TaskTransition.task_id == task.task_id) & TaskTransition.reason.startswith(TRIGGERED)).execute()
    return len(quoted)
