"""Risk verdicts on real images: imaging/ measures and OCR feed core/risk.py (the fixture needs no CJK font)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from core.risk import assess
from imaging.analysis import analyze
from protocol.image import RiskVerdict
from tests.imaging.conftest import degrade, photo_like

SavePath = Callable[..., Path]

ID_CARD = Path(__file__).parent.parent / "fixtures" / "id_card.png"


def test_ocr_reads_the_id_card_fixture_and_the_rules_decline_it() -> None:
    a = analyze(ID_CARD)
    assert a.has_text and a.text_source == "ocr"
    assert "公民身份号码" in a.text and "110101199001011234" in a.text
    found = assess(a.width, a.height, a.blur, a.noise, a.damage, a.text)
    assert (found.verdict, found.rule) == (RiskVerdict.DECLINE, "id_document")
    assert "身份" in found.reason


@pytest.mark.parametrize(("defects", "verdict"), [
    ({}, RiskVerdict.ACCEPT),
    ({"blur": 4, "yellow": 0.4, "fade": 0.3}, RiskVerdict.ACCEPT),  # soft, yellowed, faded: fixable
    ({"blur": 1, "noise": 10, "yellow": 0.3, "fade": 0.4, "speckle": 0.005}, RiskVerdict.ACCEPT),  # grainy, dusty
    ({"blur": 10}, RiskVerdict.ACCEPT),  # badly out of focus
    ({"noise": 14}, RiskVerdict.ACCEPT),  # a night shot
    ({"blur": 20, "noise": 25, "yellow": 0.6, "fade": 0.9, "speckle": 0.02}, RiskVerdict.HUMAN),  # ruined
])
def test_only_a_ruined_photo_is_too_damaged(save: SavePath, defects: dict[str, float], verdict: RiskVerdict) -> None:
    a = analyze(save(degrade(photo_like(seed=5, size=(640, 480)), **defects)), ocr=False)
    assert assess(a.width, a.height, a.blur, a.noise, a.damage, a.text).verdict is verdict


def test_a_20px_photo_is_measured_and_declined_as_too_small(save: SavePath) -> None:
    a = analyze(save(Image.new("RGB", (20, 20), (200, 120, 90)), "tiny.png"))
    found = assess(a.width, a.height, a.blur, a.noise, a.damage, a.text)
    assert (found.verdict, found.rule) == (RiskVerdict.DECLINE, "too_small")
