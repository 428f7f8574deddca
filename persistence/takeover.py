"""Human takeover (SPEC §2): a person writing to a customer pauses the AI for that customer, across restarts.

A `staff` frame may be an echo of the system's own send relayed back by the bridge; it is recognised by what we
sent to that customer lately (the same text or URL within ECHO_WINDOW_S) and never taken for a person.
"""

from __future__ import annotations

import json
from typing import Any

from core.words import normalise
from persistence.connection import atomic
from persistence.models import Conversation, Outbox
from persistence.postgres import for_update

ECHO_WINDOW_S = 600.0  # a bridge relays echoes within seconds; ten minutes covers a bridge catching up after a gap


def is_echo(customer_id: str, content: Any, now: float) -> bool:
    """Whether a staff frame repeats something the system sent (or is sending) this customer lately."""
    said = normalise(str(content))
    if not said:
        return False
    rows = (Outbox.select(Outbox.payload)
            .where((Outbox.kind == "im_send") & (Outbox.created_at >= now - ECHO_WINDOW_S)
                   & (Outbox.status != "suppressed")
                   & Outbox.payload.contains(json.dumps(customer_id, ensure_ascii=False)))
            .order_by(Outbox.id.desc()).limit(500))
    for row in rows:
        payload = json.loads(row.payload)
        if payload.get("customer_id") != customer_id:
            continue
        if said in (normalise(str(payload.get("content", ""))), normalise(str(payload.get("fixed", "")))):
            return True
    return False


def pause(conv: Conversation, until: float, by: str, reason: str) -> None:
    """Pause the AI for this conversation until `until` (the caller saves the row)."""
    conv.paused_until, conv.paused_by, conv.pause_reason = until, by, reason[:500]


def is_paused(conv: Conversation | None, now: float) -> bool:
    """Whether a person has this conversation now."""
    return conv is not None and conv.paused_until is not None and conv.paused_until > now


def view(conv: Conversation, now: float) -> dict[str, Any]:
    """The takeover as the API shows it."""
    paused = is_paused(conv, now)
    return {"paused": paused, "paused_until": conv.paused_until if paused else None,
            "paused_by": conv.paused_by if paused else None, "reason": conv.pause_reason if paused else None}


def set_pause(customer_id: str, until: float | None, by: str, reason: str, now: float) -> dict[str, Any] | None:
    """Pause (until a time) or resume (None) a conversation by an operator; its takeover view, None if unknown."""
    with atomic():
        conv = for_update(Conversation.select().where(Conversation.customer_id == customer_id)).first()
        if conv is None:
            return None
        if until is None:
            conv.paused_until, conv.paused_by, conv.pause_reason = None, "", ""
        else:
            pause(conv, until, by, reason)
        conv.save()
        return view(conv, now)
