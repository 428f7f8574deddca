"""Risk assessment before any quote, through the launcher (SPEC §2): offline rules on the local path.

An ID-card-like photo is not quoted and is refused politely; a tiny one is declined; both verdicts are
recorded with their reasons and shown in the job. An identity document or a bank card is not kept: once it is
declined its bytes are nowhere under DATA_DIR, while the job still shows why, the photo's hash and size.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from imaging.phash import phash
from tests.e2e.test_image_job import jobs_of, send_photo, texts, wait_text
from tests.executors.test_analysis import bank_card_png, holders
from tests.harness import Launcher, http, photo_png, wait_for

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


def deleted_sensitive_photos(shop: Launcher) -> float:
    """shop_deleted_total{what="photos",why="sensitive"} as Prometheus reads it from /metrics."""
    status, text = http("GET", f"{shop.api}/metrics")
    assert status == 200 and isinstance(text, str), text
    return next(s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "shop_deleted_total" and s.labels == {"what": "photos", "why": "sensitive"})


def test_an_id_card_or_bank_card_is_not_kept_but_its_verdict_is(shop: Launcher, tmp_path: Path) -> None:
    sent = {"rk_keep_id": ID_CARD.read_bytes(), "rk_keep_card": bank_card_png(), "rk_keep_ok": photo_png(seed=83)}
    for customer, photo in sent.items():
        send_photo(shop, customer, photo)
    wait_text(shop, "rk_keep_id", "身份证件")
    wait_text(shop, "rk_keep_card", "不能处理")
    wait_text(shop, "rk_keep_ok", "元")

    for customer, rule, reason in (("rk_keep_id", "id_document", "身份"), ("rk_keep_card", "bank_card", "银行卡")):
        job_id = declined_job(shop, customer)["job_id"]
        status, body = http("GET", f"{shop.api}/api/jobs/{job_id}")
        assert status == 200, body
        job, photo = body["data"], sent[customer]
        assert job["risk"]["verdict"] == "decline" and reason in job["risk"]["reason"]
        (tmp_path / f"{customer}.png").write_bytes(photo)
        assert job["analysis"]["risk_rule"] == rule and job["analysis"]["photo_deleted"] is True
        assert job["analysis"]["phash"] == f"{phash(tmp_path / f'{customer}.png'):016x}"
        assert job["analysis"]["size_bytes"] == len(photo) and job["analysis"]["text"] == ""
        # Not in images/, thumbs/, the database and its WAL, the logs, anywhere.
        assert holders(shop.data_dir, photo) == [], customer

    (kept,) = jobs_of(shop, "rk_keep_ok")
    original = shop.data_dir / "images" / kept["job_id"]
    assert holders(shop.data_dir, sent["rk_keep_ok"]) == [original]  # the same search finds a photo that is kept
    assert shop.query("SELECT job_id, origin FROM indexedimage WHERE path = ?", str(original.resolve())) == [
        (kept["job_id"], "original")]
    assert deleted_sensitive_photos(shop) >= 2
