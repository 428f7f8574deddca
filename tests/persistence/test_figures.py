"""The database's figures for /metrics (persistence/figures.py), on a real SQLite file."""

from __future__ import annotations

from persistence import figures, handoffs, outbox, timers
from persistence.connection import atomic
from persistence.models import ImageJob, InboundMessage, RenderAttempt, Task

T0 = 1_800_000_000.0


def add_task(task_id: str, status: str) -> None:
    Task.create(task_id=task_id, type="t", customer_id="c1", trigger_type="customer_reply", trigger="{}",
                action="{}", priority="normal", priority_rank=1, timeout_hours=1, body_hash="h", answer="{}",
                status=status, created_at=T0, updated_at=T0)


def test_an_empty_database_reads_as_zeros(db_url: str) -> None:
    f = figures.read()
    assert f.tasks_by_status == {} and f.customer_messages == 0 and f.jobs_by_state == {}
    assert f.outbox_pending == {} and f.timers_by_owner == {} and f.dispatch_tasks_created == 0


def test_each_figure_counts_its_rows(db_url: str) -> None:
    for i, status in enumerate(["waiting", "waiting", "completed", "failed"]):
        add_task(f"T{i}", status)
    for i in range(3):
        InboundMessage.create(msg_id=f"m{i}", customer_id="c1", kind="text", content="好的", received_at=T0)
    for i, state in enumerate(["pending", "completed", "completed"]):
        ImageJob.create(job_id=f"J{i}", customer_id="c1", state=state, data="{}", created_at=T0, updated_at=T0)
    RenderAttempt.create(render_id="r1", attempt=1, source="local", status="done", started_at=T0)
    RenderAttempt.create(render_id="r1", attempt=2, source="local", status="started", started_at=T0)
    RenderAttempt.create(render_id="r2", attempt=1, source="gemini", status="failed", started_at=T0)
    with atomic():
        handoffs.add("handoff:J1", "c1", "J1", "render_failed", "渲染失败", "", T0)
        handoffs.add("handoff:J2", "c1", "J2", "customer_asked", "客户要求人工", "", T0)
        handoffs.set_task("handoff:J1", "dispatch-1", T0)
        outbox.add("s1", "im_send", "T0", {}, T0 - 3600)
        outbox.add("s2", "im_send", "T0", {}, T0)
        outbox.add("s3", "im_send", "T1", {}, T0, status="delivered")
        outbox.add("r1", "render", "J0", {}, T0 - 5)
        timers.arm("scheduler", "fire:T0", T0 + 60)
        timers.arm("scheduler", "timeout:T0", T0 + 3600)

    f = figures.read()
    assert f.tasks_by_status == {"waiting": 2, "completed": 1, "failed": 1}
    assert f.customer_messages == 3
    assert f.jobs_by_state == {"pending": 1, "completed": 2}
    assert f.render_attempts == {("local", "done"): 1, ("local", "started"): 1, ("gemini", "failed"): 1}
    assert f.handoffs_by_rule == {"render_failed": 1, "customer_asked": 1}
    assert f.handoffs_by_status == {"new": 2} and f.dispatch_tasks_created == 1
    assert f.outbox_pending["im_send"] == 2 and f.outbox_oldest_pending_at["im_send"] == T0 - 3600
    assert f.outbox_pending["render"] == 1
    assert f.timers_by_owner == {"scheduler": 2}
