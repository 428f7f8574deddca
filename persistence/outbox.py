"""The outbox: side effects written with the change that caused them, performed by their executors."""

from __future__ import annotations

import json
from typing import Any

import peewee

from persistence.connection import atomic, database_proxy
from persistence.models import Outbox


def add(key: str, kind: str, ref: str, payload: dict[str, Any], now: float, status: str = "pending") -> bool:
    """Queue a side effect under an idempotency key; False if that key was already queued."""
    inserted = (
        Outbox.insert(
            key=key, kind=kind, ref=ref, payload=json.dumps(payload, ensure_ascii=False), status=status,
            created_at=now, updated_at=now,
        )
        .on_conflict_ignore()
        .as_rowcount()
        .execute()
    )
    return inserted == 1


def pending(kind: str, now: float, limit: int = 200, exclude_keys: frozenset[str] = frozenset()) -> list[Outbox]:
    """Pending rows of a kind that are due, oldest first."""
    rows = (
        Outbox.select()
        .where((Outbox.kind == kind) & (Outbox.status == "pending") & (Outbox.next_attempt_at <= now))
        .order_by(Outbox.id)
        .limit(limit + len(exclude_keys))
    )
    return [r for r in rows if r.key not in exclude_keys][:limit]


def mark(key: str, status: str, now: float, error: str | None = None, only_from: str = "pending") -> Outbox | None:
    """Settle a row (delivered / failed) if it is still in only_from; the row, or None if not."""
    with atomic():
        return _mark(key, status, now, error, only_from)


def _mark(key: str, status: str, now: float, error: str | None, only_from: str = "pending") -> Outbox | None:
    changed = (
        Outbox.update(status=status, error=error, updated_at=now, attempts=Outbox.attempts + 1)
        .where((Outbox.key == key) & (Outbox.status == only_from))
        .execute()
    )
    return Outbox.get_or_none(Outbox.key == key) if changed else None


def settle_many(results: list[tuple[str, str, str | None]], now: float) -> list[Outbox]:
    """Settle (key, status, error) answers in one transaction; the rows that were still pending."""
    settled = []
    with atomic():
        # In key order: two settlers of overlapping batches lock their rows in one order (no deadlock on PostgreSQL).
        for key, status, error in sorted(results, key=lambda r: r[0]):
            row = _mark(key, status, now, error)
            if row is not None:
                settled.append(row)
    return settled


def by_ref(kind: str, refs: list[str]) -> dict[str, list[Outbox]]:
    """Every row of a kind for these tasks or conversations, grouped by ref, in order."""
    grouped: dict[str, list[Outbox]] = {}
    for i in range(0, len(refs), 500):
        chunk = refs[i:i + 500]
        for row in Outbox.select().where((Outbox.kind == kind) & Outbox.ref.in_(chunk)).order_by(Outbox.id):
            grouped.setdefault(row.ref, []).append(row)
    return grouped


def requeue_failed(kind: str, ref: str, now: float) -> int:
    """Put a ref's failed rows back to pending (same keys) for a retry."""
    return (
        Outbox.update(status="pending", updated_at=now)
        .where((Outbox.kind == kind) & (Outbox.ref == ref) & (Outbox.status == "failed"))
        .execute()
    )


def cancel_pending_sends(ref: str, now: float) -> int:
    """Drop a task's sends that have not gone out yet."""
    return (
        Outbox.update(status="cancelled", updated_at=now)
        .where((Outbox.kind == "im_send") & (Outbox.ref == ref) & (Outbox.status.in_(["pending", "failed"])))
        .execute()
    )


def postpone(row_id: int, now: float, next_at: float, error: str) -> None:
    """Record a failed try of a row that is retried until delivered."""
    with atomic():
        Outbox.update(attempts=Outbox.attempts + 1, next_attempt_at=next_at, error=error, updated_at=now).where(
            Outbox.id == row_id
        ).execute()


def deliver(row_id: int, now: float) -> None:
    """Mark a retried-until-delivered row done."""
    with atomic():
        Outbox.update(status="delivered", updated_at=now, attempts=Outbox.attempts + 1, error=None).where(
            Outbox.id == row_id
        ).execute()


def first_pending_per_ref(kind: str, limit: int = 100) -> list[Outbox]:
    """For in-order delivery: each ref's oldest pending row, whether or not it is due yet."""
    from peewee import fn

    heads = (
        Outbox.select(fn.MIN(Outbox.id))
        .where((Outbox.kind == kind) & (Outbox.status == "pending"))
        .group_by(Outbox.ref)
        .limit(limit)
    )
    return list(Outbox.select().where(Outbox.id.in_(heads)).order_by(Outbox.id))


def payload_of(row: Outbox) -> dict[str, Any]:
    """A row's payload as a dict."""
    return json.loads(row.payload)


def replace_payload(key: str, payload: dict[str, Any], now: float) -> bool:
    """Rewrite a pending row's payload before its first send (a rephrased reply); False if no longer pending."""
    with atomic():
        return bool(Outbox.update(payload=json.dumps(payload, ensure_ascii=False), updated_at=now)
                    .where((Outbox.key == key) & (Outbox.status == "pending")).execute())


def _customer_of_payload() -> peewee.Node:
    """The payload's customer_id, as SQL (SQLite's json_extract, PostgreSQL's ->>)."""
    if isinstance(database_proxy.obj, peewee.PostgresqlDatabase):
        return peewee.SQL("(\"payload\"::json ->> 'customer_id')")
    return peewee.fn.json_extract(Outbox.payload, "$.customer_id")


def pending_fair(kind: str, now: float, limit: int, exclude_keys: frozenset[str] = frozenset(),
                 busy_customers: frozenset[str] = frozenset()) -> list[Outbox]:
    """Due pending rows of a kind, taken fairly: first each customer's oldest (customers with nothing in
    busy_customers before the others, then by age), then the rest oldest first; so one customer's backlog
    never stands in front of another customer's first request."""
    due = (Outbox.kind == kind) & (Outbox.status == "pending") & (Outbox.next_attempt_at <= now)
    if exclude_keys:
        due &= Outbox.key.not_in(list(exclude_keys))
    heads = Outbox.select(peewee.fn.MIN(Outbox.id)).where(due).group_by(_customer_of_payload())
    firsts = list(Outbox.select().where(Outbox.id.in_(heads)).order_by(Outbox.id))
    firsts.sort(key=lambda row: payload_of(row).get("customer_id") in busy_customers)  # stable: age within
    chosen = firsts[:limit]
    if len(chosen) < limit:
        taken = [row.id for row in chosen]
        rest = Outbox.select().where(due & Outbox.id.not_in(taken) if taken else due)
        chosen += list(rest.order_by(Outbox.id).limit(limit - len(chosen)))
    return chosen
