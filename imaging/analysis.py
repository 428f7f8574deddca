"""Measure a customer's photo (blur, noise, damage, text) and put it in a complexity band.

All measures are taken on a copy scaled down to at most ANALYSIS_SIDE pixels on its long side, so they do
not depend on the camera's resolution, and are mapped to 0-100:

- blur: variance of the Laplacian minus what the measured noise alone contributes (20·σ² for this kernel),
  on a log scale: ≥ SHARP_VAR is 0, ≤ BLURRED_VAR is 100.
- noise: Immerkær's estimate of the noise σ (flat regions only): ≤ 2 grey levels is 0, ≥ 15 is 100.
- damage: 1 − Π(1 − part) over yellowing (colour cast ((R̄+Ḡ)/2 − B̄) / mean grey: 10 % → 0, 35 % → 1),
  low contrast or fading (2nd-98th percentile grey spread: 160 → 0, 60 → 1) and speckle (share of pixels 40+
  grey levels brighter or darker than all 8 neighbours: 0.1 % → 0, 1 % → 1).

difficulty = the largest measure + 0.2 × the other two; under 25 simple, under 50 normal, under 75 complex,
else hard. A small photo (under TINY_PIXELS) is one band harder, and one under MIN_SIDE pixels on a side is hard.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from imaging.ocr import detect_text
from protocol.image import Analysis, Complexity

log = logging.getLogger(__name__)

ANALYSIS_SIDE = 1024
SHARP_VAR = 400.0
BLURRED_VAR = 3.0
TINY_PIXELS = 120_000
MIN_SIDE = 96
_ORIENTATION = 0x0112
_BANDS = (Complexity.SIMPLE, Complexity.NORMAL, Complexity.COMPLEX, Complexity.HARD)


def _ramp(value: float, low: float, high: float) -> float:
    """0 at `low`, 1 at `high`, linear between (either order), clamped."""
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


def to_rgb(img: Image.Image) -> Image.Image:
    """The photo as RGB, transparent parts laid on white (how a customer sees it)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def working_copy(img: Image.Image, side: int = ANALYSIS_SIDE) -> Image.Image:
    """An RGB copy no larger than `side` on its long side."""
    rgb = to_rgb(img)
    if max(rgb.size) > side:
        rgb = rgb.copy()
        rgb.thumbnail((side, side), Image.Resampling.BOX)
    return rgb


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkær's noise σ estimate, ignoring the strongest 20 % of gradients (edges are not noise)."""
    g = gray
    conv = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:] - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1]
            - 2 * g[1:-1, 2:] + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    grad = np.abs(g[1:-1, 2:] - g[1:-1, :-2]) + np.abs(g[2:, 1:-1] - g[:-2, 1:-1])
    flat = grad <= np.percentile(grad, 80)
    if not flat.any():
        return 0.0
    return float(math.sqrt(math.pi / 2) * np.abs(conv[flat]).mean() / 6)


def _impulse_share(gray: np.ndarray) -> float:
    """Share of pixels brighter or darker by 40+ than all 8 neighbours: dust, speckle, pinholes (not thin lines,
    whose pixels have like neighbours along the line)."""
    centre = gray[1:-1, 1:-1]
    h, w = gray.shape
    neighbours = [gray[dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    high, low = np.maximum.reduce(neighbours), np.minimum.reduce(neighbours)
    return float(((centre > high + 40) | (centre < low - 40)).mean())


def laplacian_var(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: high for crisp detail."""
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(lap.var())


def measure(img: Image.Image) -> dict[str, Any]:
    """Blur, noise and damage (each 0-100) with the raw numbers behind them."""
    width, height = img.size
    rgb = working_copy(img)
    gray_img = rgb.convert("L")
    gray = np.asarray(gray_img, dtype=np.float32)
    if min(gray.shape) < 3:
        return {"width": width, "height": height, "format": img.format or "", "blur": 100.0, "noise": 0.0,
                "damage": 0.0, "sharpness": 0.0, "noise_sigma": 0.0, "yellowing": 0.0, "low_contrast": 1.0,
                "speckle": 0.0}
    sigma = noise_sigma(gray)
    sharpness = max(laplacian_var(gray) - 20 * sigma * sigma, 0.0)
    blur = _ramp(math.log10(sharpness + 1), math.log10(SHARP_VAR), math.log10(BLURRED_VAR))
    noise = _ramp(sigma, 2.0, 15.0)

    means = np.asarray(rgb, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    cast = ((means[0] + means[1]) / 2 - means[2]) / max(float(gray.mean()), 1.0)
    yellowing = _ramp(100 * cast, 10.0, 35.0)
    p2, p98 = np.percentile(gray, [2, 98])
    low_contrast = _ramp(float(p98 - p2), 160.0, 60.0)
    speckle_share = _impulse_share(gray)
    speckle = _ramp(speckle_share, 0.001, 0.01)
    damage = 1 - (1 - yellowing) * (1 - low_contrast) * (1 - speckle)
    return {
        "width": width, "height": height, "format": img.format or "",
        "blur": round(100 * blur, 1), "noise": round(100 * noise, 1), "damage": round(100 * damage, 1),
        "sharpness": round(sharpness, 1), "noise_sigma": round(sigma, 2), "yellowing": round(yellowing, 3),
        "low_contrast": round(low_contrast, 3), "speckle": round(speckle, 3),
    }


def complexity_of(measures: dict[str, Any]) -> Complexity:
    """The price band for a photo's measures (see the module docstring for the thresholds)."""
    scores = sorted((measures["blur"], measures["noise"], measures["damage"]), reverse=True)
    difficulty = scores[0] + 0.2 * (scores[1] + scores[2])
    band = 0 if difficulty < 25 else 1 if difficulty < 50 else 2 if difficulty < 75 else 3
    width, height = measures["width"], measures["height"]
    if min(width, height) < MIN_SIDE:
        band = 3
    elif width * height < TINY_PIXELS:
        band = min(band + 1, 3)
    return _BANDS[band]


def analyze(path: Path, ocr: bool = True) -> Analysis:
    """Measure the photo at `path`, band it, and (with `ocr`) look for text in it."""
    with Image.open(path) as opened:
        fmt = opened.format or ""
        width, height = opened.size
        if opened.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        # A JPEG can decode straight at a reduced scale: much faster for the measures, which downscale anyway.
        opened.draft("RGB", (ANALYSIS_SIDE, ANALYSIS_SIDE))
        measures = measure(ImageOps.exif_transpose(opened))
    measures.update(width=width, height=height)
    has_text, text, source = False, "", "none"
    if ocr:
        try:
            has_text, text = detect_text(path)
            source = "ocr"
        except Exception:
            # A broken OCR run must not lose the quote; the measures alone still price the photo.
            log.exception("text detection failed for %s", path)
    return Analysis(width=measures["width"], height=measures["height"], format=fmt, blur=measures["blur"],
                    noise=measures["noise"], damage=measures["damage"], complexity=complexity_of(measures),
                    has_text=has_text, text=text[:200], text_source=source)
