"""What each order delivers with a Gemini key: the same orders and checks as test_deliverables.py, through the real
google-genai SDK and the Gemini stand-in, which answers like the real API (its image is shaped to the aspectRatio
asked, at the model's own resolution, with no alpha) — and what it costs in image-model calls.
"""

from __future__ import annotations

import pytest

from standins.fake_gemini import FakeGemini
from tests.e2e.test_deliverables import assert_every_order, orders, place_all, start_shop
from tests.e2e.test_metrics import scrape, value
from tests.harness import SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# What only a model adds spends one call; a cut-out (U²-Net) and a resize (arithmetic) spend none.
CALLS = {"enhance": 1, "resize": 0, "remove_bg": 0, "fix_old_photo": 1, "layered": 1, "vectorize": 1}


def test_every_order_mails_the_file_it_names_and_spends_only_the_calls_it_needs(
        tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink) -> None:
    with FakeGemini() as gemini:
        shop = start_shop(tmp_path_factory.mktemp("keyed") / "shop", smtp, {
            "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url, "GEMINI_TIMEOUT_S": "20"})
        try:
            # The cut-out of the portrait is left to the local run: with a key it takes the same local path as the cat.
            placed = [o for o in orders("key") if not o.customer.endswith("person")]
            jobs = assert_every_order(shop, placed, place_all(shop, smtp, placed))
            image_calls = [r for r in gemini.requests() if r["kind"] == "image" and r["outcome"] == "ok"]
            metrics = scrape(shop)
        finally:
            shop.stop()
    spent = {order.customer: jobs[order.customer]["image_model_calls"] for order in placed}
    assert spent == {order.customer: CALLS[order.operation] for order in placed}
    assert len(image_calls) == sum(spent.values())  # the stand-in counted what the jobs say they spent
    for op in CALLS:
        assert value(metrics, "shop_image_model_calls_total", operation=op) == sum(
            spent[o.customer] for o in placed if o.operation == op), op
    assert value(metrics, "shop_image_model_calls_all_total") == sum(spent.values())
    # The five orders of five operations (an enhance, a resize, a cut-out, a PSD, an SVG): at most four.
    five = {o.operation: spent[o.customer] for o in placed if o.operation != "fix_old_photo"}
    assert len(five) == 5 and sum(five.values()) <= 4
