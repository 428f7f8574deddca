"""What a stored customer message means to the Scheduler (trigger events) and to the image-job machine (inputs)."""

from __future__ import annotations

from typing import Any

from core import burst as bm
from protocol.im import MessageKind
from protocol.messages import InboundItem

JOB_KINDS = frozenset({MessageKind.TEXT, MessageKind.IMAGE, MessageKind.ORDER, MessageKind.PAYMENT})


def scheduler_event(kind: MessageKind, content: Any) -> dict[str, Any] | None:
    """The trigger event a message fires (a reply text, an order, a payment), or None."""
    if kind is MessageKind.TEXT:
        return {"kind": "text", "text": str(content)}
    if kind in (MessageKind.ORDER, MessageKind.PAYMENT):
        data = content if isinstance(content, dict) else {"value": content}
        return {"kind": kind.value, "data": data}
    return None


def _order(content: Any) -> tuple[str, float]:
    if isinstance(content, dict):
        try:
            amount = float(content.get("amount") or 0)
        except (TypeError, ValueError):
            amount = 0.0
        return str(content.get("order_id") or ""), amount
    return str(content or ""), 0.0


def job_input(item: InboundItem) -> bm.Input | None:
    """The image-job machine's view of a message; None for kinds it does not take (staff)."""
    if item.kind is MessageKind.TEXT:
        return bm.TextIn(msg_id=item.msg_id, text=str(item.content))
    if item.kind is MessageKind.IMAGE:
        return bm.PhotoIn(msg_id=item.msg_id, url=str(item.content))
    if item.kind is MessageKind.PAYMENT:
        order_id, amount = _order(item.content)
        return bm.PaymentIn(msg_id=item.msg_id, order_id=order_id, amount=amount)
    if item.kind is MessageKind.ORDER:
        order_id, amount = _order(item.content)
        return bm.OrderIn(msg_id=item.msg_id, order_id=order_id, amount=amount)
    return None
