"""Durable timers: deadlines kept in the database and re-armed by their owner after a restart."""

from __future__ import annotations

import json
from typing import Any

from persistence.connection import bulk_insert
from persistence.models import Timer


def arm(owner: str, key: str, due_at: float, payload: dict[str, Any] | None = None) -> None:
    """Set (or move) the timer named key; call inside a transaction."""
    Timer.insert(owner=owner, key=key, due_at=due_at, payload=json.dumps(payload or {})).on_conflict(
        conflict_target=[Timer.key], update={Timer.due_at: due_at, Timer.payload: json.dumps(payload or {})}
    ).execute()


def disarm(key: str) -> None:
    """Remove one timer."""
    Timer.delete().where(Timer.key == key).execute()


def disarm_all(keys: list[str]) -> None:
    """Remove these timers (exact keys: ids may hold any character a LIKE pattern would misread)."""
    Timer.delete().where(Timer.key.in_(keys)).execute()


def due(owner: str, now: float, limit: int = 500) -> list[Timer]:
    """The owner's timers due at now, earliest first."""
    return list(
        Timer.select().where((Timer.owner == owner) & (Timer.due_at <= now)).order_by(Timer.due_at).limit(limit)
    )


def next_due(owner: str) -> float | None:
    """When the owner's earliest timer is due."""
    row = Timer.select(Timer.due_at).where(Timer.owner == owner).order_by(Timer.due_at).first()
    return row.due_at if row else None


def arm_many(owner: str, entries: list[tuple[str, float, dict[str, Any]]]) -> None:
    """Set (or move) several timers, given as (key, due_at, payload); call inside a transaction."""
    if not entries:
        return
    rows = [{"owner": owner, "key": k, "due_at": due, "payload": json.dumps(p)} for k, due, p in entries]
    bulk_insert(Timer, rows, on_conflict="update", conflict_key="key", update=("due_at", "payload"))
