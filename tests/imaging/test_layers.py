"""The layered PSD on real photographs: named layers in order, a plate without the subject, the text on top, and a
composite that is the photo again."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from psd_tools import PSDImage

from imaging import ocr
from imaging.layers import layered_psd
from protocol.image import LAYER_BACKGROUND as BACKGROUND
from protocol.image import LAYER_SUBJECT as SUBJECT
from protocol.image import LAYER_TEXT as TEXT
from tests.photos import PORTRAIT, TEXT_PAGE


def _reopened(psd: PSDImage) -> PSDImage:
    buf = io.BytesIO()
    psd.save(buf)
    buf.seek(0)
    return PSDImage.open(buf)


def _on_canvas(layer: Any, size: tuple[int, int]) -> Image.Image:
    """The layer's own pixels (RGBA) where it sits on a transparent canvas of the document's size."""
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(layer.topil().convert("RGBA"), layer.offset)
    return canvas


def _diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over the RGB channels, in grey levels."""
    return float(np.abs(np.asarray(a.convert("RGB"), np.float32) - np.asarray(b.convert("RGB"), np.float32)).mean())


@pytest.fixture(scope="module")
def portrait_psd() -> PSDImage:
    """The portrait's PSD as a customer opens it (built once: the ONNX session is built once for the module)."""
    return _reopened(layered_psd(PORTRAIT.open()))


def test_the_layers_are_named_in_order_and_compose_to_the_photo(portrait_psd: PSDImage) -> None:
    photo = PORTRAIT.open()
    assert portrait_psd.size == photo.size
    assert [layer.name for layer in portrait_psd] == [BACKGROUND, SUBJECT]
    background, subject = portrait_psd
    assert background.bbox == (0, 0, *photo.size)
    left, top, right, bottom = subject.bbox
    assert 0 <= left < right <= photo.width and 0 <= top < bottom <= photo.height
    # Both what a viewer shows (the stored preview) and what the layers make when composited anew. They differ from
    # the photo only where the soft edge lets the plate through (measured 1.8 grey levels on average).
    assert _diff(portrait_psd.composite(), photo) < 3.0
    assert _diff(portrait_psd.composite(ignore_preview=True), photo) < 3.0


def test_the_background_is_a_plate_without_the_subject(portrait_psd: PSDImage) -> None:
    photo = PORTRAIT.open()
    plate = portrait_psd[0].topil().convert("RGB")
    face = (190, 60, 270, 160)
    assert _diff(plate.crop(face), photo.crop(face)) > 40
    flag = PORTRAIT.background[0]  # far from her: the photo itself
    assert _diff(plate.crop(flag), photo.crop(flag)) == 0
    subject = portrait_psd[1].topil()
    assert subject.mode == "RGBA"
    alpha = np.asarray(subject.getchannel("A"))
    assert (alpha > 200).any() and (alpha < 30).any()


def test_a_plate_from_the_image_model_is_the_background() -> None:
    photo = PORTRAIT.open()
    plate = Image.new("RGB", (256, 256), (40, 120, 200))  # another size: fitted to the photo
    psd = _reopened(layered_psd(photo, plate=plate, text_boxes=[]))
    assert [layer.name for layer in psd] == [BACKGROUND, SUBJECT]
    assert np.array_equal(np.unique(np.asarray(psd[0].topil().convert("RGB")).reshape(-1, 3), axis=0),
                          [[40, 120, 200]])
    alpha = np.asarray(_on_canvas(psd[1], psd.size).getchannel("A"))
    shown = np.asarray(psd.composite(ignore_preview=True).convert("RGB")), np.asarray(photo)
    opaque = alpha == 255
    assert np.array_equal(shown[0][opaque], shown[1][opaque])


def test_the_text_gets_its_own_layer_on_top() -> None:
    page = TEXT_PAGE.open().convert("RGB")
    boxes = ocr.text_boxes(page)
    assert len(boxes) >= 4
    assert all(0 <= left < right <= page.width and 0 <= top < bottom <= page.height
               for left, top, right, bottom in boxes)
    assert any(top < 25 and right - left > 150 for left, top, right, bottom in boxes)  # "Region-based segmentation"
    psd = _reopened(layered_psd(page, text_boxes=boxes))
    assert [layer.name for layer in psd] == [BACKGROUND, SUBJECT, TEXT]
    text = _on_canvas(psd[2], psd.size)
    for box in boxes:
        assert np.array_equal(np.asarray(text.crop(box).convert("RGB")), np.asarray(page.crop(box)))
        assert (np.asarray(text.crop(box).getchannel("A")) == 255).all()
    assert _diff(psd.composite(ignore_preview=True), page) < 2.0
