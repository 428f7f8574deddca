"""Local retouching steps the render pipeline uses: straightening, a local enhance, the notes' simple requests.

perspective_fix here is a modest auto-straighten (rotates by the dominant edge tilt when it is 0.5°-8°); it does
not undo keystone distortion.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from imaging.shape import fit


def straighten(img: Image.Image, max_degrees: float = 8.0) -> Image.Image:
    """Rotate by the tilt that best lines edges up with the rows and columns (0.5°-max_degrees), cropping off
    the corners the rotation exposes; a photo with no clear tilt is returned as it is."""
    small = img.convert("L")
    small.thumbnail((400, 400))
    edges = small.filter(ImageFilter.FIND_EDGES)

    def alignment(angle: float) -> float:
        # Straight lines pile their edge pixels into few rows/columns: high variance of the projections.
        arr = np.asarray(edges.rotate(angle, resample=Image.Resampling.BILINEAR), dtype=np.float32)
        return float(arr.sum(axis=0).var() + arr.sum(axis=1).var())

    coarse = max(np.arange(-max_degrees, max_degrees + 0.01, 0.5), key=alignment)
    tilt = float(max(np.arange(coarse - 0.4, coarse + 0.41, 0.1), key=alignment))
    if abs(tilt) < 0.5 or alignment(tilt) < 1.3 * alignment(0.0):
        return img
    rotated = img.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=False)
    w, h = img.size
    rad = math.radians(abs(tilt))
    # Largest axis-aligned rectangle of the original ratio inside the rotated frame.
    scale = 1 / (math.cos(rad) + math.sin(rad) * max(w / h, h / w))
    cw, ch = int(w * scale), int(h * scale)
    left, top = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch))


def enhance(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo at exactly `size` (its shape): mild denoise, LANCZOS resampling, unsharp mask, gentle contrast."""
    denoised = Image.blend(img, img.filter(ImageFilter.MedianFilter(3)), 0.5)
    sharp = fit(denoised, *size).filter(ImageFilter.UnsharpMask(radius=2.0, percent=140, threshold=2))
    sharp = ImageOps.autocontrast(sharp, cutoff=0.3)
    return ImageEnhance.Color(sharp).enhance(1.05)


_BRIGHTER = ("亮一点", "亮一些", "提亮", "调亮", "太暗", "brighter")
_DARKER = ("暗一点", "暗一些", "压暗", "调暗", "太亮", "darker")
_VIVID = ("鲜艳", "饱和", "vivid")


def apply_note_tweaks(img: Image.Image, notes: tuple[str, ...]) -> Image.Image:
    """Simple requests in the customer's notes: brighter/darker, more vivid, black and white (alpha kept)."""
    text = " ".join(notes).lower()
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    rgb = img.convert("RGB")
    if any(word in text for word in _BRIGHTER):
        rgb = ImageEnhance.Brightness(rgb).enhance(1.15)
    elif any(word in text for word in _DARKER):
        rgb = ImageEnhance.Brightness(rgb).enhance(0.87)
    if any(word in text for word in _VIVID):
        rgb = ImageEnhance.Color(rgb).enhance(1.25)
    if "黑白" in text:
        rgb = ImageOps.grayscale(rgb).convert("RGB")
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb
