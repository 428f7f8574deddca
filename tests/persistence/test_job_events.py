"""Between a conversation and the job store: outcome rows as the machine's events, job ids, decisions to commit."""

from __future__ import annotations

import json

from core import burst
from core import image_job as jm
from persistence.job_events import core_event, decision, job_id_for
from persistence.models import JobEvent
from protocol.image import Analysis, Complexity


def row(kind: str, **payload: object) -> JobEvent:
    return JobEvent(customer_id="c1", job_id="J1", kind=kind, source="k", payload=json.dumps(payload), created_at=1.0)


def test_a_job_id_is_derived_from_the_photo_that_started_it() -> None:
    assert job_id_for("c1", "m1") == job_id_for("c1", "m1") != job_id_for("c1", "m2") != job_id_for("c2", "m1")
    assert job_id_for("c1", "m1").startswith("J") and len(job_id_for("c1", "m1")) == 13


def test_outcomes_become_the_machines_events_with_the_columns_they_set() -> None:
    analysis = Analysis(width=800, height=600, complexity=Complexity.SIMPLE)
    event, extras = core_event(row("analyzed", analysis=analysis.model_dump(mode="json"), source_path="/in/1.jpg"))
    assert event == jm.Analyzed(analysis=analysis)
    assert extras == {"source_path": "/in/1.jpg", "analysis": analysis.model_dump_json()}
    done = row("render_done", render_id="R1", result_url="/r", preview_url="/p", score=88, qa_passed=True,
               result_path="/out/R1.png")
    assert core_event(done) == (jm.RenderDone(render_id="R1", result_url="/r", preview_url="/p", score=88,
                                              qa_passed=True), {"result_path": "/out/R1.png"})
    assert core_event(row("mail_failed", seq=2)) == (jm.MailFailed(seq=2, error=""), {})
    assert core_event(row("handoff_assigned", designer="Wang")) == (jm.HandOffAssigned(designer="Wang", task_id=""),
                                                                    {})
    assert core_event(row("order_mail_sent", seq=1, jobs=[])) == (None, {})  # not one job's: the order's


def test_a_decision_is_compared_and_set_against_what_it_was_decided_from() -> None:
    job = jm.start_job("J1", "c1", "/in/1.jpg", now=1.0).job
    result = burst.BurstResult(steps=[jm.start_job("J2", "c1", "/in/2.jpg", now=2.0)])
    d = decision("c1", "m:m2", result, [job], [], message_ids=[5, 6])
    assert (d.customer_id, d.cause, d.steps, d.before, d.orders_before, d.message_ids) == (
        "c1", "m:m2", result.steps, {"J1": job.version}, {}, [5, 6])
