"""The image-job store on a real SQLite file: whole decisions in one transaction, compare-and-set, outcomes once."""

from __future__ import annotations

import pytest

from core import image_job as jm
from persistence import jobs, outbox
from persistence.models import ImageJob, JobTransition, Outbox

T0 = 1_800_000_000.0


def _start(customer: str = "c1", job_id: str = "J1") -> jobs.Decision:
    step = jm.start_job(job_id, customer, "https://img.example/1.png", T0)
    return jobs.Decision(customer_id=customer, cause="m:m-1", steps=[step])


def test_a_decision_writes_the_job_its_history_and_its_effects_together(db_url: str) -> None:
    committed = jobs.commit(_start(), T0)
    assert committed.kinds == {"analyze"}
    (job,) = jobs.active_jobs("c1")
    assert job.job_id == "J1" and job.state.value == "quoting"
    assert [t.to_state for t in JobTransition.select()] == ["quoting"]
    assert [r.key for r in outbox.pending("analyze", T0 + 1)] == ["analyze:J1"]


def test_a_stale_writer_changes_nothing(db_url: str) -> None:
    jobs.commit(_start(), T0)
    job = jobs.load_job("J1")
    assert job is not None
    step = jm.step(job, jm.Cancel(reason="test", by="staff"), T0 + 1)
    jobs.commit(jobs.Decision(customer_id="c1", cause="x:1", steps=[step], before={"J1": job.version}), T0 + 1)
    # A second writer that loaded the same version loses, and its effects are not written either.
    with pytest.raises(jobs.StaleJob):
        jobs.commit(jobs.Decision(customer_id="c1", cause="x:2", steps=[step], before={"J1": job.version}), T0 + 2)
    assert ImageJob.get_by_id("J1").state == "cancelled"
    with pytest.raises(jobs.StaleJob):
        jobs.commit(_start(), T0 + 3)  # the same new job twice
    assert Outbox.select().where(Outbox.key.startswith("x:2")).count() == 0


def test_an_outcome_is_recorded_once_however_often_it_is_settled(db_url: str) -> None:
    jobs.commit(_start(), T0)
    first = jobs.settle("analyze:J1", "delivered", "analysis_failed", "c1", "J1", {"reason": "not_image"}, T0 + 1)
    again = jobs.settle("analyze:J1", "delivered", "analysis_failed", "c1", "J1", {"reason": "not_image"}, T0 + 2)
    assert first is not None and again is None
    assert [e.id for e in jobs.unprocessed_events("c1")] == [first]
