"""Between a conversation and the job store: a stored executor outcome (a JobEvent row) as the image-job machine's
event, the id of the job a photo starts, and what the machine decided as the decision to commit."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core import burst
from core import image_job as jm
from core.order import Order
from persistence.jobs import Decision
from persistence.models import JobEvent
from protocol.image import Analysis


def job_id_for(customer_id: str, msg_id: str) -> str:
    """A job's id, derived from the photo that started it: re-deciding the same burst names the same job."""
    return "J" + hashlib.sha256(f"{customer_id}\0{msg_id}".encode()).hexdigest()[:12]


def core_event(ev: JobEvent) -> tuple[jm.Event | None, dict[str, Any]]:
    """The machine's event for an executor outcome, and the job columns it sets."""
    p = json.loads(ev.payload)
    if ev.kind == "analyzed":
        analysis = Analysis.model_validate(p["analysis"])
        return jm.Analyzed(analysis=analysis), {"source_path": p["source_path"],
                                                "analysis": analysis.model_dump_json()}
    if ev.kind == "analysis_failed":
        return jm.AnalysisFailed(reason=p["reason"]), {}
    if ev.kind == "render_done":
        return jm.RenderDone(render_id=p["render_id"], result_url=p["result_url"], preview_url=p["preview_url"],
                             score=p["score"], qa_passed=p["qa_passed"]), {"result_path": p["result_path"]}
    if ev.kind == "render_failed":
        return jm.RenderFailed(render_id=p["render_id"], reason=p["reason"], kind=p["kind"]), {}
    if ev.kind == "mail_sent":
        return jm.MailSent(seq=p["seq"]), {}
    if ev.kind == "mail_failed":
        return jm.MailFailed(seq=p["seq"], error=p.get("error", "")), {}
    if ev.kind == "handoff_queued":
        return jm.HandOffQueued(), {}
    if ev.kind == "handoff_assigned":
        return jm.HandOffAssigned(designer=p["designer"], task_id=p.get("task_id", "")), {}
    if ev.kind == "handoff_completed":
        return jm.HandOffCompleted(notes=p.get("notes", "")), {}
    return None, {}


def decision(customer_id: str, cause: str, result: burst.BurstResult, loaded: list[jm.Job], orders: list[Order],
             **consumed: Any) -> Decision:
    """The machine's result as one decision to commit, compared-and-set against the jobs and orders it was decided
    from; consumed: the inputs it takes (message_ids, event_ids) and job extras."""
    return Decision(customer_id=customer_id, cause=cause, steps=list(result.steps),
                    loose_effects=tuple(result.loose_effects), before={j.job_id: j.version for j in loaded},
                    orders=result.orders, orders_before={o.order_key: o.version for o in orders}, **consumed)
