"""Risk assessment before any quote, through the launcher (SPEC §2): offline rules on the local path.

An ID-card-like photo is not quoted and is refused politely; a tiny one is declined; both verdicts are
recorded with their reasons and shown in the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.test_image_job import jobs_of, send_photo, texts, wait_text
from tests.harness import Launcher, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ID_CARD = Path(__file__).parent.parent / "fixtures" / "id_card.png"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("risk") / "shop", {"DEBOUNCE_S": "0.5"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def declined_job(shop: Launcher, customer: str) -> dict:
    return wait_for(lambda: (j := jobs_of(shop, customer)) and j[0]["state"] == "cancelled" and j[0], 30, 0.1,
                    f"{customer}'s photo declined")


def test_an_id_card_is_not_quoted_and_refused_politely(shop: Launcher) -> None:
    send_photo(shop, "rk_id", ID_CARD.read_bytes())
    (reply,) = wait_text(shop, "rk_id", "身份证件")
    assert "元" not in reply
    job = declined_job(shop, "rk_id")
    assert job["price"] is None and job["risk"]["verdict"] == "decline" and "身份" in job["risk"]["reason"]
    assert job["analysis"]["risk_rule"] == "id_document"
    assert not any("元" in t for t in texts(shop, "rk_id"))


def test_a_tiny_photo_is_declined_politely(shop: Launcher) -> None:
    tiny = BytesIO()
    Image.new("RGB", (48, 36), (180, 140, 100)).save(tiny, "PNG")
    send_photo(shop, "rk_tiny", tiny.getvalue())
    wait_text(shop, "rk_tiny", "太小")
    job = declined_job(shop, "rk_tiny")
    assert job["risk"] == {"verdict": "decline", "reason": "图片太小(48x36)"}


def test_an_ordinary_photo_is_quoted_with_its_verdict_recorded(shop: Launcher) -> None:
    send_photo(shop, "rk_ok", photo_png(seed=81))
    wait_text(shop, "rk_ok", "元")
    assert jobs_of(shop, "rk_ok")[0]["risk"]["verdict"] == "accept"
