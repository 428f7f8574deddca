"""Exact shapes and sizes: the centred crop to a ratio, and a photo brought to the deliverable's pixels."""

from __future__ import annotations

from PIL import Image, ImageOps


def crop_to_ratio(img: Image.Image, ratio: float) -> Image.Image:
    """The largest centred crop with width/height == ratio (to the pixel)."""
    w, h = img.size
    if w / h > ratio:
        new_w = max(1, round(h * ratio))
        left = (w - new_w) // 2
        return img.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / ratio))
    top = (h - new_h) // 2
    return img.crop((0, top, w, top + new_h))


def fit(img: Image.Image, width: int, height: int) -> Image.Image:
    """Exactly width×height: cropped (centred) to that shape, then resampled; the image itself when it fits."""
    if img.size == (width, height):
        return img
    return ImageOps.fit(img, (width, height), Image.Resampling.LANCZOS)
