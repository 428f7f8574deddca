"""A customer's photo analysed in a render worker (executors/analysis.py): downloaded from a real loopback server,
judged, and settled in a real SQLite file under DATA_DIR.

An identity document or a bank card is deleted before its verdict is stored and never indexed: the job keeps the
verdict, the photo's perceptual hash and size. Every other photo is kept and indexed as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from executors.analysis import analyze_photo
from imaging.phash import phash
from integrations.gemini import GeminiClient
from observability import metrics
from persistence import outbox
from persistence.db import close_database, open_database
from persistence.job_events import core_event
from persistence.models import IndexedImage, JobEvent
from protocol.settings import Settings
from standins.fake_gemini import ConfigRequest, FakeGemini, RiskAnswer
from tests.harness import FileServer, photo_png

pytestmark = pytest.mark.timeout(120)

ID_CARD = Path(__file__).parent.parent / "fixtures" / "id_card.png"
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def cjk_font() -> str:
    """A CJK font's path; the test is skipped without one."""
    found = next((f for f in CJK_FONTS if Path(f).exists()), None)
    if found is None:
        pytest.skip("no CJK font: install the Debian package fonts-wqy-microhei (or fonts-wqy-zenhei / fonts-noto-cjk)")
    return found


def bank_card_png(seed: int = 5) -> bytes:
    """A debit card as a phone photographs it, cropped to the card (85.6 × 54 mm): bank name, chip, a 19-digit
    UnionPay number that passes the Luhn check, expiry date, the UnionPay mark."""
    font = cjk_font()
    rnd = random.Random(seed)
    w, h = 856, 540
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (int(20 + 60 * x / w), int(60 + 80 * y / h), 140 + rnd.randint(-8, 8))
    draw = ImageDraw.Draw(img)
    draw.text((60, 50), "招商银行 借记卡", fill=(255, 255, 255), font=ImageFont.truetype(font, 44))
    draw.rounded_rectangle((70, 170, 170, 245), 10, fill=(210, 180, 90))
    draw.text((60, 300), "6222 0212 3456 7890 128", fill=(245, 245, 245), font=ImageFont.truetype(font, 52))
    draw.text((60, 400), "12/28", fill=(245, 245, 245), font=ImageFont.truetype(font, 36))
    draw.text((560, 420), "银联 UnionPay", fill=(255, 255, 255), font=ImageFont.truetype(font, 40))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def holders(root: Path, photo: bytes) -> list[Path]:
    """Every file under root that holds the photo: the whole of it, or a 64-byte stretch of its middle."""
    digest, chunk = hashlib.sha256(photo).digest(), photo[1000:1064]
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # gone while we looked (a download's .part, a database's journal)
        if hashlib.sha256(data).digest() == digest or chunk in data:
            found.append(path)
    return found


def deleted_sensitive() -> float:
    """shop_deleted_total{what="photos",why="sensitive"} as /metrics would serve it from this process."""
    return metrics.registry().get_sample_value("shop_deleted_total", {"what": "photos", "why": "sensitive"}) or 0.0


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, files: FileServer) -> Iterator[Settings]:
    """A DATA_DIR with the shop's database in it, as the launcher lays it out."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    open_database(f"sqlite:///{data_dir}/shop.db", create=True)
    try:
        yield Settings(_env_file=None, DATA_DIR=data_dir, FETCH_ALLOW_HOSTS=f"127.0.0.1:{files.port}")
    finally:
        close_database()


def analyse(settings: Settings, files: FileServer, job_id: str, photo: bytes | None,
            gemini: GeminiClient | None = None) -> tuple[str, dict[str, Any] | None]:
    """Queue the job's analyze row (the photo served at its URL, or nothing there) and let a worker do it; the
    event's kind and payload (None when the row was settled before)."""
    url = files.put(f"{job_id}.png", photo) if photo is not None else files.url(f"{job_id}-gone.png")
    key = f"analyze:{job_id}"
    payload = {"job_id": job_id, "customer_id": f"c-{job_id}", "url": url}
    outbox.add(key=key, kind="analyze", ref=job_id, payload=payload, now=time.time())
    outcome = analyze_photo(settings, key, payload, gemini)
    if outcome.event_id is None:
        return "", None
    event = JobEvent.get_by_id(outcome.event_id)
    return event.kind, json.loads(event.payload)


@pytest.mark.parametrize("which", ["id_card", "bank_card"])
def test_an_identity_document_or_bank_card_is_deleted_and_its_verdict_hash_and_size_kept(
        settings: Settings, files: FileServer, tmp_path: Path, which: str) -> None:
    photo = ID_CARD.read_bytes() if which == "id_card" else bank_card_png()
    before = deleted_sensitive()
    kind, payload = analyse(settings, files, f"J{which}", photo)
    assert kind == "analyzed" and payload is not None
    analysis = payload["analysis"]
    assert analysis["risk"] == "decline"
    assert analysis["risk_rule"] == ("id_document" if which == "id_card" else "bank_card")
    assert analysis["risk_reason"] == ("疑似身份证件(公民身份号码)" if which == "id_card" else "疑似银行卡(银联)")
    (tmp_path / "sent.png").write_bytes(photo)
    assert analysis["phash"] == f"{phash(tmp_path / 'sent.png'):016x}"
    assert analysis["size_bytes"] == len(photo) and analysis["photo_deleted"] is True
    # Nor the name and numbers read off it.
    assert analysis["text"] == "" and analysis["has_text"] is True
    assert payload["source_path"] is None

    assert list((settings.DATA_DIR / "images").iterdir()) == []
    assert holders(settings.DATA_DIR, photo) == []  # the database and its WAL included
    assert IndexedImage.select().count() == 0
    assert deleted_sensitive() == before + 1
    # The conversation stores the job with no photo to lead back to, and declines it (core.image_job).
    _event, columns = core_event(JobEvent.get(JobEvent.source == f"analyze:J{which}"))
    assert columns["source_path"] is None and json.loads(columns["analysis"])["photo_deleted"] is True


def tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 36), (180, 140, 100)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("rule", ["ok", "too_small"])  # too small is declined, but is no personal data: kept
def test_every_other_photo_is_kept_and_indexed(settings: Settings, files: FileServer, rule: str) -> None:
    photo = photo_png(seed=31) if rule == "ok" else tiny_png()
    before = deleted_sensitive()
    kind, payload = analyse(settings, files, f"J{rule}", photo)
    assert kind == "analyzed" and payload is not None
    assert payload["analysis"]["risk_rule"] == rule
    assert payload["source_path"] == str(settings.DATA_DIR / "images" / f"J{rule}")
    assert Path(payload["source_path"]).read_bytes() == photo
    assert {p.name for p in (settings.DATA_DIR / "images").iterdir()} == {f"J{rule}"}
    assert [r.job_id for r in IndexedImage.select()] == [f"J{rule}"]
    assert (payload["analysis"]["photo_deleted"], payload["analysis"]["phash"],
            payload["analysis"]["size_bytes"]) == (False, "", 0)
    assert deleted_sensitive() == before


def test_a_re_drive_deletes_what_a_worker_killed_before_the_verdict_left(settings: Settings,
                                                                         files: FileServer) -> None:
    photo = ID_CARD.read_bytes()
    images = settings.DATA_DIR / "images"
    images.mkdir()
    (images / "Jredrive").write_bytes(photo)  # downloaded, not yet judged
    (images / "Jredrive.part").write_bytes(photo[:5000])  # and a download cut off
    kind, payload = analyse(settings, files, "Jredrive", photo)
    assert kind == "analyzed" and payload is not None and payload["analysis"]["photo_deleted"] is True
    assert list(images.iterdir()) == [] and holders(settings.DATA_DIR, photo) == []


def test_a_re_drive_that_cannot_download_the_photo_again_still_deletes_the_dead_workers_copy(
        settings: Settings, files: FileServer) -> None:
    photo = ID_CARD.read_bytes()
    images = settings.DATA_DIR / "images"
    images.mkdir()
    (images / "Jgone").write_bytes(photo)
    kind, payload = analyse(settings, files, "Jgone", None)
    assert kind == "analysis_failed" and payload is not None and payload["reason"] == "download_failed"
    assert list(images.iterdir()) == []


def test_a_settled_row_done_again_leaves_the_kept_photo_alone(settings: Settings, files: FileServer) -> None:
    photo = photo_png(seed=33)
    kind, payload = analyse(settings, files, "Jtwice", photo)
    assert kind == "analyzed" and payload is not None
    # The row was settled and the job names the photo; a worker doing the row again meets an expired URL.
    del files.files["Jtwice.png"]
    outcome = analyze_photo(settings, "analyze:Jtwice", {"job_id": "Jtwice", "customer_id": "c-Jtwice",
                                                          "url": files.url("Jtwice.png")}, None)
    assert outcome.event_id is None
    assert Path(payload["source_path"]).read_bytes() == photo


@pytest.mark.parametrize(("reason", "deleted"), [("这是一张居民身份证的正面照片", True), ("色情内容", False)])
def test_a_vision_model_decline_deletes_the_photo_when_it_names_an_identity_document(
        settings: Settings, files: FileServer, fake_gemini: FakeGemini, reason: str, deleted: bool) -> None:
    fake_gemini.configure(ConfigRequest(risk=RiskAnswer(verdict="decline", reason=reason)))
    photo = photo_png(seed=34)
    with GeminiClient("test-key", fake_gemini.base_url, "test-image", "test-text", timeout_s=5.0) as gemini:
        kind, payload = analyse(settings, files, "Jgemini", photo, gemini)
    assert kind == "analyzed" and payload is not None
    analysis = payload["analysis"]
    assert (analysis["risk"], analysis["risk_rule"], analysis["risk_source"]) == ("decline", "gemini_decline", "gemini")
    assert analysis["risk_reason"] == f"模型判断:{reason}"
    assert analysis["photo_deleted"] is deleted
    assert bool(holders(settings.DATA_DIR, photo)) is not deleted
    assert (payload["source_path"] is None) is deleted
