"""GeminiClient through the real google-genai SDK against the Gemini stand-in on loopback."""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from core.render_prompt import qa_prompt, render_prompt
from integrations.gemini import (
    GeminiClient,
    GeminiError,
    GeminiTimeout,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    SafetyBlocked,
    ServerError,
    Unreachable,
    with_retries,
)
from protocol.image import Operation
from standins.fake_gemini import ConfigRequest, FakeGemini, FaultSpec, TextAnswer
from tests.harness import free_port

IMAGE_MODEL = "test-flash-image"
TEXT_MODEL = "test-flash-lite"
KEY = "AIzaSy-test-secret-key-0123456789"


def photo(size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real JPEG with some structure in it."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, "JPEG")
    return buffer.getvalue()



@pytest.fixture()
def client(fake_gemini: FakeGemini) -> Iterator[GeminiClient]:
    with GeminiClient(KEY, fake_gemini.base_url, IMAGE_MODEL, TEXT_MODEL, timeout_s=5.0) as gemini:
        yield gemini


def outcomes(fake_gemini: FakeGemini) -> list[str]:
    return [entry["outcome"] for entry in fake_gemini.requests()]


def test_render_returns_a_bigger_png_and_the_log_shows_prompt_and_render_key(
    client: GeminiClient, fake_gemini: FakeGemini
) -> None:
    prompt = render_prompt(Operation.ENHANCE, "4:3", False, ("背景换成白色",), ())
    data, mime = client.render(photo((64, 48)), "image/jpeg", prompt, "4:3", render_key="job-7/1")

    assert mime == "image/png"
    result = Image.open(io.BytesIO(data))
    assert result.format == "PNG"
    assert result.size == (1184, 864)  # Google's 4:3 at the default 1K size
    [entry] = fake_gemini.requests()
    assert entry["model"] == IMAGE_MODEL
    assert entry["path"] == f"/v1beta/models/{IMAGE_MODEL}:generateContent"
    assert entry["kind"] == "image"
    assert entry["images_in"] == 1
    assert "背景换成白色" in entry["prompt"]
    assert entry["render_key"] == "job-7/1"
    assert entry["outcome"] == "ok"


def test_repeated_renders_show_their_render_keys(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    for key in ("job-1/1", "job-1/1", ""):
        client.render(photo(), "image/jpeg", "enhance", "1:1", render_key=key)
    assert [entry["render_key"] for entry in fake_gemini.requests()] == ["job-1/1", "job-1/1", ""]


def test_quality_score_and_reason_parse(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    assert client.score_quality(photo(), photo(), "image/jpeg", qa_prompt(Operation.ENHANCE, ()))[0] == 85
    fake_gemini.configure(ConfigRequest(qa_score=42))
    score, reason = client.score_quality(photo(), photo(), "image/jpeg", qa_prompt(Operation.ENHANCE, ("要清晰",)),
                                         result_mime="image/jpeg")
    assert score == 42
    assert reason
    last = fake_gemini.requests()[-1]
    assert (last["model"], last["kind"], last["images_in"]) == (TEXT_MODEL, "json", 2)
    assert "要清晰" in last["prompt"]


def test_text_detection_parses(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    assert client.detect_text(photo(), "image/jpeg") == (False, "")
    fake_gemini.configure(ConfigRequest(text=TextAnswer(has_text=True, text="老王理发店")))
    assert client.detect_text(photo(), "image/jpeg") == (True, "老王理发店")


def test_phrase_answers_in_chinese(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    answer = client.phrase("用一句话告诉客户图片已经修好了")
    assert answer.startswith("好的")
    assert fake_gemini.requests()[-1]["kind"] == "text"


def test_429_waits_the_servers_delay_then_succeeds(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="429", retry_delay_s=1)])
    seen: list[tuple[GeminiError, float]] = []
    started = time.monotonic()
    data, _ = with_retries(lambda: client.render(photo(), "image/jpeg", "enhance", "1:1"), max_tries=3,
                           on_retry=lambda exc, delay: seen.append((exc, delay)))
    elapsed = time.monotonic() - started

    assert data
    assert elapsed >= 1.0
    [(error, delay)] = seen
    assert isinstance(error, RateLimited)
    assert error.retry_after_s == 1.0
    assert delay == 1.0
    assert outcomes(fake_gemini) == ["429", "ok"]


def test_two_server_errors_then_success(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="500"), FaultSpec(kind="503")])
    waits: list[float] = []
    score, _ = with_retries(lambda: client.score_quality(photo(), photo(), "image/jpeg", "check"), max_tries=3,
                            base_s=0.05, on_retry=lambda exc, delay: waits.append(delay))
    assert score == 85
    assert outcomes(fake_gemini) == ["500", "503", "ok"]
    assert len(waits) == 2
    assert 0.025 <= waits[0] <= 0.05
    assert 0.05 <= waits[1] <= 0.1


def test_server_errors_exhaust_the_tries_and_raise_the_last(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="500"), FaultSpec(kind="503")])
    with pytest.raises(ServerError) as caught:
        with_retries(lambda: client.phrase("hi"), max_tries=2, base_s=0.01)
    assert caught.value.status == 503
    assert outcomes(fake_gemini) == ["500", "503"]


def test_a_slow_answer_is_a_timeout(fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="slow", delay_s=3)])
    with GeminiClient(KEY, fake_gemini.base_url, IMAGE_MODEL, TEXT_MODEL, timeout_s=1.0) as gemini:
        started = time.monotonic()
        with pytest.raises(GeminiTimeout) as caught:
            gemini.render(photo(), "image/jpeg", "enhance", "1:1")
    assert 1.0 <= time.monotonic() - started < 2.5
    assert caught.value.retryable


def test_safety_block_is_not_retried(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="safety")])
    with pytest.raises(SafetyBlocked) as caught:
        with_retries(lambda: client.render(photo(), "image/jpeg", "enhance", "1:1"), max_tries=3, base_s=0.01)
    assert caught.value.reason == "SAFETY"
    assert outcomes(fake_gemini) == ["safety"]


def test_image_safety_finish_is_a_safety_block(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="image_safety")])
    with pytest.raises(SafetyBlocked) as caught:
        client.render(photo(), "image/jpeg", "enhance", "1:1")
    assert caught.value.reason == "IMAGE_SAFETY"
    assert not caught.value.retryable


@pytest.mark.parametrize("kind", ["malformed", "no_image"])
def test_unusable_image_answers_are_malformed(client: GeminiClient, fake_gemini: FakeGemini, kind: str) -> None:
    fake_gemini.add_faults([FaultSpec(kind=kind)])  # type: ignore[arg-type]
    with pytest.raises(MalformedResponse) as caught:
        client.render(photo(), "image/jpeg", "enhance", "1:1")
    assert caught.value.retryable


def test_broken_json_is_malformed_and_a_retry_recovers(client: GeminiClient, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="malformed")])
    with pytest.raises(MalformedResponse):
        client.detect_text(photo(), "image/jpeg")
    fake_gemini.add_faults([FaultSpec(kind="malformed")])
    assert with_retries(lambda: client.detect_text(photo(), "image/jpeg"), max_tries=2, base_s=0.01) == (False, "")


def test_a_bad_key_is_rejected_and_never_shown(fake_gemini: FakeGemini) -> None:
    fake_gemini.configure(ConfigRequest(api_key="the-only-good-key"))
    with (GeminiClient(KEY, fake_gemini.base_url, IMAGE_MODEL, TEXT_MODEL) as gemini,
          pytest.raises(RequestRejected) as caught):
        with_retries(lambda: gemini.phrase("hi"), max_tries=3)
    error = caught.value
    assert error.status == 400
    assert not error.retryable
    assert "API key not valid" in str(error)
    for shown in (str(error), repr(error), repr(error.args), repr(pickle.loads(pickle.dumps(error)).args)):
        assert KEY not in shown
    assert error.__cause__ is None and error.__suppress_context__
    assert outcomes(fake_gemini) == ["400"]


def test_an_empty_key_is_refused_before_any_request(fake_gemini: FakeGemini) -> None:
    with pytest.raises(ValueError):
        GeminiClient("  ", fake_gemini.base_url, IMAGE_MODEL, TEXT_MODEL)
    assert fake_gemini.requests() == []


def test_nobody_listening_is_unreachable() -> None:
    gemini = GeminiClient(KEY, f"http://127.0.0.1:{free_port()}", IMAGE_MODEL, TEXT_MODEL, timeout_s=2)
    with gemini, pytest.raises(Unreachable) as caught:
        gemini.phrase("hi")
    assert caught.value.retryable
    assert KEY not in str(caught.value)


def test_errors_survive_pickling() -> None:
    for error in (RateLimited("slow down", 2.5), ServerError("boom", 503), SafetyBlocked("no", "IMAGE_SAFETY"),
                  RequestRejected("bad", 404), GeminiTimeout("late"), MalformedResponse("junk")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def test_with_retries_policy_without_a_network() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def refused() -> None:
        calls.append(1)
        raise RequestRejected("bad request", 400)

    with pytest.raises(RequestRejected):
        with_retries(refused, max_tries=5, sleep=waits.append)
    assert (len(calls), waits) == (1, [])

    def quota() -> None:
        raise RateLimited("daily quota", 3600.0)

    with pytest.raises(RateLimited):
        with_retries(quota, max_tries=5, sleep=waits.append, max_s=30)
    assert waits == []  # an hour is not worth holding a worker for

    def no_delay_given() -> None:
        raise RateLimited("busy")

    with pytest.raises(RateLimited):
        with_retries(no_delay_given, max_tries=4, sleep=waits.append, base_s=1, max_s=3)
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 1.5 <= waits[2] <= 3

    with pytest.raises(ValueError):
        with_retries(lambda: None, max_tries=0)
