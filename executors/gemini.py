"""The Gemini client the workers and the gateway use: every request, and every failure by kind, counted."""

from __future__ import annotations

from typing import Any

from integrations.gemini import GeminiClient
from observability.metrics import counted
from protocol.image import RiskVerdict
from protocol.settings import Settings


class MeteredGeminiClient(GeminiClient):
    """The Gemini client with every request, and every failure by kind, counted."""

    def render(self, *args: Any, **kwargs: Any) -> tuple[bytes, str]:
        return counted("render", super().render, *args, **kwargs)

    def score_quality(self, *args: Any, **kwargs: Any) -> tuple[int, str]:
        return counted("score_quality", super().score_quality, *args, **kwargs)

    def detect_text(self, *args: Any, **kwargs: Any) -> tuple[bool, str]:
        return counted("detect_text", super().detect_text, *args, **kwargs)

    def assess_risk(self, *args: Any, **kwargs: Any) -> tuple[RiskVerdict, str]:
        return counted("assess_risk", super().assess_risk, *args, **kwargs)

    def phrase(self, *args: Any, **kwargs: Any) -> str:
        return counted("phrase", super().phrase, *args, **kwargs)


def gemini_client(settings: Settings) -> GeminiClient | None:
    """The Gemini client when a key is configured, else None (the local renderer and measures serve)."""
    if settings.GEMINI_API_KEY is None:
        return None
    return MeteredGeminiClient(settings.GEMINI_API_KEY.get_secret_value(), settings.GEMINI_BASE_URL,
                               settings.GEMINI_IMAGE_MODEL, settings.GEMINI_TEXT_MODEL, settings.GEMINI_TIMEOUT_S)
