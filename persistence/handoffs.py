"""Hand-offs to human designers: the durable queue the Dispatch actor works through, one dispatch task each.

A hand-off is written with the decision that made it (same transaction). Dispatch records the task id as
soon as the API gives one, then each step forward — queued, assigned, completed — together with the
outcome for the customer's conversation and the staff notification, in one transaction each, so a crash
between steps repeats a step's API call at most (the idempotency key makes that harmless) and never its
message to the customer or to staff.
"""

from __future__ import annotations

import json
from typing import Any

from persistence import outbox
from persistence.connection import atomic
from persistence.models import Handoff, JobEvent

OPEN = ("new", "queued", "assigned")


def add(key: str, customer_id: str, job_id: str | None, rule: str, reason: str, image_url: str, now: float) -> bool:
    """Queue a hand-off under its idempotency key (inside the caller's transaction); False if already queued."""
    inserted = (Handoff.insert(key=key, customer_id=customer_id, job_id=job_id, rule=rule, reason=reason,
                               image_url=image_url, status="new", created_at=now, updated_at=now)
                .on_conflict_ignore().as_rowcount().execute())
    return inserted == 1


def in_status(status: str, now: float | None = None, limit: int = 100) -> list[Handoff]:
    """Hand-offs in a status (due by now, when given), oldest first."""
    query = Handoff.select().where(Handoff.status == status)
    if now is not None:
        query = query.where(Handoff.next_at <= now)
    return list(query.order_by(Handoff.id).limit(limit))


def has_open(customer_id: str) -> bool:
    """Whether a hand-off of this customer is not completed yet."""
    return Handoff.select().where((Handoff.customer_id == customer_id) & Handoff.status.in_(OPEN)).exists()


def open_counts() -> dict[str, int]:
    """Open (assigned, not completed) hand-offs per designer: the fewest-tasks rule's count."""
    counts: dict[str, int] = {}
    for row in Handoff.select(Handoff.designer).where((Handoff.status == "assigned") & Handoff.designer.is_null(False)):
        counts[row.designer] = counts.get(row.designer, 0) + 1
    return counts


def set_task(key: str, task_id: str, now: float) -> None:
    """Remember the dispatch task the API created, before anything else is done with it."""
    Handoff.update(task_id=task_id, updated_at=now).where(Handoff.key == key).execute()


def postpone(key: str, now: float, delay_s: float, error: str) -> int:
    """A failed try: try again after delay_s; the number of tries so far."""
    Handoff.update(attempts=Handoff.attempts + 1, next_at=now + delay_s, error=error[:500], updated_at=now).where(
        Handoff.key == key).execute()
    return Handoff.get(Handoff.key == key).attempts


def _outcome(row: Handoff, kind: str, payload: dict[str, Any], now: float) -> int | None:
    """The conversation's outcome for this step, once (keyed by step and hand-off)."""
    inserted = (JobEvent.insert(customer_id=row.customer_id, job_id=row.job_id or "", kind=kind,
                                source=f"{kind}:{row.key}", payload=json.dumps(payload, ensure_ascii=False),
                                created_at=now)
                .on_conflict_ignore().execute())
    if not inserted:
        return None
    return JobEvent.get(JobEvent.source == f"{kind}:{row.key}").id


def _staff(row: Handoff, event: str, text: str, now: float) -> None:
    outbox.add(key=f"staff:{event}:{row.key}", kind="staff", ref=row.job_id or f"customer:{row.customer_id}", now=now,
               payload={"event": event, "text": text, "customer_id": row.customer_id, "job_id": row.job_id})


def mark_queued(key: str, text: str, now: float) -> int | None:
    """No designer online: the hand-off waits; the customer and staff are told once. The outcome's id, or None."""
    with atomic():
        changed = Handoff.update(status="queued", queued_told=True, error=None, updated_at=now).where(
            (Handoff.key == key) & (Handoff.status == "new")).execute()
        if not changed:
            return None
        row = Handoff.get(Handoff.key == key)
        _staff(row, "dispatch_queued", text, now)
        return _outcome(row, "handoff_queued", {}, now)


def mark_assigned(key: str, task_id: str, designer: str, text: str, now: float) -> int | None:
    """The task is assigned: staff get the new dispatch, the customer is told (unless told when queued)."""
    with atomic():
        changed = Handoff.update(status="assigned", task_id=task_id, designer=designer, assigned_at=now, error=None,
                                 updated_at=now).where(
            (Handoff.key == key) & Handoff.status.in_(("new", "queued"))).execute()
        if not changed:
            return None
        row = Handoff.get(Handoff.key == key)
        _staff(row, "dispatch_new", text, now)
        return _outcome(row, "handoff_assigned",
                        {"designer": designer, "task_id": task_id, "after_queue": row.queued_told}, now)


def mark_completed(key: str, notes: str, now: float) -> int | None:
    """The designer completed the task: the job is done by staff."""
    with atomic():
        changed = Handoff.update(status="completed", completed_at=now, updated_at=now).where(
            (Handoff.key == key) & (Handoff.status == "assigned")).execute()
        if not changed:
            return None
        return _outcome(Handoff.get(Handoff.key == key), "handoff_completed", {"notes": notes}, now)


def warn_once(key: str, event: str, text: str, now: float) -> bool:
    """Tell staff something about a hand-off once (keyed by event); False if told before."""
    row = Handoff.get_or_none(Handoff.key == key)
    if row is None:
        return False
    return outbox.add(key=f"staff:{event}:{key}", kind="staff", ref=row.job_id or f"customer:{row.customer_id}",
                      now=now, payload={"event": event, "text": text, "customer_id": row.customer_id,
                                        "job_id": row.job_id})


def view(row: Handoff) -> dict[str, Any]:
    """A hand-off as the API shows it."""
    return {"key": row.key, "rule": row.rule, "reason": row.reason, "status": row.status, "task_id": row.task_id,
            "designer": row.designer, "attempts": row.attempts, "error": row.error, "created_at": row.created_at,
            "assigned_at": row.assigned_at, "completed_at": row.completed_at}


def of_customer(customer_id: str) -> list[dict[str, Any]]:
    """A customer's hand-offs, oldest first."""
    return [view(r) for r in Handoff.select().where(Handoff.customer_id == customer_id).order_by(Handoff.id)]


def of_job(job_id: str) -> list[dict[str, Any]]:
    """A job's hand-off(s)."""
    return [view(r) for r in Handoff.select().where(Handoff.job_id == job_id).order_by(Handoff.id)]
