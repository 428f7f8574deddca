"""analyze/measure on real image files: bands, measures, true sizes, and offline OCR of Chinese text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imaging.analysis import analyze, measure
from imaging.ocr import detect_text
from protocol.image import Complexity
from tests.imaging.conftest import degrade, photo_like

_ORDER = list(Complexity)
# Debian packages that provide a CJK font; the test needs one of them (`apt-get install fonts-wqy-microhei`).
_CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
              "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

SavePath = Callable[..., Path]


def _cjk_font(size: int) -> ImageFont.FreeTypeFont:
    for path in _CJK_FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    pytest.skip("no CJK font: install the Debian package fonts-wqy-microhei (or fonts-wqy-zenhei / fonts-noto-cjk)")


def test_sharp_clean_photo_is_simpler_than_a_blurred_noisy_yellowed_one(save: SavePath) -> None:
    clean = analyze(save(photo_like(), "clean.png"), ocr=False)
    bad = analyze(save(degrade(photo_like(), blur=3, noise=12, yellow=0.4, fade=0.3), "bad.png"), ocr=False)
    assert clean.complexity is Complexity.SIMPLE
    assert _ORDER.index(bad.complexity) > _ORDER.index(clean.complexity)
    assert bad.complexity in (Complexity.COMPLEX, Complexity.HARD)
    assert bad.blur > clean.blur + 50 and bad.noise > clean.noise + 20 and bad.damage > clean.damage + 50
    assert (clean.width, clean.height, clean.format, clean.text_source) == (1024, 1024, "PNG", "none")


@pytest.mark.parametrize(("damage", "measure_name"), [
    ({"blur": 3}, "blur"), ({"noise": 18}, "noise"), ({"yellow": 0.4}, "damage"), ({"fade": 0.6}, "damage"),
    ({"speckle": 0.01}, "damage"),
])
def test_each_defect_raises_its_measure(damage: dict[str, float], measure_name: str) -> None:
    photo = photo_like(size=(640, 480))
    before, after = measure(photo), measure(degrade(photo, **damage))
    assert after[measure_name] >= before[measure_name] + 40, (before, after)


def test_tiny_photo_is_harder_than_the_same_photo_large(save: SavePath) -> None:
    large = analyze(save(photo_like(), "large.png"), ocr=False)
    small = analyze(save(photo_like().resize((300, 300)), "small.png"), ocr=False)
    thumb = analyze(save(photo_like().resize((80, 80)), "thumb.png"), ocr=False)
    assert _ORDER.index(small.complexity) > _ORDER.index(large.complexity)
    assert thumb.complexity is Complexity.HARD


def test_jpeg_reports_its_true_size_and_orientation(save: SavePath) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° (portrait)
    got = analyze(save(photo_like(size=(1600, 1200)), "phone.jpg", quality=92, exif=exif), ocr=False)
    assert (got.width, got.height, got.format) == (1200, 1600, "JPEG")
    assert got.complexity is Complexity.SIMPLE


def test_transparent_png_is_measured_on_white(save: SavePath) -> None:
    img = photo_like(size=(600, 600)).convert("RGBA")
    ImageDraw.Draw(img).rectangle((0, 0, 300, 600), fill=(0, 0, 0, 0))
    got = analyze(save(img, "cutout.png"), ocr=False)
    assert got.width == 600 and got.blur < 50


def test_chinese_sign_is_found_by_ocr(save: SavePath) -> None:
    font = _cjk_font(72)
    img = photo_like(seed=3)
    draw = ImageDraw.Draw(img)
    draw.rectangle((100, 420, 900, 540), fill=(250, 250, 245))
    draw.text((130, 430), "老街茶馆 欢迎光临", font=font, fill=(20, 20, 20))
    path = save(img, "sign.png")
    found, text = detect_text(path)
    assert found and "老街茶馆" in text and "欢迎光临" in text
    got = analyze(path)
    assert got.has_text and got.text_source == "ocr" and "茶馆" in got.text


def test_photo_without_text_has_none(save: SavePath) -> None:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:800, 0:1000].astype(np.float32)
    gradient = np.stack([x / 4, y / 3.2, (x + y) / 7], -1) + rng.normal(0, 10, (800, 1000, 3))
    plain = Image.fromarray(gradient.clip(0, 255).astype(np.uint8))
    assert detect_text(save(plain, "gradient.png")) == (False, "")
    got = analyze(save(photo_like(seed=5), "shapes.png"))
    assert (got.has_text, got.text, got.text_source) == (False, "", "ocr")
