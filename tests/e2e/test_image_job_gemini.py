"""The image job on the keyed path: the real google-genai SDK against the Gemini stand-in, through the launcher.

Covers the revision note reaching the model's prompt, the faults the issue names (429 with a delay,
500s, a timeout, a safety block) and mail that fails until the customer gives an address again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import replies
from protocol.image import Operation
from standins.fake_gemini import ConfigRequest, FakeGemini, FaultSpec
from standins.webhook_recorder import WebhookRecorder
from tests.e2e.test_image_job import (
    ASK_EMAIL,
    ASK_REVISION,
    MAIL_FAILED,
    MAILED,
    REDO,
    jobs_of,
    pay,
    send_photo,
    wait_text,
)
from tests.e2e.test_image_job import images as images_of
from tests.e2e.test_image_job import texts as texts_of
from tests.harness import Launcher, RobotThread, SmtpSink, free_port, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

IMAGE_MODEL = "gemini-3.1-flash-image"


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookRecorder]:
    with RobotThread() as rec:
        yield rec


@pytest.fixture(scope="module")
def smtp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini, webhook: WebhookRecorder,
         smtp_port: int) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("keyed") / "shop", {
        "DEBOUNCE_S": "0.5", "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url,
        # Below the 4 s of the slow fault, with room for a loaded machine: the stand-in answers from this process.
        "GEMINI_TIMEOUT_S": "3", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port),
        "WECHAT_WEBHOOK": webhook.url(),
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def image_calls(gemini: FakeGemini, job_id: str) -> list[dict]:
    return [r for r in gemini.requests() if r["kind"] == "image" and r["render_key"].startswith(job_id)]


def quoted_and_paid(shop: Launcher, customer: str, seed: int) -> str:
    send_photo(shop, customer, photo_png(seed=seed))
    wait_text(shop, customer, "元")
    pay(shop, customer)
    return jobs_of(shop, customer)[0]["job_id"]


def test_keyed_flow_puts_the_revision_note_in_the_prompt_and_mails_after_smtp_comes_back(
        shop: Launcher, gemini: FakeGemini, smtp_port: int) -> None:
    send_photo(shop, "kim", photo_png(seed=21))
    shop.customer_says("kim", "text", "帮我变清晰")
    wait_text(shop, "kim", "元")
    pay(shop, "kim")
    wait_text(shop, "kim", ASK_EMAIL)
    shop.customer_says("kim", "text", "效果不好")
    wait_text(shop, "kim", ASK_REVISION)
    shop.customer_says("kim", "text", "把天空调蓝一点")
    wait_text(shop, "kim", REDO)
    wait_text(shop, "kim", ASK_EMAIL, count=2)
    job_id = jobs_of(shop, "kim")[0]["job_id"]
    calls = image_calls(gemini, job_id)
    assert [c["outcome"] for c in calls] == ["ok", "ok"]  # one render each, nothing asked twice
    assert "把天空调蓝一点" in calls[1]["prompt"] and "把天空调蓝一点" not in calls[0]["prompt"]

    # SMTP is down: the customer is asked for the address again, and staff hear of it.
    shop.customer_says("kim", "text", "kim@example.com")
    wait_text(shop, "kim", MAIL_FAILED, timeout=40)
    sink = SmtpSink()
    sink.port = smtp_port
    sink.start()
    try:
        shop.customer_says("kim", "text", "再发一次 kim2@example.com")
        wait_text(shop, "kim", MAILED, timeout=30)
        assert [m["To"] for m in sink.messages] == ["kim2@example.com"]
    finally:
        sink.stop()
    assert jobs_of(shop, "kim")[0]["state"] == "completed"


def test_a_429_delay_is_honoured(shop: Launcher, gemini: FakeGemini) -> None:
    gemini.add_faults([FaultSpec(kind="429", retry_delay_s=2)], model="image")
    started = time.monotonic()
    job_id = quoted_and_paid(shop, "r429", 22)
    wait_text(shop, "r429", ASK_EMAIL)
    calls = image_calls(gemini, job_id)
    assert [c["outcome"] for c in calls] == ["429", "ok"]
    assert calls[1]["at"] - calls[0]["at"] >= 2.0 and time.monotonic() - started >= 2.0


def test_server_errors_then_success(shop: Launcher, gemini: FakeGemini) -> None:
    gemini.add_faults([FaultSpec(kind="500"), FaultSpec(kind="500")], model="image")
    job_id = quoted_and_paid(shop, "r500", 23)
    wait_text(shop, "r500", ASK_EMAIL)
    assert [c["outcome"] for c in image_calls(gemini, job_id)] == ["500", "500", "ok"]
    assert len(images_of(shop, "r500")) == 1


def test_a_timeout_is_retried(shop: Launcher, gemini: FakeGemini) -> None:
    gemini.add_faults([FaultSpec(kind="slow", delay_s=4)], model="image")
    job_id = quoted_and_paid(shop, "slow", 24)
    wait_text(shop, "slow", ASK_EMAIL)
    assert [c["outcome"] for c in image_calls(gemini, job_id)][-1] == "ok"
    assert len(images_of(shop, "slow")) == 1


def test_a_safety_block_hands_the_job_to_a_designer_and_tells_the_customer_and_staff(
        shop: Launcher, gemini: FakeGemini, webhook: WebhookRecorder) -> None:
    gemini.add_faults([FaultSpec(kind="safety")], model="image")
    job_id = quoted_and_paid(shop, "unsafe", 25)
    wait_text(shop, "unsafe", replies.HANDED_OFF)
    job = wait_for(lambda: (j := jobs_of(shop, "unsafe")[0])["state"] == "transferred" and j, 10, what="transferred")
    assert job["handoff"]["rule"] == "safety_blocked" and job["handoff"]["status"] == "assigned"
    assert [c["outcome"] for c in image_calls(gemini, job_id)] == ["safety"]  # never retried
    wait_for(lambda: any("unsafe" in m["body"]["markdown"]["content"] for m in webhook.accepted()), 20,
             what="staff told through the webhook")
    assert images_of(shop, "unsafe") == []


def test_payment_after_a_restart_finds_the_job(shop: Launcher, tmp_path: Path) -> None:
    send_photo(shop, "later", photo_png(seed=26))
    wait_text(shop, "later", "元")
    shop.stop()
    shop.start()
    pay(shop, "later")
    wait_text(shop, "later", ASK_EMAIL)
    assert jobs_of(shop, "later")[0]["state"] == "awaiting_confirm"


def test_replies_are_worded_by_the_text_model_and_spec_phrases_stay_word_for_word(
        shop: Launcher, gemini: FakeGemini) -> None:
    before = len(gemini.requests())
    send_photo(shop, "worded", photo_png(seed=81))
    quote = wait_text(shop, "worded", "元")[0]
    pay(shop, "worded")
    wait_text(shop, "worded", ASK_EMAIL)

    job = jobs_of(shop, "worded")[0]
    fixed = replies.quote(Operation(job["operation"]), job["price"], False)
    assert quote == f"亲,{fixed}~"  # the stand-in's wording of the state machine's quote, price kept
    phrasing = [r for r in gemini.requests()[before:] if r["kind"] == "text" and f"「{fixed}」" in r["prompt"]]
    assert len(phrasing) == 1, "one wording per reply"
    told = texts_of(shop, "worded")
    assert ASK_EMAIL in told and f"亲,{ASK_EMAIL}~" not in told


def test_a_wording_that_loses_the_price_is_not_sent(shop: Launcher, gemini: FakeGemini) -> None:
    gemini.configure(ConfigRequest(phrase="好的,这张马上给您做"))
    try:
        send_photo(shop, "unworded", photo_png(seed=82))
        quote = wait_text(shop, "unworded", "元")[0]
    finally:
        gemini.configure(ConfigRequest(phrase=None))
    job = jobs_of(shop, "unworded")[0]
    assert quote == replies.quote(Operation(job["operation"]), job["price"], False)
