"""The console's reads (persistence/console.py) on a real SQLite file, written through the stores the actors use.

The snapshot shows each conversation's last message in and out, the takeovers, jobs, tasks, the render queue,
hand-offs and what failed, each list bounded; the fingerprint moves whenever any of that changes, takeovers
running out included, and stays put otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from persistence import console, handoffs, jobs, messages, operator_actions, operators, outbox, takeover, tasks
from persistence.connection import atomic
from persistence.models import Conversation, ImageJob
from protocol.im import MessageFrame
from protocol.tianwang import TaskIn

T0 = 1_800_000_000.0


def say(customer: str, kind: str, content: object, at: float, n: list[int] = [0]) -> None:  # noqa: B006 (a counter)
    """A customer's message, stored and handled the way the gateway and the conversation do it."""
    n[0] += 1
    frame = MessageFrame(msg_id=f"m{n[0]}", customer={"id": customer, "name": customer.title()}, kind=kind,
                         content=content)
    ((item, _),) = messages.store_inbound([frame], at)
    messages.handle_customer_messages(customer, [item], at)


def send(customer: str, text: str, at: float, status: str = "pending", msg_type: int = 0) -> str:
    key = f"s-{customer}-{at}"
    with atomic():
        outbox.add(key, "im_send", f"customer:{customer}", {"send_id": key, "customer_id": customer,
                                                            "msg_type": msg_type, "content": text}, at, status)
    return key


def job(job_id: str, customer: str, state: str, at: float, result: str | None = None, **data: object) -> None:
    ImageJob.create(job_id=job_id, customer_id=customer, state=state, created_at=at, updated_at=at,
                    result_path=result, data=json.dumps({"job_id": job_id, "customer_id": customer, **data}))


def task(task_id: str, customer: str, at: float) -> None:
    body = TaskIn.model_validate({"task_id": task_id, "type": "send_file_after_reply",
                                  "customer": {"id": customer, "name": "小明"},
                                  "trigger": {"type": "customer_reply", "keyword": "好的"},
                                  "action": {"type": "send_message", "message": "hi"}})
    (result,) = tasks.receive_many([body], at, "Asia/Shanghai", False)
    assert not isinstance(result, Exception)


def test_conversations_show_the_last_message_each_way_newest_conversation_first(db_url: str) -> None:
    say("amy", "text", "帮我变清晰", T0)
    say("amy", "image", "http://img/1.png", T0 + 1)
    send("amy", "这张帮您做高清修复,18元", T0 + 2, "delivered")
    say("bob", "payment", {"order_id": "o1", "amount": 18}, T0 + 3)
    send("bob", "收到", T0 + 4)

    amy, bob = sorted(console.conversations(T0 + 5), key=lambda c: c["customer_id"])
    assert amy["last_in"]["text"] == "[图片 image]" and amy["last_in"]["kind"] == "image"
    say("cat", "staff", "您好,我是店长", T0 + 5)
    assert console.conversations(T0 + 5)[0]["last_in"]["text"] == "[店员 staff] 您好,我是店长"
    assert amy["last_out"] == {"text": "这张帮您做高清修复,18元", "status": "delivered", "at": T0 + 2}
    assert bob["last_in"]["text"] == "[付款 payment] 18元" and bob["last_out"]["status"] == "pending"
    assert [c["customer_id"] for c in console.conversations(T0 + 5)] == ["cat", "bob", "amy"]
    assert [c["customer_id"] for c in console.conversations(T0 + 5, limit=1)] == ["cat"]


def test_a_takeover_shows_until_it_runs_out(db_url: str) -> None:
    say("amy", "text", "在吗", T0)
    takeover.set_pause("amy", T0 + 600, "operator", "客户投诉", T0)
    (conv,) = console.conversations(T0 + 1)
    assert conv["paused"] and conv["paused_by"] == "operator" and conv["paused_until"] == T0 + 600
    assert console.takeovers(T0 + 1) == [{"customer_id": "amy", "name": "Amy", "paused_until": T0 + 600,
                                          "by": "operator", "reason": "客户投诉"}]
    assert console.takeovers(T0 + 601) == [] and not console.conversations(T0 + 601)[0]["paused"]


def test_the_fingerprint_moves_with_every_change_and_only_then(db_url: str) -> None:
    say("amy", "text", "在吗", T0)
    marks = [(console.changes(), console.slow_changes(T0 + 1))]

    def moved(now: float = T0 + 1) -> bool:
        marks.append((console.changes(), console.slow_changes(now)))
        return marks[-1] != marks[-2]

    def fast_moved() -> bool:
        return marks[-1][0] != marks[-2][0]

    assert not moved()
    say("amy", "text", "有人吗", T0 + 2)
    assert moved() and fast_moved()
    key = send("amy", "在的", T0 + 3)
    assert moved() and fast_moved()
    outbox.mark(key, "delivered", T0 + 4)
    assert moved() and fast_moved()
    takeover.set_pause("amy", T0 + 100, "operator", "", T0 + 5)  # the Tianwang-side API: no audit, seen by a scan
    assert moved()
    assert moved(T0 + 101)  # the takeover ran out: nobody wrote anything, yet the picture changed
    takeover.set_pause("amy", None, "", "", T0 + 102)
    assert not moved(T0 + 103)  # resuming a pause that had already run out changes nothing shown
    task("T1", "amy", T0 + 6)
    assert moved(T0 + 103) and fast_moved()
    tasks.cancel("T1", "不要了", T0 + 7, "Asia/Shanghai", False)
    assert moved(T0 + 103) and fast_moved()
    job("J1", "amy", "pending", T0 + 7)
    assert moved(T0 + 103) and fast_moved()
    with atomic():
        handoffs.add("handoff:J1", "amy", "J1", "customer_asked", "要人工", "", T0 + 8)
    assert moved(T0 + 103) and fast_moved()
    handoffs.postpone("handoff:J1", T0 + 9, 5, "unreachable")
    assert moved(T0 + 103) and fast_moved()
    operators.audit("local", "pause", "conversation:amy", {"paused": False}, {"paused": True}, "127.0.0.1", T0 + 9)
    assert moved(T0 + 103) and fast_moved()
    assert not moved(T0 + 104)


def test_jobs_tasks_queue_hand_offs_and_failures(db_url: str) -> None:
    job("J1", "amy", "awaiting_confirm", T0, result="/data/results/J1.png", operation="enhance", price=18,
        paid=True, risk="accept")
    job("J2", "bob", "failed", T0 + 1, operation="remove_bg", handoff_reason="渲染一直失败")
    job("J3", "cat", "paid", T0 + 2, operation="enhance", price=20, paid=True)
    with atomic():
        outbox.add("J3-r1", "render", "J3", {"job_id": "J3", "customer_id": "cat", "render_id": "J3-r1",
                                            "operation": "enhance"}, T0 + 2)
        outbox.add("analyze:J4", "analyze", "J4", {"job_id": "J4", "customer_id": "dan", "url": "u"}, T0 + 3)
        handoffs.add("handoff:J2", "bob", "J2", "render_failed", "渲染一直失败", "", T0 + 1)
    jobs.start_attempt("J3-r1", 1, "local", 123, T0 + 4)
    handoffs.postpone("handoff:J2", T0 + 5, 5, "dispatch API unreachable")
    failed = send("amy", "hi", T0 + 6)
    outbox.mark(failed, "failed", T0 + 7, "bridge said no")
    task("T1", "amy", T0 + 8)

    snap = console.snapshot(T0 + 10)
    by_id = {j["job_id"]: j for j in snap["jobs"]}
    assert [j["job_id"] for j in snap["jobs"]] == ["J3", "J2", "J1"]
    assert by_id["J1"]["has_result"] and by_id["J1"]["price"] == 18 and by_id["J1"]["paid"]
    assert by_id["J2"]["handoff"] == {"rule": "render_failed", "status": "new", "designer": None,
                                      "reason": "渲染一直失败"}
    assert [(r["key"], r["in_flight"], r["attempt"]) for r in snap["render_queue"]] == [("J3-r1", True, 1),
                                                                                       ("analyze:J4", False, None)]
    assert snap["queue_counts"] == {"render": 1, "analyze": 1}
    assert [(t["task_id"], t["status"], t["finished"]) for t in snap["tasks"]] == [("T1", "pending", False)]
    assert snap["task_counts"] == {"pending": 1}
    assert [h["key"] for h in snap["handoffs"]] == ["handoff:J2"]
    sources = {f["source"]: f for f in snap["failures"]}
    assert sources["outbox:im_send"]["message"] == "bridge said no"
    assert sources["job"]["ref"] == "J2" and "渲染一直失败" in sources["job"]["message"]
    assert sources["handoff"]["message"] == "dispatch API unreachable"
    assert snap["audit"] == []


def test_conversation_detail_interleaves_both_sides_with_held_sends(db_url: str) -> None:
    say("amy", "text", "帮我抠图", T0)
    send("amy", "好的,20元", T0 + 1, "delivered")
    say("amy", "staff", "稍等,我看一下", T0 + 2)
    takeover.set_pause("amy", T0 + 600, "staff", "店员发了消息", T0 + 2)
    say("amy", "text", "还在吗", T0 + 3)
    send("amy", "在的", T0 + 4, "suppressed")
    send("amy", "http://shop/files/x/r.png", T0 + 5, "delivered", msg_type=1)
    operator_actions.staff_message("amy", "我是店长", "console:amy:1", "xiaowang", "127.0.0.1", 600, T0 + 6)
    task("T1", "amy", T0 + 7)
    with atomic():
        outbox.add("T1:send", "im_send", "T1", {"customer_id": "amy", "msg_type": 0, "content": "您的文件"}, T0 + 8)
    detail = console.conversation_detail("amy", T0 + 9)
    assert detail is not None
    assert [(e["dir"], e["text"], e.get("status"), e.get("by")) for e in detail["timeline"]] == [
        ("in", "帮我抠图", None, None), ("out", "好的,20元", "delivered", "ai"),
        ("out", "稍等,我看一下", "delivered", "staff"), ("in", "还在吗", None, None),
        ("out", "在的", "suppressed", "ai"), ("out", "[图片 image]", "delivered", "ai"),
        ("out", "我是店长", "pending", "staff"), ("out", "您的文件", "pending", "task")]
    assert [e["by_name"] for e in detail["timeline"][-2:]] == ["xiaowang", "T1"]
    assert detail["takeover"]["paused"] and detail["takeover"]["paused_by"] == "operator:xiaowang"
    assert console.conversation_detail("nobody", T0) is None


def test_a_thumbnail_is_made_from_the_results_preview_when_there_is_one(db_url: str, tmp_path: Path) -> None:
    job("J1", "amy", "awaiting_confirm", T0, result=str(tmp_path / "r.psd"), renders=1)
    ImageJob.update(source_path=str(tmp_path / "src.jpg")).where(ImageJob.job_id == "J1").execute()
    jobs.start_attempt("J1-r1", 1, "local", 1, T0)
    jobs.finish_attempt("J1-r1", 1, T0 + 1, path=str(tmp_path / "r.psd"), preview_path=str(tmp_path / "r.png"))
    assert console.image_path("J1", "result") == str(tmp_path / "r.png")
    assert console.image_path("J1", "source") == str(tmp_path / "src.jpg")
    job("J2", "bob", "pending", T0)
    assert console.image_path("J2", "result") is None and console.image_path("nope", "result") is None


def test_every_list_is_bounded(db_url: str) -> None:
    for i in range(40):
        say(f"c{i:02}", "text", "在吗", T0 + i)
        job(f"J{i:02}", f"c{i:02}", "pending", T0 + i)
        task(f"T{i:02}", f"c{i:02}", T0 + i)
        send(f"c{i:02}", "x", T0 + i, "failed")
    with atomic():
        Conversation.update(paused_until=T0 + 1000, paused_by="staff").execute()
    snap = console.snapshot(T0 + 50, limit=10)
    for name in ("conversations", "jobs", "tasks", "takeovers", "failures"):
        assert len(snap[name]) == 10, name
