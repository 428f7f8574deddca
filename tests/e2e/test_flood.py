"""A customer who floods the shop cannot starve the others (issue 8, locks: per-customer rate limit).

One customer sends 300 messages in a few seconds (photos and texts); another then sends one photo
and asks for it to be made sharper. The other customer's quote arrives as quickly as on a quiet
shop, while the flood is worked through at CUSTOMER_RATE_PER_MIN; every flood message is stored and
acknowledged, none lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.test_image_job import send_photo, texts, wait_text
from tests.harness import FileServer, Launcher, http, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FLOOD = 300
RATE_PER_MIN = 60
BURST = 10
QUOTE_WITHIN_S = 15.0  # a quote on a quiet shop takes 1-3 s here; the flood takes minutes to work through


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("flood") / "shop", {
        "DEBOUNCE_S": "0.5", "FETCH_ALLOW_HOSTS": f"127.0.0.1:{files.port}",
        "CUSTOMER_RATE_PER_MIN": str(RATE_PER_MIN), "CUSTOMER_BURST": str(BURST),
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def flood(shop: Launcher, url: str) -> float:
    """FLOOD messages from one customer, as fast as the bridge takes them; the seconds it took."""
    started = time.monotonic()

    def say(i: int) -> None:
        if i % 3 == 2:
            shop.customer_says("flooder", "text", f"在吗 {i} 帮我变清晰")
        else:
            shop.customer_says("flooder", "image", url)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(say, range(FLOOD)))
    return time.monotonic() - started


def handled(shop: Launcher, customer: str) -> int:
    return shop.query("SELECT count(*) FROM inboundmessage WHERE customer_id = ? AND handled", customer)[0][0]


def test_a_flood_from_one_customer_does_not_delay_another(shop: Launcher, files: FileServer) -> None:
    # The shop quiet: how long a quote takes here.
    began = time.monotonic()
    send_photo(shop, "calm_before", photo_png(seed=81))
    shop.customer_says("calm_before", "text", "帮我变清晰")
    wait_text(shop, "calm_before", "元", timeout=30)
    quiet_s = time.monotonic() - began

    url = files.put("flood.png", photo_png(seed=82))
    flood_s = flood(shop, url)
    wait_for(lambda: shop.sim_stats()["unacked"] == 0, 30, 0.1, "every flood message acknowledged")

    began = time.monotonic()
    send_photo(shop, "calm", photo_png(seed=83))
    shop.customer_says("calm", "text", "帮我变清晰")
    quote = wait_text(shop, "calm", "元", timeout=60)[0]
    calm_s = time.monotonic() - began

    stored = shop.query("SELECT count(*) FROM inboundmessage WHERE customer_id = 'flooder'")[0][0]
    taken = handled(shop, "flooder")
    print(f"\nflood: {FLOOD} messages sent in {flood_s:.1f}s; quiet-shop quote {quiet_s:.1f}s; "
          f"quote during the flood {calm_s:.1f}s; flood messages taken so far {taken}")
    assert "元" in quote and len([t for t in texts(shop, "calm") if "元" in t]) == 1
    assert calm_s < QUOTE_WITHIN_S, f"quote took {calm_s:.1f}s during the flood (quiet shop: {quiet_s:.1f}s)"
    assert stored == FLOOD  # every message stored (and acknowledged above): nothing lost

    # The flood is taken at the customer's rate, oldest first: a burst at once, then RATE_PER_MIN.
    elapsed = time.monotonic() - began + flood_s
    assert BURST <= taken <= BURST + RATE_PER_MIN * elapsed / 60 + 5, taken
    later = time.monotonic()
    wait_for(lambda: handled(shop, "flooder") >= taken + 5, 30, 0.2, "the flood to keep moving")
    rate = (handled(shop, "flooder") - taken) / (time.monotonic() - later) * 60
    print(f"flood taken at {rate:.0f}/min (limit {RATE_PER_MIN}/min)")
    first = shop.query("SELECT min(id) FROM inboundmessage WHERE customer_id = 'flooder' AND NOT handled")[0][0]
    last_taken = shop.query("SELECT max(id) FROM inboundmessage WHERE customer_id = 'flooder' AND handled")[0][0]
    assert last_taken < first  # in order: nothing overtakes an older message
    before = handled(shop, "flooder")
    status, conv = http("GET", f"{shop.api}/api/conversation/flooder")
    assert status == 200 and before <= conv["data"]["messages"] <= handled(shop, "flooder")  # recorded as taken
