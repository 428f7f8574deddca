"""Hand-offs and takeover in the database (persistence/handoffs.py, persistence/takeover.py), on real SQLite files.

Each step of a hand-off tells the customer's conversation and staff once, however often it is repeated;
an echo of our own send is told apart from a person writing.
"""

from __future__ import annotations

import json

from persistence import handoffs, outbox, takeover
from persistence.connection import atomic
from persistence.models import Conversation, Handoff, JobEvent, Outbox

T0 = 1_800_000_000.0


def staff_rows() -> list[dict]:
    return [json.loads(r.payload) for r in Outbox.select().where(Outbox.kind == "staff").order_by(Outbox.id)]


def test_a_hand_off_is_queued_once_per_key(db_url: str) -> None:
    with atomic():
        assert handoffs.add("handoff:J1", "c1", "J1", "render_failed", "渲染失败", "http://img/1.png", T0)
        assert not handoffs.add("handoff:J1", "c1", "J1", "render_failed", "渲染失败", "http://img/1.png", T0 + 1)
    assert Handoff.select().count() == 1 and handoffs.has_open("c1") and not handoffs.has_open("c2")
    assert [r.key for r in handoffs.in_status("new", T0)] == ["handoff:J1"]


def test_each_step_tells_the_conversation_and_staff_once(db_url: str) -> None:
    with atomic():
        handoffs.add("handoff:J1", "c1", "J1", "customer_asked", "客户要求人工", "", T0)
    handoffs.set_task("handoff:J1", "t-1", T0)
    queued = handoffs.mark_queued("handoff:J1", "没有设计师在线", T0 + 1)
    assert queued is not None and handoffs.mark_queued("handoff:J1", "again", T0 + 2) is None
    assigned = handoffs.mark_assigned("handoff:J1", "t-1", "橘子", "派给橘子", T0 + 3)
    assert assigned is not None and handoffs.mark_assigned("handoff:J1", "t-1", "婷婷", "again", T0 + 4) is None
    assert handoffs.open_counts() == {"橘子": 1}
    done = handoffs.mark_completed("handoff:J1", "修好了", T0 + 5)
    assert done is not None and handoffs.mark_completed("handoff:J1", "again", T0 + 6) is None
    assert not handoffs.has_open("c1") and handoffs.open_counts() == {}

    events = [(e.kind, json.loads(e.payload)) for e in JobEvent.select().order_by(JobEvent.id)]
    assert events == [("handoff_queued", {}),
                      ("handoff_assigned", {"designer": "橘子", "task_id": "t-1", "after_queue": True}),
                      ("handoff_completed", {"notes": "修好了"})]
    assert [(p["event"], p["customer_id"]) for p in staff_rows()] == [("dispatch_queued", "c1"),
                                                                      ("dispatch_new", "c1")]
    (view,) = handoffs.of_job("J1")
    assert view["status"] == "completed" and view["designer"] == "橘子" and view["task_id"] == "t-1"


def test_a_failed_try_backs_off_and_counts(db_url: str) -> None:
    with atomic():
        handoffs.add("handoff:x", "c1", None, "payment_without_image", "付款没图", "", T0)
    assert handoffs.postpone("handoff:x", T0, 4.0, "unreachable") == 1
    assert handoffs.in_status("new", T0 + 1) == [] and len(handoffs.in_status("new", T0 + 5)) == 1
    assert handoffs.warn_once("handoff:x", "dispatch_failing", "连不上", T0)
    assert not handoffs.warn_once("handoff:x", "dispatch_failing", "连不上", T0 + 1)


def _sent(customer_id: str, content: str, key: str, at: float) -> None:
    outbox.add(key=key, kind="im_send", ref=f"customer:{customer_id}", now=at, payload={
        "send_id": key, "customer_id": customer_id, "msg_type": 0, "content": content})


def test_an_echo_of_our_own_send_is_recognised(db_url: str) -> None:
    with atomic():
        _sent("c1", "这张帮您做高清修复,18元,拍下付款后马上给您做", "m:1:1", T0)
        _sent("c2", "您好,我是店长", "m:2:1", T0)
    assert takeover.is_echo("c1", " 这张帮您做高清修复,18元,拍下付款后马上给您做 ", T0 + 2)
    assert not takeover.is_echo("c1", "您好,我是店长", T0 + 2)  # sent to another customer
    assert not takeover.is_echo("c1", "这单我来跟", T0 + 2)
    assert not takeover.is_echo("c1", "这张帮您做高清修复,18元,拍下付款后马上给您做", T0 + 3600)  # long after


def test_pause_and_resume_by_an_operator(db_url: str) -> None:
    with atomic():
        Conversation.create(customer_id="c1", first_seen=T0, last_seen=T0)
    view = takeover.set_pause("c1", T0 + 600, "operator", "客户投诉", T0)
    assert view == {"paused": True, "paused_until": T0 + 600, "paused_by": "operator", "reason": "客户投诉"}
    assert takeover.view(Conversation.get_by_id("c1"), T0 + 601)["paused"] is False  # ran out
    assert takeover.set_pause("c1", None, "", "", T0)["paused"] is False
    assert takeover.set_pause("nobody", T0 + 600, "operator", "", T0) is None
