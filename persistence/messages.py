"""IM messages, conversations and customer events."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from core.customer_events import JOB_KINDS, scheduler_event
from persistence import takeover
from persistence.connection import atomic, database_proxy
from persistence.models import Conversation, CustomerEvent, InboundMessage
from persistence.postgres import for_update, lock_keys
from protocol.im import MessageFrame, MessageKind
from protocol.messages import EventItem, InboundItem


def store_inbound(frames: list[MessageFrame], now: float) -> list[tuple[InboundItem, bool]]:
    """Store bridge frames once each, in one transaction; per frame, the item to route and whether it was new."""
    out: list[tuple[InboundItem, bool]] = []
    with atomic():
        ids = list({f.msg_id for f in frames})
        lock_keys("inbound", ids)  # a frame re-sent to another receiver is stored once
        known = {r.msg_id: r for r in InboundMessage.select().where(InboundMessage.msg_id.in_(ids))}
        for frame in frames:
            row = known.get(frame.msg_id)
            created = row is None
            if row is None:
                row = known[frame.msg_id] = InboundMessage.create(
                    msg_id=frame.msg_id,
                    customer_id=frame.customer.id,
                    customer_name=frame.customer.name,
                    acc_id=frame.acc_id,
                    acc_type=frame.acc_type,
                    kind=frame.kind.value,
                    content=json.dumps(frame.content, ensure_ascii=False),
                    ts=frame.ts,
                    received_at=now,
                )
            out.append((inbound_item(row), created))
    return out


def inbound_item(row: InboundMessage) -> InboundItem:
    """The routable form of a stored message."""
    return InboundItem(
        inbound_id=row.id,
        msg_id=row.msg_id,
        customer_id=row.customer_id,
        customer_name=row.customer_name,
        acc_id=row.acc_id,
        acc_type=row.acc_type,
        kind=MessageKind(row.kind),
        content=json.loads(row.content),
        ts=row.ts,
        received_at=row.received_at,
    )


def unhandled(older_than: float | None = None, customer_id: str | None = None, limit: int = 1000,
              window_s: float = 0.0, skip_customers: Collection[str] = (), after_id: int | None = None,
              up_to_id: int | None = None) -> list[InboundItem]:
    """Stored messages a conversation still owes work, oldest first: not yet handled, or handled but not yet
    taken by the image-job machine (older_than then also allows for its burst window of window_s).

    skip_customers: customers whose waiting messages the caller fetches on its own (rate-limited ones);
    after_id / up_to_id: only stored ids above / at most these.
    """
    query = InboundMessage.select().where(InboundMessage.processed_at.is_null())
    if older_than is not None:
        query = query.where(InboundMessage.received_at <= older_than - window_s)
    if customer_id is not None:
        query = query.where(InboundMessage.customer_id == customer_id)
    if skip_customers:
        query = query.where(InboundMessage.customer_id.not_in(list(skip_customers)))
    if after_id is not None:
        query = query.where(InboundMessage.id > after_id)
    if up_to_id is not None:
        query = query.where(InboundMessage.id <= up_to_id)
    return [inbound_item(r) for r in query.order_by(InboundMessage.id).limit(limit)]


def unprocessed(customer_id: str, limit: int = 200) -> list[tuple[int, InboundItem]]:
    """A customer's handled messages the image-job machine has not taken yet, in arrival order."""
    query = (InboundMessage.select()
             .where((InboundMessage.customer_id == customer_id) & (InboundMessage.handled == True)  # noqa: E712
                    & InboundMessage.processed_at.is_null())
             .order_by(InboundMessage.id).limit(limit))
    return [(r.id, inbound_item(r)) for r in query]


def handle_customer_messages(customer_id: str, items: list[InboundItem], now: float,
                             takeover_s: float = 0.0) -> list[EventItem]:
    """Record a customer's messages in their conversation, once each, and emit scheduler events.

    A staff message that is not an echo of our own send pauses the AI for this customer for takeover_s.
    """
    events: list[EventItem] = []
    with atomic():
        # Read locked: an operator's pause (another process) waits for this save instead of being overwritten by it.
        Conversation.insert(customer_id=customer_id, first_seen=now, last_seen=now).on_conflict_ignore().execute()
        conv = for_update(Conversation.select().where(Conversation.customer_id == customer_id)).get()
        for item in items:
            # The job machine takes the message later (after the burst window); other kinds are done now.
            done_at = None if item.kind in JOB_KINDS else now
            claimed = (
                InboundMessage.update(handled=True, handled_at=now, processed_at=done_at)
                .where((InboundMessage.id == item.inbound_id) & (InboundMessage.handled == False))  # noqa: E712
                .execute()
            )
            if not claimed:
                continue
            conv.last_seen = now
            conv.messages += 1
            if item.customer_name:
                conv.name = item.customer_name
            conv.acc_id, conv.acc_type = item.acc_id or conv.acc_id, item.acc_type or conv.acc_type
            if item.kind is MessageKind.TEXT:
                conv.last_text = str(item.content)
            elif item.kind is MessageKind.IMAGE:
                conv.images += 1
                conv.last_image_url = str(item.content)
            elif item.kind is MessageKind.ORDER:
                conv.orders += 1
            elif item.kind is MessageKind.PAYMENT:
                conv.payments += 1
            elif item.kind is MessageKind.STAFF and takeover_s > 0 and not takeover.is_echo(
                    customer_id, item.content, now):
                takeover.pause(conv, max(conv.paused_until or 0.0, now + takeover_s), "staff",
                               f"店员发了消息:{str(item.content)[:100]}")
            event = scheduler_event(item.kind, item.content)
            if event is not None:
                row = CustomerEvent.create(
                    customer_id=customer_id,
                    kind=event["kind"],
                    text=event.get("text", ""),
                    data=json.dumps(event.get("data", {}), ensure_ascii=False),
                    source=item.msg_id,
                    created_at=now,
                )
                events.append(event_item(row))
        conv.save()
    return events


def add_custom_event(name: str, customer_id: str | None, data: dict[str, Any], now: float) -> EventItem:
    """Store a custom event fired through the API."""
    with atomic():
        row = CustomerEvent.create(
            customer_id=customer_id, kind="custom", name=name, data=json.dumps(data, ensure_ascii=False),
            source="api", created_at=now,
        )
    return event_item(row)


def event_item(row: CustomerEvent) -> EventItem:
    """The message form of a stored event."""
    return EventItem(
        event_id=row.id, kind=row.kind, customer_id=row.customer_id, text=row.text, name=row.name, at=row.created_at
    )


def unconsumed_events(older_than: float | None = None, limit: int = 1000) -> list[EventItem]:
    """Events the scheduler has not consumed yet, oldest first."""
    query = CustomerEvent.select().where(CustomerEvent.consumed == False)  # noqa: E712
    if older_than is not None:
        query = query.where(CustomerEvent.created_at <= older_than)
    return [event_item(r) for r in query.order_by(CustomerEvent.id).limit(limit)]


def consume_event(event_id: int) -> bool:
    """Claim an event for matching; False if it was already consumed."""
    return bool(
        CustomerEvent.update(consumed=True, consumed_at=time.time())
        .where((CustomerEvent.id == event_id) & (CustomerEvent.consumed == False))  # noqa: E712
        .execute()
    )


def consume_events(seen: list[tuple[int, float]]) -> None:
    """Mark events consumed in bulk, each with the time it was matched (events that matched nothing)."""
    cursor = database_proxy.obj.cursor()
    param = database_proxy.obj.param
    cursor.executemany(
        f"UPDATE customerevent SET consumed = {param}, consumed_at = {param} WHERE id = {param} AND NOT consumed",
        [(True, at, event_id) for event_id, at in seen],
    )


def conversation_view(customer_id: str, history: int = 50) -> dict[str, Any] | None:
    """A conversation's profile basics and its latest messages, newest last."""
    conv = Conversation.get_or_none(Conversation.customer_id == customer_id)
    if conv is None:
        return None
    recent = (InboundMessage.select().where(InboundMessage.customer_id == customer_id)
              .order_by(InboundMessage.id.desc()).limit(history))
    return {
        "customer_id": conv.customer_id, "name": conv.name, "acc_id": conv.acc_id, "acc_type": conv.acc_type,
        "messages": conv.messages, "images": conv.images, "orders": conv.orders, "payments": conv.payments,
        "last_image_url": conv.last_image_url, "last_text": conv.last_text,
        "history": [{"msg_id": m.msg_id, "kind": m.kind, "content": json.loads(m.content), "ts": m.ts,
                     "handled": m.handled} for m in reversed(list(recent))],
    }
