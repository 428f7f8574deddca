"""Replies phrased by the Gemini text model, within a time limit; the fixed phrase on any failure.

The decision (what to say, which price, which address) was made by the state machine; the model only
chooses the words, and `core.phrasing.accept` throws its text away when a fact went missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core import phrasing
from integrations.gemini import GeminiClient, GeminiError

log = logging.getLogger("shop.phrasing")


@dataclass(frozen=True)
class Phrased:
    """What goes out: the text, and where it came from ("model", or "fixed: <why>")."""

    text: str
    source: str


class Phraser:
    """Asks the text model for one rephrasing per reply; never raises."""

    def __init__(self, client: GeminiClient) -> None:
        """``client`` carries the time limit as its timeout (a slow answer is a failed one)."""
        self.client = client

    def phrase(self, fixed: str, recent: list[phrasing.Line]) -> Phrased:
        """The model's wording of ``fixed`` when it arrives in time and keeps every fact; else ``fixed``."""
        try:
            answer = self.client.phrase(phrasing.prompt(fixed, recent))
        except GeminiError as exc:
            log.warning("phrasing fell back to the fixed reply: %s", exc)
            return Phrased(fixed, f"fixed: {type(exc).__name__}")
        text = phrasing.accept(fixed, answer)
        if text is None:
            log.info("phrasing refused the model's wording %r of %r", answer[:80], fixed)
            return Phrased(fixed, "fixed: wording refused")
        return Phrased(text, "model")

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
