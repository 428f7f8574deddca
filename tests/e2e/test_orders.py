"""An order of several photos, as the customer lives it (SPEC §2, issue 15): the launcher as a user runs it with a
Gemini key (the real SDK against the Gemini stand-in), the IM bridge simulator, a real SMTP server and Tianwang
posting a task that waits for the customer's payment.

Three real photographs in one burst get one quote; a payment short of it starts nothing; the rest starts all three;
each result reaches the customer once, numbered; one e-mail carries all three; "第二张颜色不对" re-renders the second
alone, with those words in the prompt the model gets.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from core import replies
from standins.fake_gemini import FakeGemini
from tests import photos
from tests.e2e.test_image_job import images, jobs_of, pay, send_photo, texts, wait_text
from tests.harness import Launcher, SmtpSink, http, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SHAPES = {1: (600, 400), 2: (451, 300), 3: (512, 512)}  # coffee, cat, astronaut: each result keeps its photo's shape


def jpeg(photo: photos.Photo) -> bytes:
    out = io.BytesIO()
    photo.open().convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink, gemini: FakeGemini) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("orders") / "shop", {
        "DEBOUNCE_S": "1.5", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_FROM": "shop@example.com",
        "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url, "GEMINI_TIMEOUT_S": "20"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def order_of(shop: Launcher, customer: str) -> dict[str, Any]:
    status, body = http("GET", f"{shop.api}/api/conversation/{customer}")
    assert status == 200, body
    (order,) = body["data"]["image_orders"]
    return order


def told(said: list[str], phrase: str) -> int:
    return sum(phrase in t for t in said)


def renders_of(shop: Launcher, customer: str) -> dict[int, int]:
    """Number of the photo → render requests made for it."""
    jobs = jobs_of(shop, customer)
    return {j["order"]["number"]: len(j["renders"]) for j in jobs}


def test_three_photos_one_quote_paid_by_amount_delivered_numbered_mailed_once_and_revised_one_by_one(
        shop: Launcher, smtp: SmtpSink, gemini: FakeGemini) -> None:
    who = "ord_amy"
    shop.post_task(task_body("T_ORD_PAY", who, {"type": "customer_payment"},
                             {"type": "send_message", "message": "付款教程在这里"}))
    for photo in (photos.PRODUCT, photos.CAT, photos.PORTRAIT):
        send_photo(shop, who, jpeg(photo), "image/jpeg")
    shop.customer_says(who, "text", "这三张都帮我变清晰")

    # One quote: three numbered prices and their total, and no other price.
    (quote,) = wait_text(shop, who, "一共", timeout=60)
    prices = [int(p) for p in re.findall(r"第\d张 高清修复 (\d+)元", quote)]
    assert len(prices) == 3 and f"三张一共{sum(prices)}元" in quote, quote
    assert [t for t in texts(shop, who) if "元" in t] == [quote]
    assert order_of(shop, who)["owed"] == sum(prices)

    # Short by 5: nothing starts, the customer hears the difference.
    pay(shop, who, sum(prices) - 5)
    wait_text(shop, who, replies.short_of(str(sum(prices) - 5), "5"))
    assert renders_of(shop, who) == {1: 0, 2: 0, 3: 0} and images(shop, who) == []
    # The rest: all three start, each result reaches the customer once, numbered; the e-mail is asked once.
    pay(shop, who, 5)
    wait_text(shop, who, replies.ASK_EMAIL, timeout=120)
    assert renders_of(shop, who) == {1: 1, 2: 1, 3: 1}
    said = texts(shop, who)  # with a key a chat model phrases them ("亲,…~"): what was said is inside
    assert all(told(said, replies.result_numbered(n)) == 1 for n in (1, 2, 3)), said
    assert len(images(shop, who)) == 3 and told(said, replies.ASK_EMAIL) == 1
    order = order_of(shop, who)
    assert (order["owed"], order["paid"], order["credit"]) == (0, sum(prices), 0)
    # Tianwang's payment task fired and sent its message once, for the order.
    shop.wait_status("T_ORD_PAY", "completed", timeout=30)
    assert told(texts(shop, who), "付款教程在这里") == 1

    # One address: one mail carrying the three results, each a JPEG of its photo's shape; told once.
    shop.customer_says(who, "text", "邮箱 amy@example.com")
    wait_text(shop, who, replies.MAILED, timeout=60)
    (mail,) = [m for m in smtp.messages if m["To"] == "amy@example.com"]
    files = {part.get_filename(): part.get_content() for part in mail.iter_attachments()}
    assert sorted(files) == ["第1张.jpg", "第2张.jpg", "第3张.jpg"]
    for n in (1, 2, 3):
        with Image.open(io.BytesIO(files[f"第{n}张.jpg"])) as img:
            width, height = img.size
            assert img.format == "JPEG" and abs(width / height - SHAPES[n][0] / SHAPES[n][1]) < 0.02
            assert width >= SHAPES[n][0]
    assert {j["state"] for j in jobs_of(shop, who)} == {"completed"}

    # "第二张颜色不对": the second photo alone is made again, with those words in the model's prompt.
    shop.customer_says(who, "text", "第二张颜色不对")
    wait_for(lambda: renders_of(shop, who) == {1: 1, 2: 2, 3: 1}, 30, 0.2, "the second photo rendered again")
    wait_for(lambda: len(images(shop, who)) == 4, 120, 0.2, "the revised second result")
    image_calls = [r for r in gemini.requests() if r["kind"] == "image" and r["outcome"] == "ok"]
    assert "颜色不对" in image_calls[-1]["prompt"] and all("颜色不对" not in r["prompt"] for r in image_calls[:-1])
    assert Counter(d["send_id"] for d in shop.deliveries(who)).most_common(1)[0][1] == 1
