"""The database side of the console's operator actions: each change and its audit entry in one transaction."""

from __future__ import annotations

from typing import Any

from persistence import handoffs, jobs, operators, outbox, takeover, tasks
from persistence.connection import atomic
from persistence.models import Conversation, Outbox, Task
from persistence.postgres import for_update
from protocol.im import MsgType


def set_pause(customer_id: str, until: float | None, operator: str, reason: str, ip: str,
              now: float) -> dict[str, Any] | None:
    """Pause the AI for a customer until a time (resume: None), audited; the takeover after, None if unknown."""
    with atomic():
        conv = for_update(Conversation.select().where(Conversation.customer_id == customer_id)).first()
        if conv is None:
            return None
        before = takeover.view(conv, now)
        after = takeover.set_pause(customer_id, until, f"operator:{operator}"[:64], reason, now)
        operators.audit(operator, "pause" if until is not None else "resume", f"conversation:{customer_id}",
                        before, after, ip, now)
    return after


def staff_message(customer_id: str, text: str, key: str, operator: str, ip: str, takeover_s: float,
                  now: float) -> dict[str, Any] | None:
    """Queue a message to the customer from an operator, as staff: an im_send under `key` (sent once, like every
    send) that pauses the AI for takeover_s like any staff message; None if the customer is unknown.

    The row is an ordinary pending send: it is not held back by the pause, and a bridge that relays it back as
    `staff` is recognised as an echo of it (takeover.is_echo), not taken for another person writing.
    """
    with atomic():
        conv = for_update(Conversation.select().where(Conversation.customer_id == customer_id)).first()
        if conv is None:
            return None
        before = takeover.view(conv, now)
        payload = {"send_id": key, "acc_id": conv.acc_id, "acc_type": conv.acc_type, "customer_id": customer_id,
                   "msg_type": int(MsgType.TEXT), "content": text, "operator": operator}
        created = outbox.add(key=key, kind="im_send", ref=f"customer:{customer_id}", payload=payload, now=now)
        if created and takeover_s > 0:
            takeover.pause(conv, max(conv.paused_until or 0.0, now + takeover_s), f"operator:{operator}"[:64],
                           f"{operator} 在控制台发了消息:{text[:100]}")
            conv.save()
        row = Outbox.get(Outbox.key == key)
        after = {**takeover.view(conv, now), "send_id": key, "text": outbox.payload_of(row)["content"],
                 "send_status": row.status}
        if created:
            operators.audit(operator, "message", f"conversation:{customer_id}", before, after, ip, now)
    return {**after, "created": created}


def cancel_task(task_id: str, reason: str, operator: str, ip: str, tz: str, callbacks: bool,
                now: float) -> dict[str, Any]:
    """Cancel a Tianwang task as Tianwang's own cancel does, audited; TaskNotFound / TaskFinished as it raises."""
    with atomic():
        row = for_update(Task.select().where(Task.task_id == task_id)).first()
        before = {"status": row.status} if row is not None else None
        data = tasks.cancel(task_id, f"{operator} 在控制台取消" + (f":{reason}" if reason else ""), now, tz, callbacks)
        operators.audit(operator, "cancel_task", f"task:{task_id}", before, {"status": data["status"]}, ip, now)
    return data


def job_snapshot(job_id: str) -> dict[str, Any] | None:
    """A job as an audit entry shows it: state, hand-off and designer, and its hand-off tasks."""
    job = jobs.load_job(job_id)
    if job is None:
        return None
    return {"customer_id": job.customer_id, "state": job.state.value, "handoff_rule": job.handoff_rule,
            "handoff_status": job.handoff_status, "designer": job.designer,
            "handoffs": [{"status": h["status"], "task_id": h["task_id"]} for h in handoffs.of_job(job_id)]}
