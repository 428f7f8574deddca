"""The AI's manners with people, through the launcher: human takeover, echoes, operator pause, bursts (SPEC §2).

Staff writing to a customer silence the AI for that customer for TAKEOVER_MINUTES, across a restart;
an echo of the system's own send relayed back as `staff` never does; operators pause and resume by API;
three messages within DEBOUNCE_S get one answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_image_job import send_photo, texts, wait_text
from tests.harness import Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TAKEOVER_S = 24.0
DEBOUNCE_S = 1.0


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("manners") / "shop", {
        "DEBOUNCE_S": str(DEBOUNCE_S), "TAKEOVER_MINUTES": str(TAKEOVER_S / 60),
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def conversation(shop: Launcher, customer: str) -> dict[str, Any]:
    status, body = http("GET", f"{shop.api}/api/conversation/{customer}")
    assert status == 200, body
    return body["data"]


def quiet_for(shop: Launcher, customer: str, seconds: float) -> None:
    """Nothing new reaches the customer for this long."""
    before = len(shop.deliveries(customer))
    time.sleep(seconds)
    assert len(shop.deliveries(customer)) == before, texts(shop, customer)[before:]


def test_staff_writing_silences_the_ai_for_the_set_time_across_a_restart(shop: Launcher) -> None:
    send_photo(shop, "dan", photo_png(seed=61))
    quote = wait_text(shop, "dan", "元")[0]

    # The bridge relays our own quote back as a staff message: an echo, not a person.
    shop.customer_says("dan", "staff", quote)
    time.sleep(1.5)
    assert conversation(shop, "dan")["takeover"]["paused"] is False

    shop.customer_says("dan", "staff", "您好,我是店长,这单我来跟您对接")
    taken = wait_for(lambda: (c := conversation(shop, "dan"))["takeover"]["paused"] and c, 10, 0.1, "paused")
    assert taken["takeover"]["paused_by"] == "staff"
    paused_until = taken["takeover"]["paused_until"]
    assert paused_until - time.time() > TAKEOVER_S - 5

    shop.customer_says("dan", "text", "还是帮我抠图吧")
    quiet_for(shop, "dan", DEBOUNCE_S + 2)
    held = [s for s in conversation(shop, "dan")["sends"] if s["status"] == "suppressed"]
    assert held and "抠图" in held[-1]["content"]  # operators see what the AI would have said
    assert conversation(shop, "dan")["jobs"][0]["operation"] == "remove_bg"  # what she asked is still recorded

    shop.stop()
    shop.start()
    assert conversation(shop, "dan")["takeover"]["paused"] is True
    shop.customer_says("dan", "text", "那改成老照片修复")
    quiet_for(shop, "dan", DEBOUNCE_S + 2)

    wait_for(lambda: time.time() > paused_until + 0.5, TAKEOVER_S + 5, 0.2, "the takeover to run out")
    assert conversation(shop, "dan")["takeover"]["paused"] is False
    shop.customer_says("dan", "text", "算了还是变清晰吧")
    wait_text(shop, "dan", "高清修复", timeout=20)


def test_operators_pause_and_resume_by_api(shop: Launcher) -> None:
    send_photo(shop, "eve", photo_png(seed=62))
    wait_text(shop, "eve", "元")
    status, body = http("POST", f"{shop.api}/api/conversation/eve/pause", {"minutes": 10, "reason": "客户投诉"})
    assert status == 200 and body["data"]["paused"] is True and body["data"]["paused_by"] == "operator", body
    shop.customer_says("eve", "text", "帮我抠图")
    quiet_for(shop, "eve", DEBOUNCE_S + 2)
    status, body = http("POST", f"{shop.api}/api/conversation/eve/resume")
    assert status == 200 and body["data"]["paused"] is False, body
    shop.customer_says("eve", "text", "改成分层的吧")
    wait_text(shop, "eve", "分层PSD", timeout=20)


def test_pause_answers_clearly_on_bad_input(shop: Launcher) -> None:
    status, body = http("POST", f"{shop.api}/api/conversation/nobody-here/pause")
    assert status == 404 and body["code"] == 404 and "nobody-here" in body["message"]
    status, body = http("POST", f"{shop.api}/api/conversation/nobody-here/resume")
    assert status == 404
    send_photo(shop, "fay", photo_png(seed=63))
    wait_text(shop, "fay", "元")
    for bad in ({"minutes": -1}, {"minutes": "soon"}, {"minutes": 10, "who": "x"}):
        status, body = http("POST", f"{shop.api}/api/conversation/fay/pause", bad)
        assert status == 400 and body["code"] == 400 and body["message"], body
    assert conversation(shop, "fay")["takeover"]["paused"] is False  # nothing changed by a refused request


def test_three_messages_within_the_window_get_one_answer(shop: Launcher) -> None:
    shop.customer_says("gus", "text", "在吗")
    send_photo(shop, "gus", photo_png(seed=64))
    shop.customer_says("gus", "text", "帮我把这张抠图,背景要白色")
    (quote,) = wait_text(shop, "gus", "元")
    assert "抠图去背景" in quote
    quiet_for(shop, "gus", DEBOUNCE_S + 1.5)
    assert texts(shop, "gus") == [quote]


def test_tianwang_tasks_still_run_while_the_ai_is_paused(shop: Launcher) -> None:
    send_photo(shop, "hal", photo_png(seed=65))
    wait_text(shop, "hal", "元")
    http("POST", f"{shop.api}/api/conversation/hal/pause", {"minutes": 10})
    status, body = shop.post_task(task_body("T_PAUSED", "hal", {"type": "customer_keyword", "keywords": ["发货"]},
                                            {"type": "send_message", "message": "您的订单今天发货"}))
    assert status == 200, body
    shop.customer_says("hal", "text", "什么时候发货?")
    wait_text(shop, "hal", "您的订单今天发货", timeout=20)  # the shop's own instruction, not the AI
    shop.wait_status("T_PAUSED", "completed")
