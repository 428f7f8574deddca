"""Quality check of a render (0-100) from image measures, before the customer sees it.

Starts at 100 and takes off points: unreadable → 0; blank (flat grey/colour) → 10; tiny → 15; unrelated to the
original (thumbnail correlation under 0.2: −65, under 0.5: −25); identical to the original (−40, except for
layered, whose flattened preview is meant to look like the photo); noisier (−15). Per operation: enhance must not
shrink the photo (−20) or lose sharpness (−10 … −25); remove_bg needs a real alpha channel (−50) that clears some
but not all of the picture (−40); fix_old_photo must not add damage (−20).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imaging.analysis import laplacian_var, measure, noise_sigma, to_rgb
from protocol.image import Operation

_THUMB = (64, 64)


def _gray(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float32)


def _correlation(a: Image.Image, b: Image.Image) -> float:
    """Pearson correlation of small grey thumbnails; 1.0 when both are flat (nothing to compare)."""
    ta = _gray(ImageOps.fit(a, _THUMB, Image.Resampling.BOX)).ravel()
    tb = _gray(ImageOps.fit(b, _THUMB, Image.Resampling.BOX)).ravel()
    if ta.std() < 1e-3 or tb.std() < 1e-3:
        return 1.0 if ta.std() < 1e-3 and tb.std() < 1e-3 else 0.0
    return float(np.corrcoef(ta, tb)[0, 1])


def _sharpness_at(img: Image.Image, size: tuple[int, int]) -> float:
    """Noise-corrected Laplacian variance after fitting `img` to `size` (compare like with like)."""
    gray = _gray(ImageOps.fit(img, size, Image.Resampling.LANCZOS) if img.size != size else img)
    sigma = noise_sigma(gray)
    return max(laplacian_var(gray) - 20 * sigma * sigma, 0.0)


def score_result(original: Path, result_preview: Path, operation: Operation) -> int:
    """0-100: how likely the render at `result_preview` is a good `operation` of the photo at `original`."""
    try:
        with Image.open(original) as opened:
            source = to_rgb(ImageOps.exif_transpose(opened))
        with Image.open(result_preview) as opened:
            opened.load()
            result = opened.copy()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return 0
    result_rgb = to_rgb(result)
    if min(result.size) < 16:
        return 15
    if _gray(result_rgb).std() < 2.0 and _gray(source).std() >= 2.0:
        return 10

    score = 100
    corr = _correlation(source, result_rgb)
    if corr < 0.2:
        score -= 65
    elif corr < 0.5:
        score -= 25
    compare = source.copy()
    compare.thumbnail((512, 512))
    same = ImageOps.fit(result_rgb, compare.size, Image.Resampling.LANCZOS)
    if operation is not Operation.LAYERED and result.size == source.size \
            and np.abs(_gray(same) - _gray(compare)).mean() < 0.5:
        score -= 40
    before, after = measure(compare), measure(same)
    if after["noise"] > before["noise"] + 20:
        score -= 15

    if operation is Operation.ENHANCE:
        if result.width * result.height < source.width * source.height:
            score -= 20
        ratio = (_sharpness_at(result_rgb, compare.size) + 1) / (_sharpness_at(compare, compare.size) + 1)
        score -= 25 if ratio < 0.9 else 10 if ratio < 1.0 else 0
    elif operation is Operation.REMOVE_BG:
        if "A" not in result.getbands() and "transparency" not in result.info:
            score -= 50
        else:
            clear = float((np.asarray(result.convert("RGBA").getchannel("A")) < 128).mean())
            if not 0.02 <= clear <= 0.98:
                score -= 40
    elif operation is Operation.FIX_OLD_PHOTO and after["damage"] > before["damage"] + 5:
        score -= 20
    return max(0, min(100, score))
