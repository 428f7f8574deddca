"""Thumbnails for the console (imaging/thumbnail.py): small JPEGs, made once, remade when the image changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from imaging.thumbnail import SIDE, NoThumbnail, thumbnail
from tests.harness import photo_png


def test_a_photo_becomes_a_small_jpeg_made_once(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(photo_png(seed=5, size=(1200, 800)))
    first = thumbnail(src, tmp_path / "thumbs")
    with Image.open(first) as img:
        assert img.format == "JPEG" and max(img.size) == SIDE and img.size == (SIDE, SIDE * 2 // 3)
    made = first.stat().st_mtime_ns
    assert thumbnail(src, tmp_path / "thumbs") == first and first.stat().st_mtime_ns == made
    assert first.stat().st_size < 30_000


def test_a_changed_image_gets_a_new_thumbnail(tmp_path: Path) -> None:
    src = tmp_path / "r.png"
    src.write_bytes(photo_png(seed=1))
    before = thumbnail(src, tmp_path / "thumbs")
    src.write_bytes(photo_png(seed=2, size=(300, 300)))
    os.utime(src, ns=(before.stat().st_mtime_ns + 10**9,) * 2)
    after = thumbnail(src, tmp_path / "thumbs")
    assert after != before
    with Image.open(after) as img:
        assert img.size == (SIDE, SIDE)


def test_a_transparent_result_is_shown_on_a_checkerboard(tmp_path: Path) -> None:
    src = tmp_path / "cut.png"
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (100, 100, 300, 300))
    img.save(src)
    with Image.open(thumbnail(src, tmp_path / "thumbs")) as out:
        rgb = out.convert("RGB")
        corners = {rgb.getpixel((2, 2)), rgb.getpixel((10, 2))}
        assert all(min(c) > 200 for c in corners) and len(corners) == 2  # light, and two tones
        r, g, b = rgb.getpixel((SIDE // 2, SIDE // 2))
        assert r > 150 and g < 90 and b < 90


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_junk_and_missing_files_have_no_thumbnail(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "junk.png"
    src.write_bytes(content)
    with pytest.raises(NoThumbnail):
        thumbnail(src, tmp_path / "thumbs")
    with pytest.raises(NoThumbnail):
        thumbnail(tmp_path / "missing.png", tmp_path / "thumbs")
