"""Image limits: bytes and pixels refused from the header, and Pillow's bomb guard on every decoder."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imaging import limits, pipeline
from imaging.analysis import analyze
from imaging.ocr import detect_text
from imaging.phash import NotAnImage, phash


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb's shape)."""
    small = io.BytesIO()
    Image.new("L", (1, 1)).save(small, "PNG")
    raw = bytearray(small.getvalue())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    raw[ihdr + 17:ihdr + 21] = zlib.crc32(bytes(raw[ihdr:ihdr + 17])).to_bytes(4, "big")
    return bytes(raw)


def test_importing_imaging_sets_pillows_guard() -> None:
    assert Image.MAX_IMAGE_PIXELS == limits.MAX_PIXELS


@pytest.mark.parametrize(("width", "height"), [(7000, 7000), (30000, 30000)])  # just over, and far over
def test_too_many_pixels_are_refused_from_the_header(width: int, height: int) -> None:
    with pytest.raises(limits.ImageTooLarge, match="too large to decode safely"):
        limits.check_image_bytes(png_claiming(width, height), "the result")


def test_too_many_bytes_are_refused_unread() -> None:
    data = png_claiming(10, 10) + b"\0" * limits.MAX_IMAGE_BYTES
    with pytest.raises(limits.ImageTooLarge, match=f"over the {limits.MAX_IMAGE_BYTES}-byte limit"):
        limits.check_image_bytes(data, "the result")


def test_a_sane_image_passes_and_junk_is_not_an_image(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), "white").save(out, "PNG")
    assert limits.check_image_bytes(out.getvalue(), "the result") == (640, 480)
    (tmp_path / "ok.png").write_bytes(out.getvalue())
    assert limits.check_image_file(tmp_path / "ok.png", "the photo") == (640, 480)
    with pytest.raises(ValueError, match="not an image"):
        limits.check_image_bytes(b"<html>oops</html>", "the result")


def test_every_decoder_refuses_a_bomb_that_got_onto_disk(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(30000, 30000))
    with pytest.raises(Image.DecompressionBombError):
        analyze(bomb, ocr=False)
    with pytest.raises(Image.DecompressionBombError):
        detect_text(bomb)
    with pytest.raises(Image.DecompressionBombError):
        pipeline.load_photo(bomb)
    with pytest.raises(NotAnImage):
        phash(bomb)
