"""Chaos on orders of several photos: SIGKILL a conversation between its photos and their quote, another while its
order renders, and the renderer pool mid-render (issue 15).

Four customers each send three photos in one burst, on the keyed path (the real SDK against the Gemini stand-in,
whose image calls take most of a second). Three pay their total, one pays a yuan short. Afterwards every paid photo
reached its customer once, numbered; the short order rendered nothing; no stored render was asked of Gemini again.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import replies
from standins.fake_gemini import FakeGemini, FaultSpec
from tests.chaos.test_image_chaos import Kill, _actor_pid, _kill, _rendering
from tests.e2e.test_image_job import images, jobs_of, pay, send_photo, texts, wait_text
from tests.harness import Launcher, http, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PAYING = ["oc_0", "oc_1", "oc_2"]
SHORT = "oc_3"


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        fake.add_faults([FaultSpec(kind="slow", delay_s=0.8) for _ in range(100)], model="image")
        yield fake


@pytest.fixture
def shop(tmp_path: Path, gemini: FakeGemini) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "order-chaos", {
        "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url, "DEBOUNCE_S": "1"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def _total(shop: Launcher, customer: str) -> int:
    (quote,) = wait_text(shop, customer, "一共", timeout=60)
    return int(re.search(r"一共(\d+)元", quote).group(1))  # type: ignore[union-attr]


def _settled(shop: Launcher, customer: str) -> bool:
    jobs = jobs_of(shop, customer)
    return len(jobs) == 3 and all(j["state"] == "awaiting_confirm" for j in jobs)


def test_kills_mid_order_deliver_every_paid_photo_once_and_render_nothing_unpaid(
        shop: Launcher, gemini: FakeGemini) -> None:
    kills: list[Kill] = []
    for n, customer in enumerate([*PAYING, SHORT]):
        for k in range(3):
            send_photo(shop, customer, photo_png(seed=60 + 3 * n + k, size=(300, 200)))
    # The first customer's conversation dies between their photos and the quote.
    pid = wait_for(lambda: _actor_pid(shop, "conversation:oc_0"), 10, 0.02, "oc_0's conversation")
    _kill(pid, kills, "conversation before the quote")

    totals = {c: _total(shop, c) for c in [*PAYING, SHORT]}
    pay(shop, SHORT, totals[SHORT] - 1)
    for customer in PAYING:
        pay(shop, customer, totals[customer])
    # A conversation and the renderer pool die while the orders render.
    wait_for(lambda: _rendering(shop), 30, 0.02, "renders under way")
    pid = wait_for(lambda: _actor_pid(shop, "conversation:oc_1"), 10, 0.02, "oc_1's conversation")
    _kill(pid, kills, "conversation while rendering")
    pool = _actor_pid(shop, "renderer")
    assert pool is not None
    _kill(pool, kills, "renderer pool")

    for customer in PAYING:
        wait_for(lambda c=customer: _settled(shop, c), 120, 0.2, f"{customer}'s three photos delivered")
        wait_text(shop, customer, replies.ASK_EMAIL, timeout=20)
    wait_text(shop, SHORT, "还差1元")
    time.sleep(1.5)  # room for a late duplicate to show up

    for customer in PAYING:
        said = texts(shop, customer)
        assert sum("一共" in t for t in said) == 1, said  # one quote for the order
        assert all(sum(replies.result_numbered(n) in t for t in said) == 1 for n in (1, 2, 3)), said
        assert len(images(shop, customer)) == 3 and sum(replies.ASK_EMAIL in t for t in said) == 1
    assert [j["state"] for j in jobs_of(shop, SHORT)] == ["pending"] * 3 and images(shop, SHORT) == []
    short_jobs = {j["job_id"] for j in jobs_of(shop, SHORT)}
    assert not [c for c in gemini.requests() if c["kind"] == "image" and c["render_key"].split("-")[0] in short_jobs]
    assert [s for s, n in Counter(d["send_id"] for d in shop.deliveries()).items() if n > 1] == []

    # No stored render asked of Gemini again: a render is repeated only when the pool kill cut its call off.
    stored = {f"{r}#{n}": at for r, n, at in shop.query(
        "SELECT render_id, attempt, finished_at FROM renderattempt WHERE status = 'done'")}
    calls: dict[str, list[float]] = {}
    for c in gemini.requests():
        if c["kind"] == "image" and c["outcome"] in ("ok", "slow"):
            calls.setdefault(c["render_key"], []).append(c["at"])
    for key, starts in calls.items():
        assert key in stored, f"{key} was rendered but never stored"
        assert [t for t in starts if t > stored[key]] == [], f"{key} asked again after its result was stored"
    assert len({key.split("#")[0] for key in calls}) == 9  # three paid orders of three photos
    status, body = http("GET", f"{shop.api}/api/conversation/{SHORT}")
    (order,) = body["data"]["image_orders"]
    assert (order["owed"], order["credit"]) == (totals[SHORT], totals[SHORT] - 1)
    print("\nkills:", [(k.what, f"{k.at - kills[0].at:.2f}s") for k in kills])
    shop.stop()
    assert shop.leftovers() == []
