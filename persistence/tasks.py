"""Tianwang task store: idempotent receive, guarded transitions with history and callbacks, queries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import peewee

from core.tianwang import TIMER_KINDS, IllegalTransition, epoch_to_iso, fire_at, sources_of, timeout_at, timer_key
from persistence import outbox, timers
from persistence.db import atomic
from persistence.models import Task, TaskTransition
from protocol.tianwang import FINISHED_STATUSES, PRIORITY_RANK, TaskIn, TaskStatus


class TaskConflict(Exception):
    """The task_id exists with a different body."""


class TaskNotFound(Exception):
    """No task has this id."""


class TaskFinished(Exception):
    """The task has already finished; it can no longer change."""


def body_hash(task: TaskIn) -> str:
    """Hash of the validated body, defaults filled in, so equal requests hash equal."""
    canonical = json.dumps(task.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ReceiveResult:
    """The answer to one receive, and whether it created the task."""

    answer: dict[str, Any]
    created: bool


def _callback_payload(task_id: str, status: TaskStatus, error: str | None, now: float, tz: str) -> dict:
    return {"task_id": task_id, "status": status.value, "error": error, "timestamp": epoch_to_iso(now, tz)}


def _record(task_id: str, old: TaskStatus | None, new: TaskStatus, reason: str, error: str | None,
            now: float, tz: str, callbacks: bool) -> None:
    TaskTransition.create(
        task_id=task_id, at=now, from_status=old.value if old else None, to_status=new.value, reason=reason
    )
    seq = TaskTransition.select().where(TaskTransition.task_id == task_id).count()
    outbox.add(
        key=f"cb:{task_id}:{seq}",
        kind="callback",
        ref=task_id,
        payload=_callback_payload(task_id, new, error, now, tz),
        now=now,
        status="pending" if callbacks else "skipped",
    )


def receive_one(task: TaskIn, now: float, tz: str, callbacks: bool) -> ReceiveResult:
    """Store a new task as pending, or answer a repeat; call inside a transaction."""
    digest = body_hash(task)
    existing = Task.get_or_none(Task.task_id == task.task_id)
    if existing is not None:
        if existing.body_hash != digest:
            raise TaskConflict(f"task_id {task.task_id} was already received with a different body")
        return ReceiveResult(json.loads(existing.answer), created=False)
    answer = {"task_id": task.task_id, "status": TaskStatus.PENDING.value, "received_at": epoch_to_iso(now, tz)}
    Task.create(
        task_id=task.task_id,
        type=task.type,
        customer_id=task.customer.id,
        customer_name=task.customer.name,
        trigger_type=task.trigger.type.value,
        trigger=task.trigger.model_dump_json(exclude_none=True),
        action=task.action.model_dump_json(exclude_none=True),
        priority=task.priority.value,
        priority_rank=PRIORITY_RANK[task.priority],
        timeout_hours=task.timeout_hours,
        created_by=task.created_by,
        body_hash=digest,
        answer=json.dumps(answer, ensure_ascii=False),
        status=TaskStatus.PENDING.value,
        fire_at=fire_at(task.trigger, tz),
        timeout_at=timeout_at(task.trigger, now, task.timeout_hours),
        created_at=now,
        updated_at=now,
    )
    _record(task.task_id, None, TaskStatus.PENDING, "received", None, now, tz, callbacks)
    return ReceiveResult(answer, created=True)


def receive_many(tasks: list[TaskIn], now: float, tz: str, callbacks: bool) -> list[ReceiveResult | Exception]:
    """Group commit: every task of a batch in one transaction, each answered on its own."""
    results: list[ReceiveResult | Exception] = []
    with atomic():
        for task in tasks:
            try:
                with atomic():  # nested: a savepoint, so a conflict leaves the batch's other items alone
                    results.append(receive_one(task, now, tz, callbacks))
            except TaskConflict as exc:
                results.append(exc)
    return results


def transition(task_id: str, target: TaskStatus, reason: str, now: float, tz: str, callbacks: bool,
               error: str | None = None, event: str = "", **fields: Any) -> bool:
    """Move a task to target if its current state allows; False if someone moved it first.

    Call inside a transaction. Raises IllegalTransition when the stored state can never reach target.
    """
    allowed = sources_of(target)
    row = Task.get_or_none(Task.task_id == task_id)
    if row is None:
        raise TaskNotFound(task_id)
    current = TaskStatus(row.status)
    if current not in allowed:
        if current in FINISHED_STATUSES or current == target:
            return False
        raise IllegalTransition(task_id, current, target, event or reason)
    updates: dict[Any, Any] = {Task.status: target.value, Task.updated_at: now}
    if error is not None:
        updates[Task.error] = error
    for name, value in fields.items():
        updates[getattr(Task, name)] = value
    changed = Task.update(updates).where((Task.task_id == task_id) & (Task.status == current.value)).execute()
    if not changed:
        return False
    _record(task_id, current, target, reason, error, now, tz, callbacks)
    if target in FINISHED_STATUSES:
        timers.disarm_all([timer_key(task_id, what) for what in TIMER_KINDS])
    return True


def cancel(task_id: str, reason: str, now: float, tz: str, callbacks: bool) -> dict[str, Any]:
    """Cancel a task that has not finished; its unsent sends are dropped."""
    with atomic():
        row = Task.get_or_none(Task.task_id == task_id)
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
