"""render_local makes a real, openable file for every operation, from photos made in the test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from psd_tools import PSDImage

from imaging.analysis import measure
from imaging.local_renderer import render_local
from protocol.image import Operation
from tests.imaging.conftest import degrade, photo_like, product_shot

SavePath = Callable[..., Path]
_SVG = "{http://www.w3.org/2000/svg}"


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _no_leftovers(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files are renamed away"


def test_enhance_doubles_the_size_and_sharpens(save: SavePath, tmp_path: Path) -> None:
    src = save(degrade(photo_like(size=(640, 480)), blur=1.2), "soft.png")
    got = render_local(src, Operation.ENHANCE, tmp_path / "out", "job-1")
    assert got.path == tmp_path / "out" / "job-1.png" and got.preview_path == got.path
    assert got.mime == "image/png"
    result = _open(got.path)
    assert result.size == (1280, 960) and result.mode == "RGB"
    back = measure(result.resize((640, 480), Image.Resampling.LANCZOS))
    assert back["sharpness"] > measure(_open(src))["sharpness"]
    _no_leftovers(tmp_path / "out")


def test_enhance_caps_the_long_side(save: SavePath, tmp_path: Path) -> None:
    src = save(photo_like(size=(3000, 200)), "banner.png")
    result = _open(render_local(src, Operation.ENHANCE, tmp_path, "wide").path)
    assert result.size == (4096, 273)


@pytest.mark.parametrize(("notes", "size"), [
    ((), (2048, 1536)), (("改成800x600",), (800, 600)), (("要1920*1080的",), (1920, 1080)),
    (("缩小到50%",), (320, 240)),
])
def test_resize_follows_the_notes(notes: tuple[str, ...], size: tuple[int, int], save: SavePath,
                                  tmp_path: Path) -> None:
    src = save(photo_like(size=(640, 480)), "p.png")
    assert _open(render_local(src, Operation.RESIZE, tmp_path, "r", notes=notes).path).size == size


def test_fix_old_photo_removes_the_yellow_cast_and_fading(save: SavePath, tmp_path: Path) -> None:
    old = degrade(photo_like(size=(640, 480)), yellow=0.4, fade=0.4, speckle=0.004)
    src = save(old, "old.jpg", quality=90)
    result = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "fixed").path)
    before, after = measure(_open(src)), measure(result)
    assert after["damage"] < before["damage"] - 40, (before, after)
    assert after["yellowing"] < before["yellowing"] and after["low_contrast"] < before["low_contrast"]


def test_remove_bg_makes_the_studio_background_transparent(save: SavePath, tmp_path: Path) -> None:
    src = save(product_shot(), "product.jpg", quality=92)
    got = render_local(src, Operation.REMOVE_BG, tmp_path, "cut")
    result = _open(got.path)
    assert result.mode == "RGBA" and got.path.suffix == ".png"
    alpha = np.asarray(result.getchannel("A"))
    assert alpha[5, 5] == 0 and alpha[-5, -5] == 0, "the corners were background"
    assert alpha[300, 360] == 255 and alpha[400, 520] == 255, "the vase and the box stay"
    clear = (alpha < 128).mean()
    assert 0.5 < clear < 0.9
    soft = ((alpha > 0) & (alpha < 255)).mean()
    assert 0 < soft < 0.05, "a feathered edge, not a hard cut or a haze"


def test_vectorize_writes_svg_with_shapes_and_a_png_preview(save: SavePath, tmp_path: Path) -> None:
    logo = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(logo)
    draw.ellipse((40, 40, 200, 260), fill=(200, 30, 30))
    draw.rectangle((220, 60, 360, 200), fill=(20, 40, 200))
    got = render_local(save(logo, "logo.png"), Operation.VECTORIZE, tmp_path, "logo")
    assert got.path.name == "logo.svg" and got.mime == "image/svg+xml"
    root = ET.parse(got.path).getroot()
    assert root.tag == f"{_SVG}svg"
    shapes = list(root.iter(f"{_SVG}path")) + list(root.iter(f"{_SVG}rect"))
    assert len(shapes) >= 3
    fills = {s.get("fill", "").upper() for s in shapes}
    assert "#C81E1E" in fills and "#1428C8" in fills
    assert got.preview_path.name == "logo.preview.png"
    preview = _open(got.preview_path)
    assert preview.size == (400, 300)
    assert preview.getpixel((120, 150)) == (200, 30, 30) and preview.getpixel((290, 130)) == (20, 40, 200)
    assert preview.getpixel((10, 10)) == (255, 255, 255)


def test_layered_writes_a_psd_with_two_real_layers(save: SavePath, tmp_path: Path) -> None:
    src = save(product_shot(), "product.png")
    got = render_local(src, Operation.LAYERED, tmp_path, "layers")
    assert got.path.name == "layers.psd" and got.mime == "image/vnd.adobe.photoshop"
    psd = PSDImage.open(got.path)
    assert psd.size == (800, 600) and len(psd) >= 2
    names = [layer.name for layer in psd]
    assert names == ["Background", "Subject"]
    subject = psd[1].composite()
    assert subject.mode == "RGBA" and psd[1].has_mask(), "the cut-out is a layer mask over the full pixels"
    alpha = np.asarray(subject.getchannel("A"))
    assert alpha[5, 5] == 0 and alpha[300, 360] == 255
    preview = _open(got.preview_path)
    assert got.preview_path.name == "layers.preview.png" and preview.size == (800, 600)
    _no_leftovers(tmp_path)


def test_aspect_ratio_crops_only_when_asked(save: SavePath, tmp_path: Path) -> None:
    src = save(photo_like(size=(800, 600)), "p.png")
    keep = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "keep").path)
    wide = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "wide", aspect_ratio="16:9").path)
    square = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "sq", notes=("裁成1:1",)).path)
    timed = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "t", notes=("10:30前要",)).path)
    assert keep.size == timed.size == (800, 600), "the default 1:1 keeps the photo's own ratio; a time is no ratio"
    assert wide.size == (800, 450) and square.size == (600, 600)


def test_perspective_fix_straightens_a_tilted_photo(save: SavePath, tmp_path: Path) -> None:
    grid = Image.new("RGB", (800, 600), (240, 240, 240))
    draw = ImageDraw.Draw(grid)
    for x in range(0, 800, 50):
        draw.line([(x, 0), (x, 600)], fill=(20, 20, 20), width=3)
    for y in range(0, 600, 50):
        draw.line([(0, y), (800, y)], fill=(20, 20, 20), width=3)
    tilted = grid.rotate(4, resample=Image.Resampling.BICUBIC, fillcolor=(240, 240, 240))
    src = save(tilted, "tilted.png")
    fixed = _open(render_local(src, Operation.FIX_OLD_PHOTO, tmp_path, "fixed", perspective_fix=True).path)
    assert fixed.size < tilted.size, "the exposed corners are cropped"
    gray = np.asarray(fixed.convert("L"), dtype=np.float32)
    column_darkness = (gray < 128).mean(axis=0)
    assert column_darkness.max() > 0.8, "vertical lines run straight down again"
    untouched = _open(render_local(save(grid, "grid.png"), Operation.RESIZE, tmp_path, "g", notes=("100%",),
                                   perspective_fix=True).path)
    assert untouched.size == (800, 600), "a straight photo is left alone"


@pytest.mark.parametrize("operation", [Operation.ENHANCE, Operation.RESIZE, Operation.FIX_OLD_PHOTO])
def test_a_transparent_png_stays_transparent(operation: Operation, save: SavePath, tmp_path: Path) -> None:
    logo = photo_like(size=(400, 300)).convert("RGBA")
    ImageDraw.Draw(logo).rectangle((0, 0, 199, 299), fill=(0, 0, 0, 0))
    result = _open(render_local(save(logo, "logo.png"), operation, tmp_path, "t", notes=("改成800x600",)).path)
    assert result.mode == "RGBA"
    alpha = np.asarray(result.getchannel("A"))
    w = result.width
    assert alpha[:, : w // 2 - 8].max() == 0 and alpha[:, w // 2 + 8 :].min() == 255
