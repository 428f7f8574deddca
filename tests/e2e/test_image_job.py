"""The image job through the launcher, as a customer and the shop owner see it (SPEC §2, workflow 2 of §3).

Local renderer (no Gemini key), the IM bridge simulator, and a real SMTP server: photo + words →
one quote → payment → result image at its URL → revision → re-render → e-mail → completed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import FileServer, Launcher, SmtpSink, http, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ASK_EMAIL = "好了,你看一下效果,没问题把邮箱发我"
ASK_REVISION = "好,你说一下哪里要改,或者发图告诉我"
REDO = "好的,重新给你做"
MAILED = "发到您邮箱了,注意查收哈"
MAIL_FAILED = "邮件发送失败了,您再发一次邮箱试试"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink, files: FileServer) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("image") / "shop", {
        "DEBOUNCE_S": "1", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_FROM": "shop@example.com",
        "FETCH_ALLOW_HOSTS": f"127.0.0.1:{files.port}",
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def send_photo(shop: Launcher, customer_id: str, png: bytes, content_type: str = "image/png") -> str:
    """The customer sends a photo through the simulator (it serves the upload; the shop downloads it)."""
    status, body = http("POST", f"{shop.sim}/customer/photo?customer_id={customer_id}", raw=png,
                        headers={"Content-Type": content_type})
    assert status == 200, body
    return body["msg_id"]


def pay(shop: Launcher, customer_id: str, amount: float | None = None) -> None:
    """The customer pays: `amount`, else what their newest order still owes, as the shop's page would charge."""
    if amount is None:
        status, body = http("GET", f"{shop.api}/api/conversation/{customer_id}")
        owing = [o["owed"] for o in body["data"]["image_orders"] if o["owed"]] if status == 200 else []
        amount = owing[0] if owing else 0
    status, body = http("POST", f"{shop.sim}/customer/pay", {"customer_id": customer_id, "amount": amount})
    assert status == 200, body


def texts(shop: Launcher, customer_id: str) -> list[str]:
    return [d["content"] for d in shop.deliveries(customer_id) if d["msg_type"] == 0]


def images(shop: Launcher, customer_id: str) -> list[str]:
    return [d["content"] for d in shop.deliveries(customer_id) if d["msg_type"] == 1]


def wait_text(shop: Launcher, customer_id: str, fragment: str, count: int = 1, timeout: float = 60) -> list[str]:
    return wait_for(lambda: len(found := [t for t in texts(shop, customer_id) if fragment in t]) >= count and found,
                    timeout, 0.1, f"{customer_id} to be told {fragment!r} ×{count}")


def assert_told_once(shop: Launcher, customers: list[str]) -> None:
    """Each customer got one quote and one result image, and no send_id reached the bridge twice."""
    time.sleep(1.5)  # room for a late duplicate to show up
    for customer in customers:
        said = texts(shop, customer)
        assert len([t for t in said if "元" in t]) == 1, (customer, said)
        assert len(images(shop, customer)) == 1, (customer, shop.deliveries(customer))
    per_send = Counter(d["send_id"] for d in shop.deliveries())
    assert [s for s, n in per_send.items() if n > 1] == []


def jobs_of(shop: Launcher, customer_id: str) -> list[dict[str, Any]]:
    """The customer's jobs, newest first (none while the conversation is not stored yet)."""
    status, body = http("GET", f"{shop.api}/api/conversation/{customer_id}")
    assert status in (200, 404), body
    return body["data"]["jobs"] if status == 200 else []


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def test_photo_to_quote_payment_result_revision_and_mail(shop: Launcher, smtp: SmtpSink) -> None:
    send_photo(shop, "amy", photo_png(seed=3))
    shop.customer_says("amy", "text", "帮我变清晰一点")
    quote = wait_text(shop, "amy", "元")[0]
    price = int(re.search(r"(\d+)\s*元", quote).group(1))  # type: ignore[union-attr]
    assert 10 <= price <= 30, quote
    (job,) = jobs_of(shop, "amy")
    assert job["state"] == "pending" and job["operation"] == "enhance" and job["price"] == price

    pay(shop, "amy", price)
    wait_text(shop, "amy", ASK_EMAIL)
    (first,) = images(shop, "amy")
    assert fetch(first).startswith(b"\x89PNG")

    shop.customer_says("amy", "text", "不满意")
    wait_text(shop, "amy", ASK_REVISION)
    shop.customer_says("amy", "text", "背景再亮一点")
    wait_text(shop, "amy", REDO)
    wait_text(shop, "amy", ASK_EMAIL, count=2)
    assert len(images(shop, "amy")) == 2

    shop.customer_says("amy", "text", "我的邮箱是 amy.buyer@example.com 谢谢")
    wait_text(shop, "amy", MAILED)
    mail = wait_for(lambda: [m for m in smtp.messages if m["To"] == "amy.buyer@example.com"], 10, what="the mail")[0]
    attachments = list(mail.iter_attachments())
    assert len(attachments) == 1 and attachments[0].get_content().startswith(b"\x89PNG")

    (job,) = jobs_of(shop, "amy")
    assert job["state"] == "completed"
    assert [h["to"] for h in job["history"]] == ["quoting", "pending", "paid", "processing", "awaiting_confirm",
                                                  "revision", "processing", "awaiting_confirm", "completed"]
    assert job["revision_notes"] == ["背景再亮一点"]
    assert [m["status"] for m in job["mails"]] == ["delivered"]
    status, one = http("GET", f"{shop.api}/api/jobs/{job['job_id']}")
    assert status == 200 and len(one["data"]["renders"]) == 2 and one["data"]["result_url"]
    status, conv = http("GET", f"{shop.api}/api/conversation/amy")
    profile = conv["data"]["profile"]
    assert profile["email"] == "amy.buyer@example.com" and profile["email_status"] == "sent"
    assert profile["revisions"] == 1 and profile["completed_jobs"] == 1
    said = texts(shop, "amy")
    assert len([t for t in said if "元" in t]) == 1 and said.count(MAILED) == 1
    assert len([t for t in said if ASK_EMAIL in t]) == 2 and len(images(shop, "amy")) == 2


def test_operation_change_after_payment_is_refused_and_recorded(shop: Launcher) -> None:
    send_photo(shop, "bob", photo_png(seed=5))
    wait_text(shop, "bob", "元")
    shop.customer_says("bob", "text", "还是帮我抠图吧")
    wait_for(lambda: jobs_of(shop, "bob")[0]["operation"] == "remove_bg", 20, what="operation changed before payment")
    pay(shop, "bob")
    wait_for(lambda: jobs_of(shop, "bob")[0]["state"] in ("processing", "awaiting_confirm"), 20, what="rendering")
    shop.customer_says("bob", "text", "改成变清晰吧")
    job = wait_for(lambda: (j := jobs_of(shop, "bob")[0]) and len(j["requirement_changes"]) >= 3 and j, 20,
                   what="the refused change recorded")
    changes = [(c["type"], c["new"], c["accepted"]) for c in job["requirement_changes"]]
    assert ("modify_operation", "remove_bg", True) in changes and ("modify_operation", "enhance", False) in changes
    assert job["operation"] == "remove_bg"


def test_bad_photos_get_a_clear_answer_and_nothing_else_breaks(shop: Launcher, files: FileServer) -> None:
    files.put("notes.txt", b"this is not an image", "text/plain")
    files.put("bomb.png", _bomb_png())
    cases = {
        "bad_text": files.url("notes.txt"),
        "bad_huge": files.url("huge"),
        "bad_bomb": files.url("bomb.png"),
        "bad_loop": f"http://127.0.0.1:{shop.api_port}/api/health",  # loopback, not allowed
    }
    for customer, url in cases.items():
        shop.customer_says(customer, "image", url)
    for customer in cases:
        wait_for(lambda c=customer: jobs_of(shop, c) and jobs_of(shop, c)[0]["state"] == "failed", 30,
                 what=f"{customer}'s job to fail")
        # The answer is sent after the job's state is stored: wait for it rather than read the bridge at once.
        told = wait_for(lambda c=customer: texts(shop, c), 20, 0.1, f"{customer} to be told")
        time.sleep(0.5)  # room for a second answer, which must not come
        told = texts(shop, customer)
        assert len(told) == 1 and "元" not in told[0], told
    # A payment with no photo on record: told a person follows up; an e-mail with no result is just kept.
    shop.customer_says("bad_pay", "payment", {"order_id": "O-1", "amount": 10})
    wait_for(lambda: texts(shop, "bad_pay"), 20, what="an answer to the payment")
    shop.customer_says("bad_mail", "text", "邮箱 a@b")
    shop.customer_says("bad_mail", "text", "@@@.com")
    send_photo(shop, "bad_mail", photo_png(seed=8))
    wait_text(shop, "bad_mail", "元")


def _bomb_png() -> bytes:
    """A small PNG that claims 30,000 × 30,000 pixels."""
    import io
    import zlib

    from PIL import Image

    small = io.BytesIO()
    Image.new("L", (1, 1)).save(small, "PNG")
    raw = bytearray(small.getvalue())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = (30000).to_bytes(4, "big") * 2
    crc = zlib.crc32(bytes(raw[ihdr:ihdr + 17])).to_bytes(4, "big")
    raw[ihdr + 17:ihdr + 21] = crc
    return bytes(raw)


def test_a_photo_with_text_is_a_high_value_order(shop: Launcher) -> None:
    font = _cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")
    send_photo(shop, "sign", photo_png(seed=7, size=(800, 600), text="新年快乐 大吉大利", font_path=font))
    quote = wait_text(shop, "sign", "元")[0]
    price = int(re.search(r"(\d+)\s*元", quote).group(1))  # type: ignore[union-attr]
    assert 60 <= price <= 80, quote


def _cjk_font() -> str | None:
    for candidate in ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
                      "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"):
        if Path(candidate).exists():
            return candidate
    return None


def test_image_module_paused_hands_payments_to_a_designer(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "paused", {"DEBOUNCE_S": "0.5", "IMAGE_MODULE_ENABLED": "false"})
    try:
        launcher.start()
        send_photo(launcher, "carl", photo_png(seed=2))
        wait_text(launcher, "carl", "元")
        pay(launcher, "carl")
        wait_text(launcher, "carl", "好的,已帮您安排设计师处理,请稍候")
        job = jobs_of(launcher, "carl")[0]
        assert job["state"] == "transferred" and job["handoff"]["rule"] == "payment_manual"
        # The launcher's own dispatch stand-in got one task for it, assigned to a designer online.
        standin = json.loads((launcher.data_dir / "logs" / "dispatch_api.ready").read_text())["control_url"]
        tasks = [t for t in http("GET", f"{standin}/tasks")[1] if "carl" in t["description"]]
        assert len(tasks) == 1 and tasks[0]["status"] == "assigned" and tasks[0]["task_name"] == "图片处理-carl"
        wait_for(lambda: "staff notification" in launcher.output() and "carl" in launcher.output(), 20,
                 what="staff told (in the log: no WECHAT_WEBHOOK)")
        assert images(launcher, "carl") == []
    finally:
        launcher.stop()
