"""The perceptual hash: copies of one photo stay close, different photos are far apart."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from imaging.phash import MATCH_DISTANCE, NotAnImage, distance, phash
from tests.harness import photo_png


def save(path: Path, img: Image.Image, fmt: str, **kw: object) -> Path:
    img.save(path, fmt, **kw)
    return path


@pytest.fixture()
def original(tmp_path: Path) -> Image.Image:
    return Image.open(io.BytesIO(photo_png(seed=11))).convert("RGB")


def test_resized_recompressed_and_brightened_copies_match(tmp_path: Path, original: Image.Image) -> None:
    base = phash(save(tmp_path / "a.png", original, "PNG"))
    copies = [
        save(tmp_path / "small.jpg", original.resize((320, 240)), "JPEG", quality=60),
        save(tmp_path / "big.webp", original.resize((1280, 960)), "WEBP", quality=80),
        save(tmp_path / "bright.png", ImageEnhance.Brightness(original).enhance(1.2), "PNG"),
    ]
    for copy in copies:
        assert distance(base, phash(copy)) <= MATCH_DISTANCE, copy.name


def test_different_photos_are_far_apart(tmp_path: Path) -> None:
    hashes = [phash(save(tmp_path / f"{seed}.png", Image.open(io.BytesIO(photo_png(seed=seed))), "PNG"))
              for seed in (1, 2, 3)]
    a, b, c = hashes
    assert min(distance(a, b), distance(a, c), distance(b, c)) > MATCH_DISTANCE


def test_a_transparent_png_is_hashed_on_white(tmp_path: Path, original: Image.Image) -> None:
    rgba = original.convert("RGBA")
    on_white = Image.new("RGB", rgba.size, "white")
    on_white.paste(rgba, mask=rgba.getchannel("A"))
    assert distance(phash(save(tmp_path / "t.png", rgba, "PNG")),
                    phash(save(tmp_path / "w.png", on_white, "PNG"))) <= 2


def test_a_file_that_is_not_an_image_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(NotAnImage, match="notes.jpg"):
        phash(tmp_path / "notes.jpg")
