"""Gemini client: renders, quality checks, text detection and phrasing through google-genai.

Synchronous, meant for a worker process: build one :class:`GeminiClient` per process (its HTTP client
must not cross a fork). The SDK's own retries stay off (google-genai retries only when
``HttpOptions.retry_options`` is set, which we never do); callers retry with :func:`with_retries`
and say at the call site how many tries a call gets.

Errors (all :class:`GeminiError`; ``retryable`` says whether trying again can help)::

    GeminiError
    ├── RateLimited(retry_after_s)   429; the server's RetryInfo.retryDelay / Retry-After   retryable
    ├── ServerError(status)          5xx                                                      retryable
    ├── GeminiTimeout                no answer within timeout_s                               retryable
    ├── Unreachable                  connection refused / reset / protocol error              retryable
    ├── MalformedResponse            200 that is not JSON, no image, JSON off the schema      retryable
    ├── SafetyBlocked(reason)        promptFeedback.blockReason or a safety finishReason      not retryable
    └── RequestRejected(status)      any other 4xx, a bad or missing key included             not retryable

Messages never contain the API key.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from core.render_prompt import RISK_PROMPT, TEXT_DETECT_PROMPT
from integrations.http_limits import capped_answers
from protocol.image import RiskVerdict

if TYPE_CHECKING:
    from google.genai import errors as genai_errors
    from google.genai import types

__all__ = [
    "GeminiClient",
    "GeminiError",
    "GeminiTimeout",
    "MalformedResponse",
    "RateLimited",
    "RequestRejected",
    "SafetyBlocked",
    "ServerError",
    "Unreachable",
    "with_retries",
]

T = TypeVar("T")
_M = TypeVar("_M", bound=BaseModel)

# Pinned rather than left to the SDK: google-genai 3.x defaults to v1 (and honours
# GOOGLE_GENAI_API_VERSION), while image output and response schemas are documented on v1beta.
API_VERSION = "v1beta"
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # an image result is base64 in JSON: a 20 MB image is ~27 MB of answer
RENDER_KEY_HEADER = "x-render-key"

# Finish reasons meaning "the model refused on policy grounds": retrying the same input will not help.
# (Any promptFeedback.blockReason means the same.) NO_IMAGE, IMAGE_OTHER, OTHER are not among them.
_BLOCK_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
    "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR",
})


@functools.cache
def load_sdk() -> Any:
    """google-genai and the HTTP errors it raises, imported by the first client: a shop without a Gemini key never
    loads them (half a second at every start of the launcher); the launcher loads them before it forks when keyed."""
    from google import genai
    from google.genai import errors, types

    # google-genai 3.x sends through httpx2 by default and through httpx when told to; catch both.
    http_libs = [importlib.import_module(name) for name in ("httpx", "httpx2") if importlib.util.find_spec(name)]
    return _Sdk(genai, types, errors, tuple(lib.TimeoutException for lib in http_libs),
                tuple(lib.TransportError for lib in http_libs))


class _Sdk:
    """What the client uses of google-genai (see :func:`load_sdk`)."""

    def __init__(self, genai: Any, types: Any, errors: Any, timeouts: tuple[type[Exception], ...],
                 transport: tuple[type[Exception], ...]) -> None:
        self.genai, self.types, self.errors, self.timeouts, self.transport = genai, types, errors, timeouts, transport
        t = types
        self.quality_schema = t.Schema(
            type=t.Type.OBJECT,
            properties={
                "score": t.Schema(type=t.Type.INTEGER, minimum=0, maximum=100, description="0 bad … 100 perfect"),
                "reason": t.Schema(type=t.Type.STRING, description="one short sentence"),
            },
            required=["score", "reason"],
        )
        self.text_schema = t.Schema(
            type=t.Type.OBJECT,
            properties={
                "has_text": t.Schema(type=t.Type.BOOLEAN),
                "text": t.Schema(type=t.Type.STRING, description="the text as written, empty when none"),
            },
            required=["has_text", "text"],
        )
        self.risk_schema = t.Schema(
            type=t.Type.OBJECT,
            properties={
                "risk_verdict": t.Schema(type=t.Type.STRING, enum=[v.value for v in RiskVerdict],
                                         description="accept | human | decline"),
                "risk_reason": t.Schema(type=t.Type.STRING, description="why, in short Chinese"),
            },
            required=["risk_verdict", "risk_reason"],
        )


class GeminiError(Exception):
    """Base of every error this client raises; ``retryable`` tells :func:`with_retries` what to do."""

    retryable: ClassVar[bool] = False
    kind: ClassVar[str] = "other"  # its label on shop_gemini_errors_total (observability/metrics.py)

    def __init__(self, message: str, *extra: object) -> None:
        # Extra fields travel in args so the error pickles across processes.
        super().__init__(message, *extra)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RateLimited(GeminiError):
    """429: quota or rate exceeded; ``retry_after_s`` is the server's wait, when it gave one."""

    kind = "rate_limited"
    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s)
        self.retry_after_s = retry_after_s


class ServerError(GeminiError):
    """5xx from the API."""

    kind = "server_error"
    retryable = True

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message, status)
        self.status = status


class GeminiTimeout(GeminiError):
    """No answer within the client's timeout."""

    kind = "timeout"
    retryable = True


class Unreachable(GeminiError):
    """The API could not be reached or broke the connection."""

    kind = "unreachable"
    retryable = True


class MalformedResponse(GeminiError):
    """An answer we cannot use: not JSON, no image, or JSON that does not fit the schema."""

    kind = "malformed_response"
    retryable = True


class SafetyBlocked(GeminiError):
    """The model refused on policy grounds; ``reason`` is Google's block or finish reason."""

    kind = "safety_blocked"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message, reason)
        self.reason = reason


class AnswerTooLarge(GeminiError):
    """An answer over the client's size limit: not read any further, and not asked again."""


class RequestRejected(GeminiError):
    """A 4xx other than 429: bad request, bad or missing key, unknown model."""

    kind = "request_rejected"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        self.status = status


def with_retries(
    call: Callable[[], T],
    max_tries: int,
    sleep: Callable[[float], None] = time.sleep,
    base_s: float = 1.0,
    max_s: float = 30.0,
    on_retry: Callable[[GeminiError, float], None] | None = None,
) -> T:
    """Run ``call`` up to ``max_tries`` times, waiting between retryable failures; raise the last error.

    429 waits the server's delay (backoff when it gave none) and raises at once when that delay is
    over ``max_s``, since holding a worker that long helps nobody; 5xx, timeouts, connection errors
    and malformed answers back off exponentially (``base_s`` doubling, capped at ``max_s``, jittered
    to 50-100 %); non-retryable errors raise immediately. ``on_retry(error, delay)`` runs before each wait.
    """
    if max_tries < 1:
        raise ValueError("max_tries must be at least 1")
    attempt = 1
    while True:
        try:
            return call()
        except GeminiError as exc:
            delay = _delay(exc, attempt, base_s, max_s) if exc.retryable and attempt < max_tries else None
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            attempt += 1


def _delay(exc: GeminiError, attempt: int, base_s: float, max_s: float) -> float | None:
    """Seconds to wait before the next try; None when the server asks for longer than ``max_s``."""
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        return exc.retry_after_s if exc.retry_after_s <= max_s else None
    backoff = min(max_s, base_s * 2 ** (attempt - 1))
    return random.uniform(backoff / 2, backoff)


class _Quality(BaseModel):
    score: float
    reason: str


class _TextFound(BaseModel):
    has_text: bool
    text: str


class _RiskFound(BaseModel):
    risk_verdict: RiskVerdict
    risk_reason: str


class GeminiClient:
    """The shop's calls to Gemini, one HTTP request each (no retries inside; see :func:`with_retries`)."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        image_model: str,
        text_model: str,
        timeout_s: float = 60.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """``base_url`` None means Google's endpoint; ``timeout_s`` bounds each connect/read/write; an answer
        over ``max_answer_bytes`` is cut off (:class:`AnswerTooLarge`)."""
        if not api_key.strip():
            # The SDK would silently fall back to GOOGLE_API_KEY / GEMINI_API_KEY from the environment.
            raise ValueError("api_key is required")
        self._key = api_key.strip()
        self.image_model = image_model
        self.text_model = text_model
        self._sdk = sdk = load_sdk()
        types = sdk.types
        self._client = sdk.genai.Client(
            api_key=self._key,
            vertexai=False,  # not GOOGLE_GENAI_USE_VERTEXAI from the environment
            http_options=types.HttpOptions(
                base_url=base_url, api_version=API_VERSION, timeout=max(1, round(timeout_s * 1000)),
                client_args={"event_hooks": {"response": [capped_answers(max_answer_bytes, AnswerTooLarge)]}},
            ),
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> GeminiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def render(
        self, image: bytes, mime: str, prompt: str, aspect_ratio: str, render_key: str = ""
    ) -> tuple[bytes, str]:
        """Edit ``image`` as ``prompt`` says; the result's bytes and media type.

        ``render_key`` goes out as the ``x-render-key`` header so repeats of one render can be told apart.
        """
        types = self._sdk.types
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect_ratio),
            http_options=types.HttpOptions(headers={RENDER_KEY_HEADER: render_key}) if render_key else None,
        )
        response = self._generate(self.image_model, [prompt, types.Part.from_bytes(data=image, mime_type=mime)],
                                  config)
        parts = _parts(response)
        images = [p.inline_data for p in parts if p.inline_data is not None and p.inline_data.data]
        if not images:
            raise MalformedResponse(f"{self.image_model} answered without an image{_said(parts)}")
        blob = images[-1]
        return blob.data or b"", blob.mime_type or "image/png"

    def score_quality(self, original: bytes, result: bytes, mime: str, prompt: str,
                      result_mime: str | None = None) -> tuple[int, str]:
        """Score ``result`` against ``original`` (0-100, clamped) with the reason the model gave.

        ``mime`` is the original's media type and, unless ``result_mime`` says otherwise, the result's.
        """
        part = self._sdk.types.Part
        answer = self._structured(
            [prompt, part.from_bytes(data=original, mime_type=mime),
             part.from_bytes(data=result, mime_type=result_mime or mime)],
            self._sdk.quality_schema, _Quality,
        )
        return max(0, min(100, round(answer.score))), answer.reason

    def detect_text(self, image: bytes, mime: str) -> tuple[bool, str]:
        """Whether ``image`` shows text, and the text."""
        answer = self._structured([TEXT_DETECT_PROMPT, self._sdk.types.Part.from_bytes(data=image, mime_type=mime)],
                                  self._sdk.text_schema, _TextFound)
        return answer.has_text, answer.text

    def assess_risk(self, image: bytes, mime: str) -> tuple[RiskVerdict, str]:
        """The vision model's risk verdict on a customer's photo, and why."""
        answer = self._structured([RISK_PROMPT, self._sdk.types.Part.from_bytes(data=image, mime_type=mime)],
                                  self._sdk.risk_schema, _RiskFound)
        return answer.risk_verdict, answer.risk_reason

    def phrase(self, prompt: str) -> str:
        """The text model's plain-text answer to ``prompt``."""
        text = _text(_parts(self._generate(self.text_model, [prompt], self._sdk.types.GenerateContentConfig())))
        if not text.strip():
            raise MalformedResponse(f"{self.text_model} answered without text")
        return text.strip()

    def _structured(self, contents: list[Any], schema: types.Schema, model: type[_M]) -> _M:
        config = self._sdk.types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema)
        text = _text(_parts(self._generate(self.text_model, contents, config)))
        try:
            return model.model_validate_json(text)
        except ValidationError:
            raise MalformedResponse(f"{self.text_model} answered JSON off the schema: {text[:200]!r}") from None

    def _generate(self, model: str, contents: list[Any],
                  config: types.GenerateContentConfig) -> types.GenerateContentResponse:
        """One request; every failure turned into a :class:`GeminiError`."""
        # `from None` throughout: the SDK's and httpx's errors hold the HTTP request, whose headers hold the key.
        sdk = self._sdk
        try:
            response = self._client.models.generate_content(model=model, contents=contents, config=config)
        except sdk.errors.APIError as exc:
            raise self._api_error(exc) from None
        except (json.JSONDecodeError, ValidationError):
            raise MalformedResponse(f"{model} answered 200 with a body that is not a response") from None
        except sdk.timeouts as exc:
            raise GeminiTimeout(f"{model} did not answer in time ({self._describe(exc)})") from None
        except sdk.transport as exc:
            raise Unreachable(f"{model} unreachable ({self._describe(exc)})") from None
        _check_blocked(response, model)
        return response

    def _api_error(self, exc: genai_errors.APIError) -> GeminiError:
        code = exc.code or 0
        message = self._scrub(f"Gemini {code} {exc.status or ''}: {exc.message or ''}".strip())
        if code == 429:
            return RateLimited(message, _retry_after(exc))
        if code >= 500:
            return ServerError(message, code)
        return RequestRejected(message, code)

    def _describe(self, exc: Exception) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """RetryInfo.retryDelay ("2s", "1.5s") from the error body, else the Retry-After header (seconds)."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    headers = getattr(exc.response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; rare enough from Google to fall back to backoff


def _check_blocked(response: types.GenerateContentResponse, model: str) -> None:
    """Raise :class:`SafetyBlocked` when the prompt or the answer was blocked on policy grounds."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        raise SafetyBlocked(f"{model} blocked the request: {reason}", reason)
    if not response.candidates:
        raise MalformedResponse(f"{model} answered without candidates")
    reason = _name(response.candidates[0].finish_reason)
    if reason in _BLOCK_FINISH_REASONS:
        raise SafetyBlocked(f"{model} withheld its answer: {reason}", reason)


def _name(value: object) -> str:
    return str(getattr(value, "value", value) or "")


def _parts(response: types.GenerateContentResponse) -> list[types.Part]:
    content = response.candidates[0].content if response.candidates else None
    return list(content.parts or []) if content is not None else []


def _text(parts: list[types.Part]) -> str:
    return "".join(p.text for p in parts if p.text and not p.thought)


def _said(parts: list[types.Part]) -> str:
    """What the model said instead, for the error message."""
    text = _text(parts).strip()
    return f" (it said: {text[:200]!r})" if text else ""
