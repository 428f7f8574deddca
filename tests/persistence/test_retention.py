"""The daily sweep (persistence/retention.py) on a real database and a real DATA_DIR, with the clock given.

What an operator expects: a finished job older than RETENTION_DAYS keeps its row and history but no photo, result
or thumbnail; nothing of a job still in progress is touched; old messages go, recent ones stay; settled outbox
rows and consumed events go after COMPACTION_DAYS, pending and failed ones stay; files no row leads to go; every
step is a small batch, and the next sweep is due a day after one ends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from imaging.thumbnail import thumbnail
from persistence import retention, timers
from persistence.models import (
    CustomerEvent,
    ImageJob,
    InboundMessage,
    IndexedImage,
    JobEvent,
    JobTransition,
    LoginFailure,
    Outbox,
    PublicFile,
    RenderAttempt,
    Task,
    TaskTransition,
)
from persistence.retention import BATCH, DAY_S, Limits, Sweep

NOW = 1_900_000_000.0
LIMITS = Limits(files_s=1 * DAY_S, messages_s=2 * DAY_S, compaction_s=3 * DAY_S)


def _file(path: Path, age_s: float, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path, "PNG")
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def _job(data: Path, job_id: str, state: str, age_s: float) -> dict[str, Path]:
    """A job with its photo, a result and preview, an attempt, published URLs, an index row and a thumbnail."""
    source = _file(data / "images" / job_id, age_s)
    result = _file(data / "results" / f"{job_id}-r0-1.jpg", age_s)
    preview = _file(data / "results" / f"{job_id}-r0-1.preview.png", age_s)
    broken = _file(data / "results" / f"{job_id}-r0-2.png", age_s)  # an attempt that broke the contract: no row
    at = NOW - age_s
    ImageJob.create(job_id=job_id, customer_id="c1", state=state, data=json.dumps({"renders": 1}),
                    source_path=str(source), result_path=str(result), created_at=at, updated_at=at)
    JobTransition.create(job_id=job_id, at=at, from_state="processing", to_state=state, event="Delivered")
    RenderAttempt.create(render_id=f"{job_id}-r0", attempt=1, source="local", status="done", started_at=at,
                         finished_at=at, path=str(result), preview_path=str(preview), mime="image/jpeg", score=90)
    PublicFile.create(token=f"t-{job_id}", path=str(result), mime="image/jpeg", name=result.name, job_id=job_id,
                      created_at=at)
    IndexedImage.create(path=str(source), origin="original", job_id=job_id, phash="0" * 16, width=40, height=30,
                        size=source.stat().st_size, mtime=at, indexed_at=at)
    thumb = thumbnail(result, data / "thumbs")
    os.utime(thumb, (NOW, NOW))  # looked at today: only the job's own sweep removes it
    return {"source": source, "result": result, "preview": preview, "broken": broken, "thumb": thumb}


def _run(sweep: Sweep, now: float = NOW) -> int:
    """Step until the sweep ends; how many steps it took."""
    steps = 0
    while (pause := sweep.step(now)) != DAY_S:
        assert pause == retention.STEP_PAUSE_S
        steps += 1
    return steps + 1


def test_a_finished_job_past_retention_loses_its_files_and_keeps_its_story(db_url: str, tmp_path: Path) -> None:
    done = _job(tmp_path, "Jdone0000001", "completed", age_s=2 * DAY_S)
    running = _job(tmp_path, "Jbusy0000002", "processing", age_s=2 * DAY_S)
    recent = _job(tmp_path, "Jnew00000003", "completed", age_s=0.5 * DAY_S)
    _run(Sweep(tmp_path, LIMITS))
    assert not any(p.exists() for p in done.values())
    row = ImageJob.get(ImageJob.job_id == "Jdone0000001")
    assert (row.state, row.source_path, row.result_path) == ("completed", None, None)
    assert JobTransition.select().where(JobTransition.job_id == "Jdone0000001").count() == 1
    attempt = RenderAttempt.get(RenderAttempt.render_id == "Jdone0000001-r0")
    assert (attempt.score, attempt.path, attempt.preview_path) == (90, None, None)
    assert not PublicFile.select().where(PublicFile.job_id == "Jdone0000001").exists()
    assert not IndexedImage.select().where(IndexedImage.job_id == "Jdone0000001").exists()
    # In progress, or finished within RETENTION_DAYS: every file and row as it was (an attempt file no row names
    # is younger than COMPACTION_DAYS).
    assert all(p.exists() for p in (*running.values(), *recent.values()))
    assert ImageJob.get(ImageJob.job_id == "Jbusy0000002").source_path == str(running["source"])
    assert PublicFile.select().where(PublicFile.job_id.in_(["Jbusy0000002", "Jnew00000003"])).count() == 2


def test_old_messages_go_in_batches_and_recent_or_untaken_ones_stay(db_url: str, tmp_path: Path) -> None:
    old = BATCH * 2 + 17
    for n in range(old):
        InboundMessage.create(msg_id=f"old-{n}", customer_id="c1", kind="text", content=f"旧消息{n}",
                              received_at=NOW - 3 * DAY_S, processed_at=NOW - 3 * DAY_S, handled=True)
    InboundMessage.create(msg_id="new", customer_id="c1", kind="text", content="新消息", received_at=NOW - DAY_S,
                          processed_at=NOW - DAY_S, handled=True)
    InboundMessage.create(msg_id="held", customer_id="c1", kind="text", content="还没处理", received_at=NOW - 3 * DAY_S)
    sweep = Sweep(tmp_path, LIMITS)
    steps = _run(sweep)
    assert steps >= 3 + len(retention.STAGES) - 1  # 100 a step: three steps for 217 messages
    assert sorted(m.msg_id for m in InboundMessage.select()) == ["held", "new"]


def test_settled_rows_are_compacted_and_work_still_to_do_is_not(db_url: str, tmp_path: Path) -> None:
    old, recent = NOW - 4 * DAY_S, NOW - DAY_S
    for key, status, at in (("sent-old", "delivered", old), ("sent-new", "delivered", recent),
                            ("waiting", "pending", old), ("refused", "failed", old), ("gone", "cancelled", old)):
        Outbox.create(key=key, kind="im_send", ref="c1", payload="{}", status=status, created_at=at, updated_at=at)
    JobEvent.create(customer_id="c1", job_id="J1", kind="analyzed", source="a1", created_at=old, processed_at=old)
    JobEvent.create(customer_id="c1", job_id="J1", kind="render_done", source="r1", created_at=old)
    CustomerEvent.create(customer_id="c1", kind="reply", created_at=old, consumed=True, consumed_at=old)
    CustomerEvent.create(customer_id="c1", kind="reply", created_at=old)
    LoginFailure.create(ip="10.0.0.9", at=old)
    LoginFailure.create(ip="10.0.0.9", at=recent)
    _run(Sweep(tmp_path, LIMITS))
    assert sorted(o.key for o in Outbox.select()) == ["refused", "sent-new", "waiting"]
    assert [e.source for e in JobEvent.select()] == ["r1"]
    assert [e.consumed for e in CustomerEvent.select()] == [False]
    assert [f.at for f in LoginFailure.select()] == [recent]


def test_files_no_row_leads_to_go_after_compaction_days(db_url: str, tmp_path: Path) -> None:
    kept = _job(tmp_path, "Jbusy0000002", "processing", age_s=5 * DAY_S)
    stray = _file(tmp_path / "results" / "Jgone0000009-r0-1.png", 5 * DAY_S)
    young = _file(tmp_path / "images" / "Jgone0000009", DAY_S)
    stale_thumb = _file(tmp_path / "thumbs" / "0123456789abcdef.jpg", 5 * DAY_S)
    mail = _file(tmp_path / "outbox-mail" / "m1.eml", 2 * DAY_S)
    _run(Sweep(tmp_path, LIMITS))
    assert not stray.exists() and not stale_thumb.exists() and not mail.exists()
    assert young.exists()
    assert all(p.exists() for name, p in kept.items() if name != "broken")
    assert not kept["broken"].exists()  # an attempt that broke the contract, named by no row


def test_the_sweep_is_armed_on_first_start_and_due_again_a_day_after_it_ends(db_url: str, tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, LIMITS)
    assert sweep.first_delay(NOW) == 0.0
    assert timers.next_due(retention.OWNER) == NOW
    _run(sweep)
    assert timers.next_due(retention.OWNER) == NOW + DAY_S
    assert sweep.step(NOW + 600) == DAY_S - 600  # not due: nothing done, the time left
    assert Sweep(tmp_path, LIMITS).first_delay(NOW + 600) == DAY_S - 600  # after a restart, the same
    assert Sweep(tmp_path, LIMITS).first_delay(NOW + 2 * DAY_S) == 0.0  # overdue: at once


def test_a_tianwang_task_stops_quoting_a_customer_once_their_message_is_past_retention(db_url: str,
                                                                                        tmp_path: Path) -> None:
    for task_id, age in (("T_OLD", 3 * DAY_S), ("T_NEW", DAY_S)):
        at = NOW - age
        Task.create(task_id=task_id, type="t", customer_id="c1", trigger_type="customer_reply", trigger="{}",
                    action="{}", priority="normal", priority_rank=1, timeout_hours=1, body_hash="h", answer="{}",
                    status="completed", created_at=at, updated_at=at, triggered_at=at,
                    trigger_detail="customer_reply event 3: 我要退款")
        TaskTransition.create(task_id=task_id, at=at, from_status="waiting", to_status="running",
                              reason="triggered: customer_reply event 3: 我要退款")
        TaskTransition.create(task_id=task_id, at=at, from_status="running", to_status="completed",
                              reason="sent to the customer")
    _run(Sweep(tmp_path, LIMITS))
    old, new = Task.get(Task.task_id == "T_OLD"), Task.get(Task.task_id == "T_NEW")
    assert (old.trigger_detail, old.status) == ("customer_reply event 3", "completed")
    assert new.trigger_detail == "customer_reply event 3: 我要退款"
    reasons = [t.reason for t in TaskTransition.select().where(TaskTransition.task_id == "T_OLD")]
    assert reasons == ["triggered: customer_reply event 3", "sent to the customer"]
