"""Tianwang tasks end to end: the launcher as a user runs it, the IM bridge simulator, real callbacks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.harness import CallbackServer, Launcher, http, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SECRET = "tianwang-test-secret"


@pytest.fixture(scope="module")
def callbacks() -> Iterator[CallbackServer]:
    with CallbackServer(secret=SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, callbacks: CallbackServer) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("shop"), {
        "TIANWANG_CALLBACK_URL": callbacks.url, "TIANWANG_CALLBACK_SECRET": SECRET,
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()
        assert not launcher.leftovers()


def test_reply_then_file_is_sent_and_callbacks_arrive_in_order(shop: Launcher, callbacks: CallbackServer) -> None:
    body = {
        "task_id": "TASK_20260226_001", "type": "send_file_after_reply",
        "customer": {"name": "小明", "id": "customer_123"},
        "trigger": {"type": "customer_reply", "keyword": "好的"},
        "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"},
        "priority": "normal", "timeout_hours": 24, "created_by": "设计师 lz",
    }
    status, answer = shop.post_task(body)
    assert status == 200 and answer["code"] == 200 and answer["message"] == "任务接收成功"
    assert answer["data"]["status"] == "pending"
    shop.wait_status("TASK_20260226_001", "waiting")
    shop.customer_says("customer_123", "text", "好的,发我吧", name="小明")
    task = shop.wait_status("TASK_20260226_001", "completed")
    sent = shop.deliveries("customer_123")
    assert [(d["msg_type"], d["content"]) for d in sent] == [(0, "这是您要的文件"), (2, "https://xxx.com/file.zip")]
    assert [h["to"] for h in task["history"]] == ["pending", "waiting", "running", "completed"]
    wait_for(lambda: callbacks.statuses("TASK_20260226_001") == ["pending", "waiting", "running", "completed"],
             10, what="four callbacks in order")
    status, conv = http("GET", f"{shop.api}/api/conversation/customer_123")
    assert status == 200 and conv["data"]["name"] == "小明" and conv["data"]["messages"] == 1
    assert [m["content"] for m in conv["data"]["history"]] == ["好的,发我吧"]
    assert http("GET", f"{shop.api}/api/conversation/nobody")[0] == 404
    mine = [r for r in callbacks.received if r["body"]["task_id"] == "TASK_20260226_001"]
    assert all(r["signature_valid"] for r in mine)
    assert set(mine[0]["body"]) == {"task_id", "status", "error", "timestamp"}


def test_payment_notice_sends_the_tutorial(shop: Launcher) -> None:
    shop.post_task(task_body("T_PAY", "cust_pay", {"type": "customer_payment"},
                             {"type": "send_message", "message": "付款成功!这是使用教程:https://shop.example/tutorial"}))
    shop.wait_status("T_PAY", "waiting")
    shop.customer_says("cust_pay", "text", "我付款了")  # a text is not a payment
    time.sleep(0.5)
    assert shop.task("T_PAY")["status"] == "waiting"
    shop.customer_says("cust_pay", "payment", {"order_id": "O-1", "amount": 15})
    shop.wait_status("T_PAY", "completed")
    assert [d["content"] for d in shop.deliveries("cust_pay")] == ["付款成功!这是使用教程:https://shop.example/tutorial"]


def test_time_reach_sends_the_greeting_at_that_time(shop: Launcher) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    at = (datetime.now(tz) + timedelta(seconds=3)).replace(microsecond=0)
    shop.post_task(task_body("T_TIME", "cust_time", {"type": "time_reach", "time": at.strftime("%Y-%m-%d %H:%M:%S")},
                             {"type": "send_message", "message": "早上好,您的图片已经在处理了"}))
    shop.wait_status("T_TIME", "waiting")
    task = shop.wait_status("T_TIME", "completed", timeout=15)
    delivered = shop.deliveries("cust_time")
    assert [d["content"] for d in delivered] == ["早上好,您的图片已经在处理了"]
    assert datetime.fromisoformat(task["triggered_at"]) >= at


def test_keyword_order_custom_event_and_link(shop: Launcher) -> None:
    shop.post_task(task_body("T_KW", "cust_kw", {"type": "customer_keyword", "keywords": ["发票", "开票"]}))
    shop.post_task(task_body("T_ORDER", "cust_kw", {"type": "customer_order"},
                             {"type": "send_link", "url": "https://shop.example/o", "message": "订单详情"}))
    shop.post_task(task_body("T_EVENT", "cust_ev", {"type": "custom_event", "event": "design_done"}))
    for tid in ("T_KW", "T_ORDER", "T_EVENT"):
        shop.wait_status(tid, "waiting")
    shop.customer_says("cust_kw", "text", "可以帮我开票吗")
    shop.wait_status("T_KW", "completed")
    assert shop.task("T_ORDER")["status"] == "waiting"
    shop.customer_says("cust_kw", "order", {"order_id": "O-9", "amount": 20})
    shop.wait_status("T_ORDER", "completed")
    assert [(d["msg_type"], d["content"]) for d in shop.deliveries("cust_kw")][-2:] == [
        (0, "订单详情"), (3, "https://shop.example/o")]
    status, answer = http("POST", f"{shop.api}/api/event", {"event": "design_done", "customer_id": "someone_else"})
    assert status == 200
    time.sleep(0.5)
    assert shop.task("T_EVENT")["status"] == "waiting"
    http("POST", f"{shop.api}/api/event", {"event": "design_done", "customer_id": "cust_ev"})
    shop.wait_status("T_EVENT", "completed")


def test_waiting_task_times_out(shop: Launcher, callbacks: CallbackServer) -> None:
    shop.post_task(task_body("T_TIMEOUT", "cust_to", {"type": "customer_reply", "keyword": "好的"},
                             timeout_hours=0.0005))
    task = shop.wait_status("T_TIMEOUT", "timeout", timeout=15)
    assert "no trigger within" in task["error"]
    wait_for(lambda: callbacks.statuses("T_TIMEOUT")[-1:] == ["timeout"], 10, what="timeout callback")
    shop.customer_says("cust_to", "text", "好的")
    time.sleep(0.5)
    assert shop.deliveries("cust_to") == []


def test_cancel(shop: Launcher) -> None:
    shop.post_task(task_body("T_CANCEL", "cust_c", {"type": "customer_reply", "keyword": "好的"}))
    shop.wait_status("T_CANCEL", "waiting")
    status, answer = http("POST", f"{shop.api}/api/task/cancel", {"task_id": "T_CANCEL", "reason": "客户取消"})
    assert status == 200 and answer["data"]["status"] == "cancelled"
    status, answer = http("POST", f"{shop.api}/api/task/cancel", {"task_id": "T_CANCEL", "reason": "again"})
    assert status == 409 and answer["code"] == 409 and "already finished" in answer["message"]
    status, answer = http("POST", f"{shop.api}/api/task/cancel", {"task_id": "NOPE", "reason": ""})
    assert status == 404 and "NOPE" in answer["message"]
    shop.customer_says("cust_c", "text", "好的")
    time.sleep(0.5)
    assert shop.deliveries("cust_c") == []
    assert shop.task("T_CANCEL")["history"][-1]["reason"] == "客户取消"


def test_receive_is_idempotent(shop: Launcher) -> None:
    body = task_body("T_IDEM", "cust_i", {"type": "customer_reply", "keyword": "好的"})
    first = shop.post_task(body)
    again = shop.post_task(body)
    assert first == again and first[0] == 200
    status, answer = shop.post_task({**body, "priority": "urgent"})
    assert status == 409 and answer["code"] == 409 and "different body" in answer["message"]
    assert shop.task("T_IDEM")["priority"] == "normal"


def test_list_and_stats(shop: Launcher) -> None:
    for i in range(3):
        shop.post_task(task_body(f"T_LIST_{i}", "cust_list", {"type": "customer_payment"}, priority="high"))
    status, answer = http("GET", f"{shop.api}/api/task/list?customer=cust_list&page=1&page_size=2")
    assert status == 200
    data = answer["data"]
    assert data["total"] == 3 and [t["task_id"] for t in data["items"]] == ["T_LIST_2", "T_LIST_1"]
    status, answer = http("GET", f"{shop.api}/api/task/list?customer=cust_list&page=2&page_size=2")
    assert [t["task_id"] for t in answer["data"]["items"]] == ["T_LIST_0"]
    status, answer = http("GET", f"{shop.api}/api/task/list?status=bogus")
    assert status == 400 and "status must be one of" in answer["message"]
    status, answer = http("GET", f"{shop.api}/api/task/stats")
    stats = answer["data"]
    assert stats["by_priority"]["high"] >= 3 and stats["by_trigger"]["customer_payment"] >= 3
    assert stats["total"] == sum(stats["by_status"].values())


def test_priority_orders_execution(shop: Launcher) -> None:
    for tid, prio in [("T_P_NORMAL", "normal"), ("T_P_HIGH", "high"), ("T_P_URGENT", "urgent")]:
        shop.post_task(task_body(tid, "cust_prio", {"type": "customer_reply", "keyword": "好"},
                                 {"type": "send_message", "message": prio}, priority=prio))
        shop.wait_status(tid, "waiting")
    shop.customer_says("cust_prio", "text", "好")
    for tid in ("T_P_NORMAL", "T_P_HIGH", "T_P_URGENT"):
        shop.wait_status(tid, "completed")
    assert [d["content"] for d in shop.deliveries("cust_prio")] == ["urgent", "high", "normal"]


def test_failed_send_is_retried_then_fails_after_three_retries(shop: Launcher, callbacks: CallbackServer) -> None:
    http("POST", f"{shop.sim}/fail_sends", {"count": 2, "error": "customer offline"})
    shop.post_task(task_body("T_RETRY", "cust_retry", {"type": "customer_payment"}))
    shop.wait_status("T_RETRY", "waiting")
    shop.customer_says("cust_retry", "payment", {"order_id": "O-2", "amount": 10})
    task = shop.wait_status("T_RETRY", "completed")
    assert task["retries"] == 2 and len(shop.deliveries("cust_retry")) == 1

    http("POST", f"{shop.sim}/fail_sends", {"count": 10, "error": "customer offline"})
    shop.post_task(task_body("T_GIVEUP", "cust_giveup", {"type": "customer_payment"}))
    shop.wait_status("T_GIVEUP", "waiting")
    shop.customer_says("cust_giveup", "payment", {"order_id": "O-3", "amount": 10})
    task = shop.wait_status("T_GIVEUP", "failed", timeout=20)
    http("POST", f"{shop.sim}/fail_sends", {"count": 0})
    assert task["retries"] == 3 and "customer offline" in task["error"]
    assert shop.deliveries("cust_giveup") == []
    wait_for(lambda: callbacks.statuses("T_GIVEUP")[-1:] == ["failed"], 10, what="failed callback")


def test_callbacks_are_retried_until_delivered(shop: Launcher, callbacks: CallbackServer) -> None:
    callbacks.fail_next = 3
    shop.post_task(task_body("T_CB_RETRY", "cust_cb", {"type": "customer_payment"}))
    wait_for(lambda: callbacks.statuses("T_CB_RETRY") == ["pending", "waiting"], 20, what="callbacks after 503s")
    assert callbacks.fail_next == 0
