"""GET /metrics through the launcher, as Prometheus would read it, before and after what a shop's day is made of.

A Tianwang task received and executed, a customer's paid image job rendered by Gemini (the stand-in,
with one server error on the way), a customer asking for a person, and an actor killed with SIGKILL:
each figure moves by what happened, whichever process saw it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from standins.fake_gemini import FakeGemini, FaultSpec
from tests.e2e.test_image_job import ASK_EMAIL, jobs_of, pay, send_photo, wait_text
from tests.harness import Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("metrics") / "shop", {
        "DEBOUNCE_S": "0.5", "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url,
        "GEMINI_TIMEOUT_S": "5", "PHRASE_REPLIES": "false",
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()
        assert not launcher.leftovers()


def scrape(shop: Launcher) -> Scrape:
    """Every sample /metrics serves, parsed by prometheus-client's own parser."""
    status, text = http("GET", f"{shop.api}/metrics")
    assert status == 200 and isinstance(text, str), text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(s: Scrape, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_the_figures_move_as_the_shop_works(shop: Launcher, gemini: FakeGemini) -> None:
    before = scrape(shop)
    assert value(before, "shop_database_up") == 1
    assert ("shop_actor_restarts_total", (("kind", "dispatch"),)) in before  # known before anything restarts

    # A Tianwang task: received, waiting on its trigger (a durable timeout timer), executed.
    status, _ = shop.post_task(task_body("T_METRICS", "m_tw", {"type": "customer_reply", "keyword": "好的"}))
    assert status == 200
    shop.wait_status("T_METRICS", "waiting")
    waiting = wait_for(lambda: (s := scrape(shop)) and value(s, "shop_tianwang_tasks", status="waiting") >= 1 and s,
                       10, 0.2, "the waiting task in /metrics")
    assert value(waiting, "shop_timers_pending", owner="scheduler") >= 1
    shop.customer_says("m_tw", "text", "好的")
    shop.wait_status("T_METRICS", "completed")

    # A paid image job; the first render request meets a server error and is retried.
    send_photo(shop, "m_img", photo_png(seed=41))
    shop.customer_says("m_img", "text", "帮我变清晰")
    wait_text(shop, "m_img", "元")
    gemini.add_faults([FaultSpec(kind="500")], model="image")
    pay(shop, "m_img")
    wait_text(shop, "m_img", ASK_EMAIL)
    assert jobs_of(shop, "m_img")[0]["state"] == "awaiting_confirm"

    # A customer asks for a person: one hand-off, one task in the dispatch system.
    shop.customer_says("m_ask", "text", "能转人工吗")
    wait_for(lambda: value(scrape(shop), "shop_dispatch_tasks_total") >= 1, 30, 0.3, "the dispatch task")

    # An actor dies; Root restarts it.
    old = shop.pid_of("dispatch")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: shop.pid_of("dispatch") != old, 20, 0.2, "dispatch restarted")

    after = wait_for(lambda: (s := scrape(shop)) and value(s, "shop_image_jobs", state="awaiting_confirm") == 1 and s,
                     10, 0.2, "the job in /metrics")
    report = {name: moved(before, after, name, **labels) for name, labels in [
        ("shop_tianwang_tasks", {"status": "completed"}),
        ("shop_customer_messages_total", {}),
        ("shop_render_attempts_total", {"source": "gemini", "outcome": "done"}),
        ("shop_gemini_calls_total", {"call": "render"}),
        ("shop_gemini_errors_total", {"call": "render", "kind": "server_error"}),
        ("shop_handoffs_total", {"rule": "customer_asked"}),
        ("shop_dispatch_tasks_total", {}),
        ("shop_actor_restarts_total", {"kind": "dispatch"}),
        ("shop_http_requests_total", {"method": "POST", "route": "/api/task/receive", "status": "200"}),
    ]}
    assert report == {
        "shop_tianwang_tasks": 1,
        "shop_customer_messages_total": 5,  # 好的; photo, words, payment; 能转人工吗
        "shop_render_attempts_total": 1,
        "shop_gemini_calls_total": 2,  # the 500, then the render
        "shop_gemini_errors_total": 1,
        "shop_handoffs_total": 1,
        "shop_dispatch_tasks_total": 1,
        "shop_actor_restarts_total": 1,
        "shop_http_requests_total": 1,
    }, report
    assert value(after, "shop_tianwang_tasks", status="waiting") == 0
    assert moved(before, after, "shop_gemini_calls_total", call="assess_risk") >= 1  # the photo was judged
    assert moved(before, after, "shop_http_requests_total", method="GET", route="/api/task/status/{task_id}",
                 status="200") >= 2
    assert all(value(after, "shop_outbox_pending", kind=k) >= 0 for k in ("im_send", "render", "mail"))


def test_metrics_is_behind_the_api_key_when_one_is_set(tmp_path: Any) -> None:
    launcher = Launcher(tmp_path / "keyed", {"TIANWANG_API_KEY": "metrics-key"})
    try:
        launcher.start()
        assert http("GET", f"{launcher.api}/metrics")[0] == 401
        status, text = http("GET", f"{launcher.api}/metrics", headers={"X-API-Key": "metrics-key"})
        assert status == 200 and "shop_tianwang_tasks" in text
    finally:
        launcher.stop()
