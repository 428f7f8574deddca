"""The service's figures as the database knows them, for /metrics: a few aggregate queries, no rows read.

Each query groups on an indexed column or counts through an index, so a scrape costs the same
whether the shop has a hundred tasks or a million; the bodies of messages are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import peewee

from persistence.models import Handoff, ImageJob, InboundMessage, Outbox, RenderAttempt, Task, Timer


@dataclass(frozen=True)
class Figures:
    """Counts read in one pass; the keys are the values of the column they were grouped on."""

    tasks_by_status: dict[str, int] = field(default_factory=dict)
    customer_messages: int = 0
    jobs_by_state: dict[str, int] = field(default_factory=dict)
    render_attempts: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, status) → count
    image_model_calls: dict[str, int] = field(default_factory=dict)  # operation → calls answered with an image
    handoffs_by_rule: dict[str, int] = field(default_factory=dict)
    handoffs_by_status: dict[str, int] = field(default_factory=dict)
    dispatch_tasks_created: int = 0
    outbox_pending: dict[str, int] = field(default_factory=dict)
    outbox_oldest_pending_at: dict[str, float] = field(default_factory=dict)  # kind → created_at of its oldest
    timers_by_owner: dict[str, int] = field(default_factory=dict)


def _grouped(column: peewee.Field, where: peewee.Expression | None = None) -> dict[str, int]:
    query = column.model.select(column, peewee.fn.COUNT(peewee.SQL("*"))).group_by(column)
    if where is not None:
        query = query.where(where)
    return {str(key): count for key, count in query.tuples()}


def read() -> Figures:
    """Every figure, in one read transaction so the counts agree with each other."""
    with Task._meta.database.atomic():
        pending = (Outbox.select(Outbox.kind, peewee.fn.COUNT(peewee.SQL("*")), peewee.fn.MIN(Outbox.created_at))
                   .where(Outbox.status == "pending").group_by(Outbox.kind).tuples())
        pending_rows = list(pending)
        attempts = (RenderAttempt.select(RenderAttempt.source, RenderAttempt.status,
                                         peewee.fn.COUNT(peewee.SQL("*")))
                    .group_by(RenderAttempt.source, RenderAttempt.status).tuples())
        return Figures(
            tasks_by_status=_grouped(Task.status),
            customer_messages=InboundMessage.select().count(),
            jobs_by_state=_grouped(ImageJob.state),
            render_attempts={(source, status): count for source, status, count in attempts},
            image_model_calls={op: int(calls or 0) for op, calls in RenderAttempt.select(
                RenderAttempt.operation, peewee.fn.SUM(RenderAttempt.model_calls)).group_by(
                RenderAttempt.operation).tuples()},
            handoffs_by_rule=_grouped(Handoff.rule),
            handoffs_by_status=_grouped(Handoff.status),
            dispatch_tasks_created=Handoff.select().where(Handoff.task_id.is_null(False)).count(),
            outbox_pending={kind: count for kind, count, _ in pending_rows},
            outbox_oldest_pending_at={kind: oldest for kind, _, oldest in pending_rows},
            timers_by_owner=_grouped(Timer.owner),
        )
