"""What each order delivers, as the customer receives it, on the embedded default (no Gemini key) (SPEC §2's table).

Real photographs (tests/photos.py), the launcher as a user runs it, the IM bridge simulator and a real SMTP
server. Each order names its operation, and the customer's e-mail address, in the first message with the photo; it
is paid and mailed as soon as its result is ready. The tests read the mailed attachment: its type, bytes, size,
shape, alpha, layers, SVG. tests/e2e/test_deliverables_keyed.py runs the same orders with a key.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from psd_tools import PSDImage

from protocol.image import LAYER_BACKGROUND, LAYER_SUBJECT, LAYER_TEXT
from tests import photos
from tests.e2e.test_image_job import fetch, images, jobs_of, pay, send_photo, wait_text
from tests.harness import Launcher, SmtpSink, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _bytes(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def old_photo() -> Image.Image:
    """A black-and-white portrait with scratches and dust, as an old print scans (seeded, so every run alike)."""
    img = photos.PORTRAIT.open().convert("L").convert("RGB")
    rng = np.random.default_rng(7)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.integers(0, 512, 2)
        draw.line((int(x), int(y), int(x + rng.integers(-60, 60)), int(y + rng.integers(80, 200))), fill=235, width=2)
    for _ in range(150):
        x, y = rng.integers(0, 512, 2)
        draw.ellipse((int(x), int(y), int(x) + 2, int(y) + 2), fill=int(rng.choice([20, 240])))
    return img


@dataclass(frozen=True)
class Order:
    """One customer's order: the photo they send and what they say with it."""

    customer: str
    operation: str
    photo: bytes
    content_type: str
    words: str

    @property
    def email(self) -> str:
        """Where the customer wants the file."""
        return f"{self.customer}@example.com"


def orders(prefix: str) -> list[Order]:
    """Seven orders: each operation once, the cut-out on a person and on a cat."""
    coffee = photos.PRODUCT.open().convert("RGB")
    four_three = coffee.crop((34, 0, 566, 400))  # 532×400: 4:3
    return [
        Order(f"{prefix}_enh", "enhance", _bytes(four_three, "JPEG"), "image/jpeg", "帮我变清晰一点"),
        Order(f"{prefix}_size", "resize", _bytes(coffee, "PNG"), "image/png", "改一下尺寸 800x600"),
        Order(f"{prefix}_cat", "remove_bg", _bytes(photos.CAT.open(), "PNG"), "image/png", "抠图 要透明背景"),
        Order(f"{prefix}_person", "remove_bg", _bytes(photos.PORTRAIT.open(), "PNG"), "image/png", "帮我抠图"),
        Order(f"{prefix}_old", "fix_old_photo", _bytes(old_photo(), "PNG"), "image/png", "老照片修复一下"),
        Order(f"{prefix}_psd", "layered", _bytes(photos.PORTRAIT.open(), "PNG"), "image/png", "做成分层psd"),
        Order(f"{prefix}_svg", "vectorize", _bytes(photos.LOGO.open(), "PNG"), "image/png", "帮我转矢量"),
    ]


def start_shop(path: Any, smtp: SmtpSink, extra: dict[str, str] | None = None) -> Launcher:
    """A launcher that mails through `smtp`."""
    return Launcher(path, {"DEBOUNCE_S": "0.5", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
                           "SMTP_FROM": "shop@example.com", **(extra or {})}).start()


def place_all(shop: Launcher, smtp: SmtpSink, placed: list[Order]) -> dict[str, EmailMessage]:
    """Every order sent, quoted, paid and mailed; the mail each customer got."""
    for order in placed:
        send_photo(shop, order.customer, order.photo, order.content_type)
        shop.customer_says(order.customer, "text", f"{order.words} 邮箱 {order.email}")
    for order in placed:
        quote = wait_text(shop, order.customer, "元", timeout=90)[0]
        pay(shop, order.customer, int(re.search(r"(\d+)\s*元", quote).group(1)))  # type: ignore[union-attr]
    mails = {}
    for order in placed:
        mails[order.customer] = wait_for(lambda o=order: next((m for m in smtp.messages if m["To"] == o.email), None),
                                         180, 0.2, f"{order.customer}'s mail")
    return mails


def attachment(mail: EmailMessage) -> tuple[str, bytes]:
    """The mail's one attachment: its media type and bytes."""
    (part,) = list(mail.iter_attachments())
    return part.get_content_type(), part.get_content()


def assert_delivered(shop: Launcher, order: Order, mail: EmailMessage) -> dict[str, Any]:
    """The order's job finished with a PNG preview in the chat and the file mailed; the job as the API shows it."""
    (job,) = jobs_of(shop, order.customer)
    assert job["operation"] == order.operation, job
    (preview,) = images(shop, order.customer)
    assert fetch(preview).startswith(b"\x89PNG")
    assert job["state"] == "completed", job["history"]
    return job


def raster(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def assert_enhanced(kind: str, data: bytes) -> None:
    """A JPEG photo comes back JPEG, 4:3 within 2 %, no smaller than it was (532×400)."""
    img = raster(data)
    assert kind == "image/jpeg" and img.format == "JPEG"
    assert abs(img.width / img.height / (4 / 3) - 1) < 0.02, img.size
    assert img.width >= 532 and img.height >= 400


def assert_resized(kind: str, data: bytes) -> None:
    """Exactly the size the customer wrote."""
    img = raster(data)
    assert kind == "image/png" and img.format == "PNG" and img.size == (800, 600)


def assert_cut_out(kind: str, data: bytes, photo: photos.Photo) -> None:
    """The whole subject opaque within its box, the background transparent, some antialiased edge."""
    img = raster(data)
    assert kind == "image/png" and img.mode == "RGBA" and img.size == photo.size
    alpha = np.asarray(img.getchannel("A"))
    assert photo.box is not None
    left, top, right, bottom = photo.box
    opaque = alpha > 200
    inside = opaque[top:bottom, left:right].sum()
    assert inside / opaque.sum() > 0.97, "opaque pixels outside the subject"
    assert opaque[top:bottom, left:right].mean() > 0.5, "the subject is not kept whole"
    for bl, bt, br, bb in photo.background:
        assert (alpha[bt:bb, bl:br] < 30).mean() > 0.9, "the background was not cleared"
    assert ((alpha > 10) & (alpha < 245)).sum() > 0, "no antialiased edge"


def assert_old_photo(kind: str, data: bytes) -> None:
    """A PNG of the photo's shape, still black and white."""
    img = raster(data)
    assert kind == "image/png" and img.format == "PNG" and img.width == img.height >= 512
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean() < 3


def assert_layered(kind: str, data: bytes, photo: photos.Photo) -> None:
    """A PSD with the named layers, whose composite looks like the photo."""
    assert kind == "image/vnd.adobe.photoshop"
    psd = PSDImage.open(io.BytesIO(data))
    names = [layer.name for layer in psd]
    assert names[:2] == [LAYER_BACKGROUND, LAYER_SUBJECT] and set(names) <= {LAYER_BACKGROUND, LAYER_SUBJECT,
                                                                             LAYER_TEXT}
    assert psd.size == photo.size
    composite = np.asarray(psd.composite().convert("RGB"), dtype=np.float32)
    original = np.asarray(photo.open().convert("RGB"), dtype=np.float32)
    assert np.abs(composite - original).mean() < 8


def assert_vector(kind: str, data: bytes) -> None:
    """An SVG that parses, with a viewBox and a bounded number of paths."""
    assert kind == "image/svg+xml"
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and len(root.get("viewBox", "").split()) == 4
    assert 1 <= len(list(root.iter("{http://www.w3.org/2000/svg}path"))) <= 800


def assert_every_order(shop: Launcher, placed: list[Order], mails: dict[str, EmailMessage]) -> dict[str, Any]:
    """Each mailed file is what SPEC's table names for its operation; the jobs by customer."""
    jobs = {}
    for order in placed:
        mail = mails[order.customer]
        jobs[order.customer] = assert_delivered(shop, order, mail)
        kind, data = attachment(mail)
        if order.operation == "enhance":
            assert_enhanced(kind, data)
        elif order.operation == "resize":
            assert_resized(kind, data)
        elif order.operation == "remove_bg":
            assert_cut_out(kind, data, photos.CAT if order.customer.endswith("cat") else photos.PORTRAIT)
        elif order.operation == "fix_old_photo":
            assert_old_photo(kind, data)
        elif order.operation == "layered":
            assert_layered(kind, data, photos.PORTRAIT)
        else:
            assert_vector(kind, data)
    return jobs


def test_every_order_mails_the_file_it_names(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink) -> None:
    shop = start_shop(tmp_path_factory.mktemp("deliver") / "shop", smtp)
    try:
        placed = orders("loc")
        jobs = assert_every_order(shop, placed, place_all(shop, smtp, placed))
        assert all(job["image_model_calls"] == 0 for job in jobs.values())
    finally:
        shop.stop()
