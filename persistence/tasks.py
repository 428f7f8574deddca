"""Tianwang task store: idempotent receive, guarded transitions with history and callbacks, queries."""

from __future__ import annotations

import hashlib
import json
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import peewee

from core.tianwang import TIMER_KINDS, check_transition, epoch_to_iso, fire_at, sources_of, timeout_at, timer_key
from persistence import outbox, timers
from persistence.connection import atomic, bulk_insert
from persistence.models import Outbox, Task, TaskTransition
from persistence.postgres import for_update, lock_keys
from protocol.tianwang import FINISHED_STATUSES, PRIORITY_RANK, TaskIn, TaskStatus

TaskRow = namedtuple("TaskRow", [f.name for f in Task._meta.sorted_fields])  # type: ignore[misc]


def task_rows(query: peewee.ModelSelect) -> list[Any]:
    """Rows of a full Task select as one fixed named-tuple type (peewee's namedtuples() builds a class per query)."""
    return [TaskRow(*values) for values in query.tuples()]


class TaskConflict(Exception):
    """The task_id exists with a different body."""


class TaskNotFound(Exception):
    """No task has this id."""


class TaskFinished(Exception):
    """The task has already finished; it can no longer change."""


def body_hash(task: TaskIn) -> str:
    """Hash of the validated body, defaults filled in, so equal requests hash equal.

    TaskIn holds only models and scalars, so its JSON has one fixed field order.
    """
    return hashlib.sha256(task.model_dump_json().encode()).hexdigest()


@dataclass
class ReceiveResult:
    """The answer to one receive, and whether it created the task."""

    answer: dict[str, Any]
    created: bool


def _callback_payload(task_id: str, status: TaskStatus, error: str | None, now: float, tz: str) -> dict:
    return {"task_id": task_id, "status": status.value, "error": error, "timestamp": epoch_to_iso(now, tz)}


@dataclass(frozen=True)
class Change:
    """One recorded status change: the history row and the callback it owes Tianwang."""

    task_id: str
    seq: int
    old: TaskStatus | None
    new: TaskStatus
    reason: str
    error: str | None


def _record(changes: list[Change], now: float, tz: str, callbacks: bool) -> None:
    """History rows and callback outbox rows for changes, in bulk; call inside a transaction."""
    if not changes:
        return
    status = "pending" if callbacks else "skipped"
    bulk_insert(TaskTransition, [
        {"task_id": c.task_id, "at": now, "from_status": c.old.value if c.old else None,
         "to_status": c.new.value, "reason": c.reason} for c in changes
    ])
    bulk_insert(Outbox, [
        {"key": f"cb:{c.task_id}:{c.seq}", "kind": "callback", "ref": c.task_id, "status": status,
         "payload": json.dumps(_callback_payload(c.task_id, c.new, c.error, now, tz), ensure_ascii=False),
         "attempts": 0, "next_attempt_at": 0.0, "created_at": now, "updated_at": now} for c in changes
    ], on_conflict="ignore")


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def receive_many(tasks: list[TaskIn], now: float, tz: str, callbacks: bool) -> list[ReceiveResult | Exception]:
    """Group commit: store every new task of a batch as pending in one transaction, in bulk.

    A repeat (same task_id, same body) gets the first answer again; another body is a TaskConflict
    for that item alone.
    """
    results: list[ReceiveResult | Exception] = []
    with atomic():
        lock_keys("task", (t.task_id for t in tasks))  # another ingress receiving the same id waits for our answer
        known: dict[str, tuple[str, str]] = {}
        for ids in _chunks(list({t.task_id for t in tasks})):
            for row in Task.select(Task.task_id, Task.body_hash, Task.answer).where(Task.task_id.in_(ids)):
                known[row.task_id] = (row.body_hash, row.answer)
        rows: list[dict[str, Any]] = []
        changes: list[Change] = []
        for task in tasks:
            digest = body_hash(task)
            if task.task_id in known:
                stored_hash, answer = known[task.task_id]
                if stored_hash != digest:
                    results.append(TaskConflict(f"task_id {task.task_id} was already received with a different body"))
                else:
                    results.append(ReceiveResult(json.loads(answer), created=False))
                continue
            answer = {"task_id": task.task_id, "status": TaskStatus.PENDING.value,
                      "received_at": epoch_to_iso(now, tz)}
            answer_json = json.dumps(answer, ensure_ascii=False)
            known[task.task_id] = (digest, answer_json)
            rows.append({
                "task_id": task.task_id, "type": task.type, "customer_id": task.customer.id,
                "customer_name": task.customer.name, "trigger_type": task.trigger.type.value,
                "trigger": task.trigger.model_dump_json(exclude_none=True),
                "action": task.action.model_dump_json(exclude_none=True),
                "priority": task.priority.value, "priority_rank": PRIORITY_RANK[task.priority],
                "timeout_hours": task.timeout_hours, "created_by": task.created_by, "body_hash": digest,
                "answer": answer_json, "status": TaskStatus.PENDING.value, "transitions": 1, "retries": 0,
                "error": None, "triggered_at": None, "trigger_detail": None,
                "fire_at": fire_at(task.trigger, tz), "timeout_at": timeout_at(task.trigger, now, task.timeout_hours),
                "created_at": now, "updated_at": now,
            })
            changes.append(Change(task.task_id, 1, None, TaskStatus.PENDING, "received", None))
            results.append(ReceiveResult(answer, created=True))
        bulk_insert(Task, rows)
        _record(changes, now, tz, callbacks)
    return results


def transition_many(task_ids: list[str], target: TaskStatus, reasons: str | dict[str, str], now: float, tz: str,
                    callbacks: bool, error: str | None = None, event: str = "", **fields: Any) -> list[str]:
    """Move every task that may reach target; the ids that moved. Call inside a transaction.

    The rows are read locked (SQLite's write lock, PostgreSQL's FOR UPDATE, in task_id order so two movers
    never deadlock): nobody else changes them between our read and our update. A task already finished (or
    already at target) is skipped; any other state that can never reach target raises IllegalTransition.
    """
    allowed = sources_of(target)
    moving: list[Any] = []
    for ids in _chunks(sorted(set(task_ids))):
        for row in for_update(Task.select(Task.task_id, Task.status, Task.transitions).where(Task.task_id.in_(ids))
                              .order_by(Task.task_id)):
            current = TaskStatus(row.status)
            if current in allowed:
                moving.append(row)
            elif current not in FINISHED_STATUSES and current != target:
                reason = reasons if isinstance(reasons, str) else reasons.get(row.task_id, "")
                check_transition(row.task_id, current, target, event or reason)  # raises IllegalTransition
    if not moving:
        return []
    updates: dict[Any, Any] = {Task.status: target.value, Task.updated_at: now, Task.transitions: Task.transitions + 1}
    if error is not None:
        updates[Task.error] = error
    for name, value in fields.items():
        updates[getattr(Task, name)] = value
    moved = [r.task_id for r in moving]
    for ids in _chunks(moved):
        Task.update(updates).where(Task.task_id.in_(ids)).execute()
    _record([
        Change(r.task_id, r.transitions + 1, TaskStatus(r.status), target,
               reasons if isinstance(reasons, str) else reasons.get(r.task_id, ""), error)
        for r in moving
    ], now, tz, callbacks)
    if target in FINISHED_STATUSES:
        timers.disarm_all([timer_key(t, what) for t in moved for what in TIMER_KINDS])
    return moved


def transition(task_id: str, target: TaskStatus, reason: str, now: float, tz: str, callbacks: bool,
               error: str | None = None, event: str = "", **fields: Any) -> bool:
    """Move one task to target if its state allows; False if it had already moved on.

    Call inside a transaction. Raises TaskNotFound for an unknown id, IllegalTransition when the
    stored state can never reach target.
    """
    if transition_many([task_id], target, reason, now, tz, callbacks, error, event, **fields):
        return True
    if not Task.select().where(Task.task_id == task_id).exists():
        raise TaskNotFound(task_id)
    return False


def cancel(task_id: str, reason: str, now: float, tz: str, callbacks: bool) -> dict[str, Any]:
    """Cancel a task that has not finished; its unsent sends are dropped."""
    with atomic():
        row = for_update(Task.select().where(Task.task_id == task_id)).first()
        if row is None:
            raise TaskNotFound(f"no task with task_id {task_id}")
        if TaskStatus(row.status) in FINISHED_STATUSES:
            raise TaskFinished(f"task {task_id} has already finished as {row.status}")
        transition(task_id, TaskStatus.CANCELLED, reason or "cancelled by Tianwang", now, tz, callbacks,
                   error=None, event="cancel")
        outbox.cancel_pending_sends(task_id, now)
    return {"task_id": task_id, "status": TaskStatus.CANCELLED.value}


def task_view(row: Task, tz: str, with_history: bool) -> dict[str, Any]:
    """A task as the API shows it."""
    view: dict[str, Any] = {
        "task_id": row.task_id,
        "type": row.type,
        "customer": {"id": row.customer_id, "name": row.customer_name},
        "trigger": json.loads(row.trigger),
        "action": json.loads(row.action),
        "priority": row.priority,
        "timeout_hours": row.timeout_hours,
        "created_by": row.created_by,
        "status": row.status,
        "error": row.error,
        "retries": row.retries,
        "created_at": epoch_to_iso(row.created_at, tz),
        "updated_at": epoch_to_iso(row.updated_at, tz),
        "fire_at": epoch_to_iso(row.fire_at, tz) if row.fire_at else None,
        "timeout_at": epoch_to_iso(row.timeout_at, tz) if row.timeout_at else None,
        "triggered_at": epoch_to_iso(row.triggered_at, tz) if row.triggered_at else None,
        "trigger_detail": row.trigger_detail,
    }
    if with_history:
        view["history"] = [
            {"at": epoch_to_iso(t.at, tz), "from": t.from_status, "to": t.to_status, "reason": t.reason}
            for t in TaskTransition.select().where(TaskTransition.task_id == row.task_id).order_by(TaskTransition.id)
        ]
    return view


def get(task_id: str, tz: str) -> dict[str, Any]:
    """One task with its history."""
    row = Task.get_or_none(Task.task_id == task_id)
    if row is None:
        raise TaskNotFound(f"no task with task_id {task_id}")
    return task_view(row, tz, with_history=True)


def list_tasks(tz: str, status: str | None, customer: str | None, type_: str | None,
               page: int, page_size: int) -> dict[str, Any]:
    """Tasks newest first, filtered, one page."""
    query = Task.select()
    if status:
        query = query.where(Task.status == status)
    if customer:
        query = query.where(Task.customer_id == customer)
    if type_:
        query = query.where(Task.type == type_)
    total = query.count()
    rows = query.order_by(Task.created_at.desc(), Task.task_id.desc()).paginate(page, page_size)
    return {
        "items": [task_view(r, tz, with_history=False) for r in rows],
        "total": total,
        "page": page,
        "page_size": page_size,
    }


def stats() -> dict[str, Any]:
    """Counts by status, priority and trigger type."""

    def count_by(field: peewee.Field) -> dict[str, int]:
        rows = Task.select(field, peewee.fn.COUNT(Task.task_id).alias("n")).group_by(field).tuples()
        return {key: n for key, n in rows}

    by_status = count_by(Task.status)
    return {
        "total": sum(by_status.values()),
        "by_status": {s.value: by_status.get(s.value, 0) for s in TaskStatus},
        "by_priority": count_by(Task.priority),
        "by_trigger": count_by(Task.trigger_type),
    }
