"""Hand-offs to designers through the launcher (SPEC §3 workflow 3, §4), against the dispatch stand-in.

Every path SPEC sends to a person ends the same way: one dispatch task, assigned (the queue's suggestion
or the online designer with the fewest open tasks), one staff message naming the customer and the
reason, the customer told "好的,已帮您安排设计师处理,请稍候", the job `transferred`. With nobody online
the task waits, the customer is told so once, and it is assigned when a designer comes online.
A designer completing the task completes the job, done by staff.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from standins.dispatch_api import DispatchStandin
from standins.fake_gemini import ConfigRequest, FakeGemini, FaultSpec, RiskAnswer
from standins.webhook_recorder import WebhookRecorder
from tests.e2e.test_image_job import images, jobs_of, pay, send_photo, texts, wait_text
from tests.harness import Launcher, RobotThread, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HANDED_OFF = "好的,已帮您安排设计师处理,请稍候"
ASK_EMAIL = "好了,你看一下效果,没问题把邮箱发我"


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def designers() -> Iterator[DispatchStandin]:
    with DispatchStandin(api_key="dispatch-secret") as standin:
        yield standin


@pytest.fixture(scope="module")
def robot() -> Iterator[WebhookRecorder]:
    with RobotThread(per_minute=20) as rec:
        yield rec


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini, designers: DispatchStandin,
         robot: WebhookRecorder) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("handoff") / "shop", {
        "DEBOUNCE_S": "0.5", "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url,
        "GEMINI_TIMEOUT_S": "1.5", "RENDER_MAX_ATTEMPTS": "2", "WECHAT_WEBHOOK": robot.url(),
        "TUHUI_DISPATCH_URL": designers.base_url, "TUHUI_DISPATCH_KEY": "dispatch-secret",
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def tasks_of(designers: DispatchStandin, customer: str) -> list[dict[str, Any]]:
    return [t for t in designers.tasks() if f"({customer})" in t["description"]]


def staff_notes(robot: WebhookRecorder, title: str, customer: str) -> int:
    """How many staff notes with this title about this customer the robot carried (merged messages included)."""
    everything = "\n\n".join(m["content"] for m in robot.accepted())
    return everything.count(f"**{title}**\n> 客户: {customer}\n")


def assert_handed_off(shop: Launcher, designers: DispatchStandin, robot: WebhookRecorder, customer: str,
                      reason: str, rule: str | None) -> dict[str, Any]:
    """The path ended as SPEC says: one task assigned, one staff note, the customer told once, the job transferred."""
    wait_text(shop, customer, HANDED_OFF, timeout=60)
    (task,) = tasks_of(designers, customer)
    assert task["status"] == "assigned" and task["assigned_to"] in ("橘子", "婷婷")
    assert task["task_name"] == f"图片处理-{customer[-4:]}" and reason in task["description"]
    wait_for(lambda: staff_notes(robot, "新派单", customer) == 1, 20, 0.1, f"staff told of {customer}'s hand-off")
    note = next(m["content"] for m in robot.accepted() if f"> 客户: {customer}\n" in m["content"])
    assert reason in note and task["assigned_to"] in note
    assert texts(shop, customer).count(HANDED_OFF) == 1
    if rule is None:
        return task
    job = wait_for(lambda: (j := jobs_of(shop, customer)[0])["state"] == "transferred" and j, 10, 0.1, "transferred")
    assert job["handoff"]["rule"] == rule and job["handoff"]["status"] == "assigned"
    assert job["handoff"]["tasks"][0]["task_id"] == task["task_id"]
    return task


def quoted_and_paid(shop: Launcher, customer: str, seed: int) -> None:
    send_photo(shop, customer, photo_png(seed=seed))
    wait_text(shop, customer, "元")
    pay(shop, customer)


def test_a_render_that_keeps_failing_goes_to_a_designer_who_completes_it(
        shop: Launcher, gemini: FakeGemini, designers: DispatchStandin, robot: WebhookRecorder) -> None:
    gemini.add_faults([FaultSpec(kind="500") for _ in range(4)], model="image")
    quoted_and_paid(shop, "ho_fail", 71)
    task = assert_handed_off(shop, designers, robot, "ho_fail", "自动处理失败", "render_failed")
    assert images(shop, "ho_fail") == []

    designers.complete(task["task_id"], "手工修好发给客户了")
    job = wait_for(lambda: (j := jobs_of(shop, "ho_fail")[0])["state"] == "completed" and j, 30, 0.2, "completed")
    assert job["done_by"] == "staff" and job["handoff"]["status"] == "done"
    assert texts(shop, "ho_fail").count(HANDED_OFF) == 1


def test_a_safety_block_goes_to_a_designer(shop: Launcher, gemini: FakeGemini, designers: DispatchStandin,
                                           robot: WebhookRecorder) -> None:
    gemini.add_faults([FaultSpec(kind="image_safety")], model="image")
    quoted_and_paid(shop, "ho_safe", 72)
    assert_handed_off(shop, designers, robot, "ho_safe", "safety", "safety_blocked")


def test_a_result_failing_the_quality_check_is_still_sent_and_staff_asked_to_check_it(
        shop: Launcher, gemini: FakeGemini, designers: DispatchStandin, robot: WebhookRecorder) -> None:
    gemini.configure(ConfigRequest(qa_score=30))
    try:
        quoted_and_paid(shop, "ho_qa", 73)
        wait_text(shop, "ho_qa", ASK_EMAIL, timeout=60)  # SPEC §2: the best attempt goes out
    finally:
        gemini.configure(ConfigRequest(qa_score=85))
    (preview,) = images(shop, "ho_qa")
    assert "/files/" in preview
    wait_for(lambda: staff_notes(robot, "质检没过,结果已发客户,请检查", "ho_qa") == 1, 20, 0.1, "staff asked to check")
    job = jobs_of(shop, "ho_qa")[0]
    assert job["state"] == "awaiting_confirm" and job["handoff"] is None and tasks_of(designers, "ho_qa") == []
    assert [a["score"] for a in job["renders"][0]["attempts"]] == [30, 30]  # RENDER_MAX_ATTEMPTS, then the best


def test_a_photo_the_model_judges_doubtful_goes_to_a_designer_without_a_quote(
        shop: Launcher, gemini: FakeGemini, designers: DispatchStandin, robot: WebhookRecorder) -> None:
    gemini.configure(ConfigRequest(risk=RiskAnswer(verdict="human", reason="像是合同扫描件")))
    try:
        send_photo(shop, "ho_risk", photo_png(seed=75))
        assert_handed_off(shop, designers, robot, "ho_risk", "像是合同扫描件", "risk_human")
    finally:
        gemini.configure(ConfigRequest(risk=RiskAnswer()))
    job = jobs_of(shop, "ho_risk")[0]
    assert job["risk"]["verdict"] == "human" and job["analysis"]["risk_source"] == "gemini"
    assert not any("元" in t for t in texts(shop, "ho_risk"))


def test_a_payment_without_a_photo_goes_to_a_designer(shop: Launcher, designers: DispatchStandin,
                                                      robot: WebhookRecorder) -> None:
    pay(shop, "ho_nopic", 19)
    assert_handed_off(shop, designers, robot, "ho_nopic", "没有找到待付款的图片", None)


def test_a_customer_asking_for_a_person_gets_one(shop: Launcher, designers: DispatchStandin,
                                                 robot: WebhookRecorder) -> None:
    send_photo(shop, "ho_ask", photo_png(seed=74))
    wait_text(shop, "ho_ask", "元")
    shop.customer_says("ho_ask", "text", "能转人工吗,我想问问细节")
    assert_handed_off(shop, designers, robot, "ho_ask", "客户要求人工", "customer_asked")
    shop.customer_says("ho_ask", "text", "人工客服在吗")  # asked again: no second task
    wait_text(shop, "ho_ask", "已经安排设计师了")
    assert len(tasks_of(designers, "ho_ask")) == 1


def test_with_nobody_online_the_task_waits_and_is_assigned_when_a_designer_comes_online(
        shop: Launcher, designers: DispatchStandin, robot: WebhookRecorder) -> None:
    designers.set_designers(offline=["橘子", "婷婷"])
    try:
        shop.customer_says("ho_wait", "text", "真人客服")
        wait_text(shop, "ho_wait", "排上队")
        (task,) = tasks_of(designers, "ho_wait")
        assert task["status"] == "pending"
        wait_for(lambda: staff_notes(robot, "派单排队中(没有设计师在线)", "ho_wait") == 1, 20, 0.1, "staff told")
    finally:
        designers.set_designers(online=["婷婷"])
    wait_for(lambda: tasks_of(designers, "ho_wait")[0]["status"] == "assigned", 20, 0.2, "assigned once online")
    assert tasks_of(designers, "ho_wait")[0]["assigned_to"] == "婷婷"
    wait_for(lambda: staff_notes(robot, "新派单", "ho_wait") == 1, 20, 0.1, "staff told of the assignment")
    assert texts(shop, "ho_wait") == [texts(shop, "ho_wait")[0]] and "排上队" in texts(shop, "ho_wait")[0]
    designers.set_designers(online=["橘子"])
