"""One work item of the render pool, by kind: analyse a photo, find an image, or render a result."""

from __future__ import annotations

from typing import Any

from executors.analysis import analyze_photo
from executors.find import find_image
from executors.outcome import AlreadySettled, Outcome
from executors.render import render_job
from integrations.gemini import GeminiClient
from protocol.settings import Settings


def perform(settings: Settings, key: str, kind: str, payload: dict[str, Any], gemini: GeminiClient | None,
            system: str = "") -> Outcome:
    """Do one work item (analyze, find or render) on the actor system named system; an item settled before
    yields no new outcome."""
    try:
        if kind == "analyze":
            return analyze_photo(settings, key, payload, gemini)
        if kind == "find":
            return find_image(settings, key, payload)
        return render_job(settings, key, payload, gemini, system)
    except AlreadySettled:
        return Outcome(payload["customer_id"], None)
