"""Phraser through the real google-genai SDK against the Gemini stand-in: worded, or the fixed reply."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from core import replies
from core.phrasing import Line
from integrations.gemini import GeminiClient
from integrations.phrasing import Phraser
from protocol.image import Operation
from standins.fake_gemini import ConfigRequest, FakeGemini, FaultSpec

TEXT_MODEL = "test-flash-lite"
QUOTE = replies.quote(Operation.ENHANCE, 35, False)
TALK = [Line("customer", "帮我变清晰"), Line("shop", "好的,把图片发我看一下")]



@pytest.fixture()
def phraser(fake_gemini: FakeGemini) -> Iterator[Phraser]:
    p = Phraser(GeminiClient("test-key", fake_gemini.base_url, "test-image", TEXT_MODEL, timeout_s=1.0))
    yield p
    p.close()


def test_the_model_words_the_reply_and_sees_the_decision_and_the_talk(phraser: Phraser,
                                                                      fake_gemini: FakeGemini) -> None:
    out = phraser.phrase(QUOTE, TALK)

    assert out.source == "model"
    assert out.text != QUOTE and "35元" in out.text
    [call] = fake_gemini.requests()
    assert call["model"] == TEXT_MODEL and QUOTE in call["prompt"] and "帮我变清晰" in call["prompt"]


def test_a_server_error_falls_back_to_the_fixed_reply(phraser: Phraser, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="500")])
    out = phraser.phrase(QUOTE, TALK)
    assert (out.text, out.source) == (QUOTE, "fixed: ServerError")


def test_a_slow_model_falls_back_within_the_time_limit(phraser: Phraser, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="slow", delay_s=3)])
    started = time.monotonic()
    out = phraser.phrase(QUOTE, TALK)
    assert out.text == QUOTE and out.source.startswith("fixed")
    assert time.monotonic() - started < 2.5


def test_a_wording_that_drops_the_price_is_refused(phraser: Phraser, fake_gemini: FakeGemini) -> None:
    fake_gemini.configure(ConfigRequest(phrase="好的,这张给您做高清修复,付款后马上做"))
    out = phraser.phrase(QUOTE, TALK)
    assert (out.text, out.source) == (QUOTE, "fixed: wording refused")


def test_a_wrong_key_falls_back_and_the_key_is_not_in_the_reason(phraser: Phraser, fake_gemini: FakeGemini) -> None:
    fake_gemini.configure(ConfigRequest(api_key="another-key"))
    out = phraser.phrase(replies.PAID, [])
    assert out.text == replies.PAID and "test-key" not in out.source
