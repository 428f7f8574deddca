"""The quote (SPEC §2): a price band by complexity, text in the image makes it high-value, whole yuan."""

from __future__ import annotations

import math

from protocol.image import Analysis, Complexity

BANDS: dict[Complexity, tuple[int, int]] = {
    Complexity.SIMPLE: (10, 15),
    Complexity.NORMAL: (15, 20),
    Complexity.COMPLEX: (20, 25),
    Complexity.HARD: (25, 30),
}
TEXT_BAND: tuple[int, int] = (60, 80)  # signs, captions, Chinese text: redrawn by hand, whatever the complexity


def price_band(analysis: Analysis) -> tuple[int, int]:
    """The lowest and highest price (yuan, inclusive) this photo can be quoted at."""
    return TEXT_BAND if analysis.has_text else BANDS[analysis.complexity]


def _measure(value: float) -> float:
    return 0.0 if math.isnan(value) else min(100.0, max(0.0, value))


def severity(analysis: Analysis) -> float:
    """0-100: how bad the photo is; half its worst defect, half the mean of blur, noise and damage."""
    measures = [_measure(m) for m in (analysis.blur, analysis.noise, analysis.damage)]
    return 0.5 * max(measures) + 0.5 * sum(measures) / len(measures)


def quote(analysis: Analysis) -> int:
    """The price in whole yuan: inside the band, higher the worse the photo is."""
    low, high = price_band(analysis)
    return low + math.floor((high - low) * severity(analysis) / 100.0 + 0.5)
