"""Reads for the operators' console: a bounded snapshot of the shop, and fingerprints that move when it may have.

Every list is limited; the fingerprint looked at every tick reads only indexes, the one that needs scans is
looked at seldom, and a snapshot is built only when one of them moved: a console left open costs the
database little, and nothing when nobody watches.
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from persistence import handoffs, operators, takeover
from persistence.connection import database_proxy
from persistence.jobs import customer_orders, job_orders
from persistence.models import (
    AuditEntry,
    Conversation,
    Handoff,
    ImageJob,
    InboundMessage,
    JobEvent,
    JobTransition,
    Outbox,
    RenderAttempt,
    Task,
    TaskTransition,
)

LIMIT = 30
RECENT_SENDS = 500  # the latest sends scanned for each conversation's last message out
RENDER_KINDS = ("analyze", "render", "find")
FINISHED_TASKS = ("completed", "failed", "cancelled", "timeout")
TEXT_MAX = 160


def changes() -> tuple[Any, ...]:
    """Moves with every new message, send, job or task step, hand-off step, render attempt and operator action:
    newest ids, and counts of the few pending or failed rows, all read from indexes (well under a millisecond
    with 100,000 rows), so the stream can look every tick."""
    t = {m.__name__: m._meta.table_name for m in (InboundMessage, Outbox, TaskTransition, JobTransition, JobEvent,
                                                  Handoff, RenderAttempt, AuditEntry, ImageJob, Task)}
    sql = (f"SELECT (SELECT MAX(id) FROM {t['InboundMessage']}),"
           f" (SELECT COUNT(*) FROM {t['InboundMessage']} WHERE handled = {_false()}),"
           f" (SELECT MAX(id) FROM {t['Outbox']}),"
           f" (SELECT COUNT(*) FROM {t['Outbox']} WHERE status = 'pending'),"
           f" (SELECT SUM(attempts) FROM {t['Outbox']} WHERE status = 'pending'),"
           f" (SELECT COUNT(*) FROM {t['Outbox']} WHERE status = 'failed'),"
           f" (SELECT MAX(id) FROM {t['TaskTransition']}), (SELECT MAX(created_at) FROM {t['Task']}),"
           f" (SELECT MAX(id) FROM {t['JobTransition']}), (SELECT MAX(created_at) FROM {t['ImageJob']}),"
           f" (SELECT MAX(id) FROM {t['JobEvent']}),"
           f" (SELECT MAX(id) FROM {t['Handoff']}), (SELECT MAX(updated_at) FROM {t['Handoff']} WHERE status IN"
           f" ({', '.join(repr(s) for s in handoffs.OPEN)})), (SELECT MAX(id) FROM {t['RenderAttempt']}),"
           f" (SELECT MAX(id) FROM {t['AuditEntry']})")
    return tuple(database_proxy.obj.execute_sql(sql).fetchone())


def slow_changes(now: float) -> tuple[Any, ...]:
    """What changes() cannot see from indexes: takeovers (started by the Tianwang-side API, or running out) and
    any update in place; a scan of the conversations, jobs and tasks, so looked at every few seconds only."""
    t = {m.__name__: m._meta.table_name for m in (Conversation, ImageJob, Task)}
    p = database_proxy.obj.param
    sql = (f"SELECT (SELECT COUNT(*) FROM {t['Conversation']} WHERE paused_until > {p}),"
           f" (SELECT SUM(paused_until) FROM {t['Conversation']} WHERE paused_until > {p}),"
           f" (SELECT MAX(updated_at) FROM {t['ImageJob']}), (SELECT MAX(updated_at) FROM {t['Task']})")
    return tuple(database_proxy.obj.execute_sql(sql, (now, now)).fetchone())


def _false() -> str:
    return "0" if isinstance(database_proxy.obj, peewee.SqliteDatabase) else "FALSE"


def snapshot(now: float, limit: int = LIMIT) -> dict[str, Any]:
    """Everything the console shows that lives in the database, each list at most `limit` long."""
    return {
        "conversations": conversations(now, limit),
        "jobs": jobs(limit),
        "tasks": tasks(limit),
        "task_counts": task_counts(),
        "render_queue": render_queue(limit),
        "queue_counts": queue_counts(),
        "handoffs": handoff_rows(limit),
        "designer_load": handoffs.open_counts(),
        "takeovers": takeovers(now, limit),
        "failures": failures(limit),
        "audit": operators.recent_audit(limit),
    }


def summary(kind: str, content: Any) -> str:
    """One line for a message: its text, or what it is (图片 / 订单 / 付款) with its essentials."""
    if kind == "image":
        return "[图片 image]"
    if kind == "staff":  # the shop's staff writing in their own IM client, relayed by the bridge
        return "[店员 staff] " + summary("text", content)
    if isinstance(content, dict):
        amount = content.get("amount")
        label = {"order": "订单 order", "payment": "付款 payment"}.get(kind, kind)
        return f"[{label}] {amount}元" if amount is not None else f"[{label}]"
    text = str(content)
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX - 1] + "…"


def _send_summary(payload: dict[str, Any]) -> str:
    kind = {1: "image", 2: "file", 3: "link"}.get(payload.get("msg_type", 0))
    content = payload.get("content", "")
    if kind == "image":
        return "[图片 image]"
    if kind:
        return f"[{kind}] {summary('text', content)}"
    return summary("text", content)


def conversations(now: float, limit: int = LIMIT) -> list[dict[str, Any]]:
    """The most recently active conversations with their takeover and last message in and out."""
    convs = list(Conversation.select().order_by(Conversation.last_seen.desc()).limit(limit))
    ids = [c.customer_id for c in convs]
    if not ids:
        return []
    newest = (InboundMessage.select(peewee.fn.MAX(InboundMessage.id))
              .where(InboundMessage.customer_id.in_(ids)).group_by(InboundMessage.customer_id))
    last_in = {m.customer_id: m for m in InboundMessage.select().where(InboundMessage.id.in_(newest))}
    last_out: dict[str, dict[str, Any]] = {}
    wanted = set(ids)
    for raw, status, at in (Outbox.select(Outbox.payload, Outbox.status, Outbox.created_at)
                            .where(Outbox.kind == "im_send").order_by(Outbox.id.desc()).limit(RECENT_SENDS).tuples()):
        payload = json.loads(raw)
        customer = payload.get("customer_id")
        if customer in wanted and customer not in last_out:
            last_out[customer] = {"text": _send_summary(payload), "status": status, "at": at}
            if len(last_out) == len(wanted):
                break
    out = []
    for c in convs:
        m = last_in.get(c.customer_id)
        paused = c.paused_until is not None and c.paused_until > now
        out.append({
            "customer_id": c.customer_id, "name": c.name, "last_seen": c.last_seen, "messages": c.messages,
            "paused": paused, "paused_until": c.paused_until if paused else None,
            "paused_by": c.paused_by if paused else None,
            "last_in": {"kind": m.kind, "text": summary(m.kind, json.loads(m.content)), "at": m.received_at}
            if m else None,
            "last_out": last_out.get(c.customer_id),
        })
    return out


def jobs(limit: int = LIMIT) -> list[dict[str, Any]]:
    """The newest image jobs: state, price, risk, hand-off, and whether a result (thumbnail) exists."""
    rows = list(ImageJob.select().order_by(ImageJob.created_at.desc()).limit(limit))
    open_handoffs = {h.job_id: h for h in Handoff.select().where(Handoff.job_id.in_([r.job_id for r in rows]))}
    orders = job_orders(rows)
    out = []
    for r in rows:
        data = json.loads(r.data)
        h = open_handoffs.get(r.job_id)
        order = orders.get(r.job_id)
        out.append({
            "job_id": r.job_id, "customer_id": r.customer_id, "state": r.state, "operation": data.get("operation"),
            "price": data.get("price"), "paid": bool(data.get("paid")), "complexity": data.get("complexity"),
            "risk": data.get("risk") or None, "risk_reason": data.get("risk_reason") or "",
            "handoff": {"rule": h.rule, "status": h.status, "designer": h.designer, "reason": h.reason}
            if h else None,
            "has_result": bool(r.result_path), "has_source": bool(r.source_path),
            "created_at": r.created_at, "updated_at": r.updated_at,
            "order": {"order_key": order["order_key"], "number": data.get("number", 0), "photos": len(order["jobs"]),
                      "owed": order["owed"], "paid": order["paid"]} if order else None,
        })
    return out


def tasks(limit: int = LIMIT) -> list[dict[str, Any]]:
    """The newest Tianwang tasks."""
    return [{"task_id": t.task_id, "type": t.type, "customer_id": t.customer_id, "customer_name": t.customer_name,
             "trigger": t.trigger_type, "priority": t.priority, "status": t.status, "error": t.error,
             "finished": t.status in FINISHED_TASKS, "created_at": t.created_at, "updated_at": t.updated_at}
            for t in Task.select().order_by(Task.created_at.desc()).limit(limit)]


def task_counts() -> dict[str, int]:
    """Tasks per status."""
    return dict(Task.select(Task.status, peewee.fn.COUNT(Task.status)).group_by(Task.status).tuples())  # index only


def render_queue(limit: int = LIMIT) -> list[dict[str, Any]]:
    """Analyses, look-ups and renders not done yet, oldest first; a render with a started attempt is in flight."""
    rows = list(Outbox.select().where((Outbox.status == "pending") & Outbox.kind.in_(RENDER_KINDS))
                .order_by(Outbox.id).limit(limit))
    started = dict(RenderAttempt.select(RenderAttempt.render_id, RenderAttempt.attempt)
                   .where(RenderAttempt.render_id.in_([r.key for r in rows if r.kind == "render"])
                          & (RenderAttempt.status == "started")).tuples()) if rows else {}
    out = []
    for r in rows:
        payload = json.loads(r.payload)
        out.append({"key": r.key, "kind": r.kind, "job_id": payload.get("job_id"),
                    "customer_id": payload.get("customer_id"), "operation": payload.get("operation"),
                    "in_flight": r.key in started, "attempt": started.get(r.key), "tries": r.attempts,
                    "error": r.error, "created_at": r.created_at})
    return out


def queue_counts() -> dict[str, int]:
    """Pending outbox rows per kind (sends, callbacks, renders, mails…): how far behind each executor is."""
    return dict(Outbox.select(Outbox.kind, peewee.fn.COUNT(Outbox.id)).where(Outbox.status == "pending")
                .group_by(Outbox.kind).tuples())


def handoff_rows(limit: int = LIMIT) -> list[dict[str, Any]]:
    """Open hand-offs (all of them up to the limit) and then the latest completed ones."""
    open_rows = list(Handoff.select().where(Handoff.status.in_(handoffs.OPEN)).order_by(Handoff.id).limit(limit))
    done = list(Handoff.select().where(Handoff.status.not_in(handoffs.OPEN)).order_by(Handoff.id.desc())
                .limit(max(5, limit - len(open_rows))))
    return [{**handoffs.view(h), "customer_id": h.customer_id, "job_id": h.job_id} for h in open_rows + done]


def takeovers(now: float, limit: int = LIMIT) -> list[dict[str, Any]]:
    """Conversations a person has now, the soonest to end first."""
    return [{"customer_id": c.customer_id, "name": c.name, "paused_until": c.paused_until, "by": c.paused_by,
             "reason": c.pause_reason}
            for c in Conversation.select().where(Conversation.paused_until > now)
            .order_by(Conversation.paused_until).limit(limit)]


def failures(limit: int = LIMIT) -> list[dict[str, Any]]:
    """What went wrong lately, from the database: failed sends and effects, failed jobs and tasks, stuck hand-offs."""
    out = [{"at": r.updated_at, "source": f"outbox:{r.kind}", "ref": r.ref, "message": r.error or "failed"}
           for r in Outbox.select().where(Outbox.status == "failed").order_by(Outbox.id.desc()).limit(limit)]
    out += [{"at": r.updated_at, "source": "job", "ref": r.job_id,
             "message": _job_failure(json.loads(r.data), r.customer_id)}
            for r in ImageJob.select().where(ImageJob.state == "failed").order_by(ImageJob.created_at.desc())
            .limit(limit)]
    out += [{"at": t.updated_at, "source": "task", "ref": t.task_id, "message": t.error or "failed"}
            for t in Task.select().where(Task.status == "failed").order_by(Task.created_at.desc()).limit(limit)]
    out += [{"at": h.updated_at, "source": "handoff", "ref": h.job_id or h.customer_id, "message": h.error}
            for h in Handoff.select().where(Handoff.status.in_(handoffs.OPEN) & Handoff.error.is_null(False))
            .order_by(Handoff.id.desc()).limit(limit)]
    return sorted(out, key=lambda f: f["at"] or 0, reverse=True)[:limit]


def _job_failure(data: dict[str, Any], customer_id: str) -> str:
    reason = data.get("handoff_reason") or data.get("risk_reason")
    return f"{data.get('operation')} job of {customer_id} failed" + (f": {reason}" if reason else "")


def conversation_detail(customer_id: str, now: float, limit: int = 60) -> dict[str, Any] | None:
    """One conversation for the console: what the customer said and what the shop sent (held sends too), in
    order, with the takeover, the customer's jobs and hand-offs; None for an unknown customer."""
    conv = Conversation.get_or_none(Conversation.customer_id == customer_id)
    if conv is None:
        return None
    said = [{"dir": "in", "kind": m.kind, "text": summary(m.kind, json.loads(m.content)), "at": m.received_at}
            if m.kind != "staff" else  # staff wrote in their own IM client: the shop speaking
            {"dir": "out", "kind": "text", "text": summary("text", json.loads(m.content)), "at": m.received_at,
             "status": "delivered", "by": "staff", "by_name": "IM"}
            for m in InboundMessage.select().where(InboundMessage.customer_id == customer_id)
            .order_by(InboundMessage.id.desc()).limit(limit)]
    timeline = sorted(said + _sends_to(customer_id, limit), key=lambda e: e["at"])[-limit:]
    job_rows = ImageJob.select().where(ImageJob.customer_id == customer_id).order_by(ImageJob.created_at.desc())
    return {
        "customer_id": conv.customer_id, "name": conv.name, "messages": conv.messages, "email": conv.email,
        "takeover": takeover.view(conv, now), "timeline": timeline,
        "jobs": [{"job_id": r.job_id, "state": r.state, "price": json.loads(r.data).get("price"),
                  "operation": json.loads(r.data).get("operation"), "has_result": bool(r.result_path),
                  "number": json.loads(r.data).get("number", 0)}
                 for r in job_rows.limit(10)],
        "image_orders": customer_orders(customer_id)[:10],
        "handoffs": handoffs.of_customer(customer_id)[-10:],
    }


def _sends_to(customer_id: str, limit: int) -> list[dict[str, Any]]:
    """What was sent (or held back from) a customer lately, newest first, each with who it came from: an
    operator (`staff`), a Tianwang task (`task`), or the AI."""
    rows = [(r, json.loads(r.payload)) for r in
            Outbox.select(Outbox.ref, Outbox.payload, Outbox.status, Outbox.created_at)
            .where((Outbox.kind == "im_send") & Outbox.payload.contains(json.dumps(customer_id, ensure_ascii=False)))
            .order_by(Outbox.id.desc()).limit(limit * 2)]
    rows = [(r, p) for r, p in rows if p.get("customer_id") == customer_id][:limit]
    task_refs = {t for (t,) in Task.select(Task.task_id).where(Task.task_id.in_({r.ref for r, _ in rows})).tuples()}
    out = []
    for r, p in rows:
        by, name = ("staff", p["operator"]) if p.get("operator") else ("task", r.ref) if r.ref in task_refs \
            else ("ai", "")
        out.append({"dir": "out", "kind": {1: "image", 2: "file", 3: "link"}.get(p.get("msg_type"), "text"),
                    "text": _send_summary(p), "status": r.status, "at": r.created_at, "by": by, "by_name": name})
    return out


def image_path(job_id: str, which: str) -> str | None:
    """The stored file behind a job's thumbnail: its result's preview (a PNG even for PSD or SVG results) or
    result, or the customer's photo; None when the job or that image does not exist."""
    row = ImageJob.get_or_none(ImageJob.job_id == job_id)
    if row is None:
        return None
    if which == "source":
        return row.source_path
    if not row.result_path:
        return None
    renders = [f"{job_id}-r{i}" for i in range(1, int(json.loads(row.data).get("renders") or 0) + 1)]
    attempt = (RenderAttempt.select(RenderAttempt.preview_path)
               .where(RenderAttempt.render_id.in_(renders) & (RenderAttempt.path == row.result_path)
                      & RenderAttempt.preview_path.is_null(False)).first()) if renders else None
    return attempt.preview_path if attempt else row.result_path
