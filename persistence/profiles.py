"""The customer profile of SPEC §2: identity, e-mail and its delivery, history of jobs, tags computed from it."""

from __future__ import annotations

import json
import time
from typing import Any

from core.profile import ProfileStats, tags
from persistence import handoffs, jobs, messages, takeover
from persistence.models import Conversation, ImageJob, InboundMessage, JobTransition, Outbox, RequirementChange
from protocol.im import MsgType


def profile(customer_id: str) -> dict[str, Any] | None:
    """What the shop knows of a customer, derived from their conversation and jobs."""
    conv = Conversation.get_or_none(Conversation.customer_id == customer_id)
    if conv is None:
        return None
    rows = list(ImageJob.select().where(ImageJob.customer_id == customer_id).order_by(ImageJob.created_at))
    job_ids = [r.job_id for r in rows]
    data = [json.loads(r.data) for r in rows]
    revisions = (JobTransition.select().where(JobTransition.job_id.in_(job_ids)
                                              & (JobTransition.to_state == "revision")).count() if job_ids else 0)
    requirements = [c.new for c in RequirementChange.select().where(RequirementChange.task.in_(job_ids)
                                                                     & RequirementChange.accepted)
                    .order_by(RequirementChange.id)] if job_ids else []
    stats = ProfileStats(
        jobs=len(rows), paid_jobs=sum(1 for d in data if d.get("paid")),
        completed_jobs=sum(1 for r in rows if r.state == "completed"), revisions=revisions,
        text_orders=sum(1 for d in data if d.get("has_text") and d.get("paid")),
        mails_failed=1 if conv.email_status == "failed" else 0, first_seen=conv.first_seen, last_seen=conv.last_seen,
        now=time.time(),
    )
    return {
        "name": conv.name, "email": conv.email, "email_status": conv.email_status,
        "last_image_url": conv.last_image_url,
        "complexity_history": [d.get("complexity") for d in data if d.get("complexity")],
        "requirements": requirements, "orders": conv.orders, "payments": conv.payments, "revisions": revisions,
        "jobs": len(rows), "paid_jobs": stats.paid_jobs, "completed_jobs": stats.completed_jobs,
        "tags": tags(stats),
    }


def conversation_view(customer_id: str, base_url: str) -> dict[str, Any] | None:
    """A conversation for operators: profile, latest messages, image jobs (newest first) with their history, and
    the orders they make (owed, paid)."""
    view = messages.conversation_view(customer_id)
    if view is None:
        return None
    view["profile"] = profile(customer_id)
    view["jobs"] = jobs.customer_jobs(customer_id, base_url)
    view["image_orders"] = jobs.customer_orders(customer_id)
    view["takeover"] = takeover.view(Conversation.get(Conversation.customer_id == customer_id), time.time())
    view["handoffs"] = handoffs.of_customer(customer_id)
    view["sends"] = recent_sends(customer_id)
    return view


def recent_sends(customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """What the system sent (or, while paused, held back from) this customer lately, newest last."""
    rows = (Outbox.select().where((Outbox.kind == "im_send")
                                  & Outbox.payload.contains(json.dumps(customer_id, ensure_ascii=False)))
            .order_by(Outbox.id.desc()).limit(limit * 2))
    out = []
    for row in rows:
        p = json.loads(row.payload)
        if p.get("customer_id") == customer_id:
            out.append({"send_id": row.key, "msg_type": p.get("msg_type"), "content": p.get("content"),
                        "status": row.status, "at": row.created_at})
    return list(reversed(out[:limit]))


def recent_exchange(customer_id: str, limit: int = 6) -> list[tuple[str, str]]:
    """The last text lines between the customer and the shop, oldest first, as ("customer" | "shop", text)."""
    said = [(m.received_at, "customer", json.loads(m.content))
            for m in (InboundMessage.select().where((InboundMessage.customer_id == customer_id)
                                                    & (InboundMessage.kind == "text"))
                      .order_by(InboundMessage.id.desc()).limit(limit))]
    sent = [(s["at"], "shop", s["content"]) for s in recent_sends(customer_id, limit)
            if s["msg_type"] == int(MsgType.TEXT) and s["status"] == "delivered"]
    lines = sorted(((at, who, text) for at, who, text in said + sent if isinstance(text, str)), key=lambda x: x[0])
    return [(who, text) for _, who, text in lines[-limit:]]
